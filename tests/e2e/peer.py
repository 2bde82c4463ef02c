"""A participant written only from PROTOCOL.md: plain websockets (JSON) and aiortc.

Nothing here imports the server's code but its documented loopback option
(``sfu.ice.use_host_addresses``, `docs/python-client.md`), so the tests that use it show
that a client built from the wire contract alone works. The media is real: an aiortc encoder
publishes VP8 and Opus, aiortc decoders count the frames each subscriber decodes.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import json
import time
from typing import Any

import av
import numpy
import websockets
from aiortc import (MediaStreamTrack, RTCConfiguration, RTCPeerConnection,
                    RTCSessionDescription)
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtp import RtcpPsfbPacket

VIDEO_CLOCK = 90000

# aioice never offers 127.0.0.1 as a host candidate; these peers run on loopback only
# (the node announces 127.0.0.1 and pairs only with loopback candidates).
from sfu.ice import use_host_addresses  # noqa: E402

use_host_addresses(["127.0.0.1"])


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class CountingVideoTrack(MediaStreamTrack):
    """Small moving frames at ``fps``; counts what it hands to the encoder."""

    kind = "video"

    def __init__(self, fps: int = 15, width: int = 160, height: int = 120) -> None:
        super().__init__()
        self.fps, self.width, self.height = fps, width, height
        self.sent = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.sent / self.fps
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        image = numpy.zeros((self.height, self.width, 3), numpy.uint8)
        x = (self.sent * 4) % self.width
        image[:, x:x + 8] = (255, 128, 0)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = self.sent * (VIDEO_CLOCK // self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.sent += 1
        return frame


class Subscription:
    """What one subscriber decodes of one remote track."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.frames = 0
        self.pts: list[int] = []
        self.first_frame_at: float | None = None
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
                self.frames += 1
                if frame.pts is not None:
                    self.pts.append(frame.pts)
        except Exception:  # MediaStreamError when the track ends
            pass

    def decoded_fraction(self, frame_ticks: int) -> float:
        """Frames decoded over frames sent in the span between the first and last."""
        if len(self.pts) < 2:
            return 0.0
        span = (max(self.pts) - min(self.pts)) // frame_ticks + 1
        return len(set(self.pts)) / span


class Participant:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.ws: Any = None
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.all_events: list[dict] = []
        self._arrived = asyncio.Event()
        self._cursors: dict[tuple[str, str], int] = {}
        self.pub: RTCPeerConnection | None = None
        self.sub: RTCPeerConnection | None = None
        self.subscriptions: dict[str, Subscription] = {}  # by kind+mid
        self.first_video_packet_keyframe: bool | None = None
        self.sub_video_packets = 0
        self.joined_at: float | None = None
        self._reader: asyncio.Task | None = None
        self._offers: asyncio.Task | None = None

    # -- signalling --------------------------------------------------------------

    async def connect(self) -> dict:
        self.ws = await websockets.connect(self.url, subprotocols=["dockcast.v1.json"])
        self._reader = asyncio.ensure_future(self._read())
        return await self.request("hello", token=self.token)

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                msg = json.loads(frame)
                future = self.pending.pop(msg.get("id"), None) if "id" in msg else None
                if future is not None and not future.done():
                    future.set_result(msg)
                else:
                    self.all_events.append(msg)
                    self._arrived.set()
        except websockets.ConnectionClosed:
            pass
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("socket closed"))

    async def request(self, type_: str, **fields: Any) -> dict:
        request_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        await self.ws.send(json.dumps({"type": type_, "id": request_id, **fields}))
        reply = await asyncio.wait_for(future, 20)
        if reply["type"] == "error":
            raise ProtocolError(reply["code"], reply.get("message", ""))
        return reply

    async def next_event(self, type_: str, timeout: float = 10, reader: str = "test") -> dict:
        """The next event of ``type_`` that ``reader`` has not seen (each reader keeps
        its own place, so the offer answerer and the test never steal each other's)."""
        key = (reader, type_)
        deadline = time.monotonic() + timeout
        while True:
            for i in range(self._cursors.get(key, 0), len(self.all_events)):
                if self.all_events[i]["type"] == type_:
                    self._cursors[key] = i + 1
                    return self.all_events[i]
            self._cursors[key] = len(self.all_events)
            self._arrived.clear()
            await asyncio.wait_for(self._arrived.wait(), max(0.01, deadline - time.monotonic()))

    async def join(self, room: str = "dock-1", **fields: Any) -> dict:
        self.joined_at = time.monotonic()
        joined = await self.request("join", room=room, **fields)
        self._offers = asyncio.ensure_future(self._answer_offers())
        return joined

    # -- media ---------------------------------------------------------------------

    @staticmethod
    def _pc() -> RTCPeerConnection:
        return RTCPeerConnection(RTCConfiguration(iceServers=[]))

    async def publish(self, video: bool = True, audio: bool = True,
                      video_track: MediaStreamTrack | None = None,
                      audio_track: MediaStreamTrack | None = None) -> dict:
        """Publish a test pattern and a tone (or the tracks given)."""
        self.pub = self._pc()
        tracks = []
        if audio:
            self.audio_track = audio_track or AudioStreamTrack()
            self.pub.addTransceiver(self.audio_track, direction="sendonly")
        if video:
            self.video_track = video_track or CountingVideoTrack()
            self.pub.addTransceiver(self.video_track, direction="sendonly")
        await self.pub.setLocalDescription(await self.pub.createOffer())
        for t in self.pub.getTransceivers():
            tracks.append({"mid": t.mid, "kind": t.kind,
                           "source": "camera" if t.kind == "video" else "microphone"})
        published = await self.request("publish", sdp=self.pub.localDescription.sdp, tracks=tracks)
        await self.pub.setRemoteDescription(RTCSessionDescription(published["sdp"], "answer"))
        self._count_keyframe_requests()
        return published

    def _count_keyframe_requests(self) -> None:
        # instrumentation of this client only: the PLIs/FIRs the node sends the publisher
        self.keyframe_requests: list[float] = []
        for transceiver in self.pub.getTransceivers():
            if transceiver.kind != "video":
                continue
            sender = transceiver.sender
            original = sender._handle_rtcp_packet

            async def handle(packet, original=original):
                if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (1, 4):
                    self.keyframe_requests.append(time.monotonic())
                await original(packet)

            sender._handle_rtcp_packet = handle

    async def _answer_offers(self) -> None:
        while True:
            offer = await self.next_event("offer", timeout=3600, reader="answerer")
            if self.sub is None:
                self.sub = self._pc()
                self.sub.on("track", self._on_track)
            await self.sub.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            self._watch_first_video_packet()
            await self.sub.setLocalDescription(await self.sub.createAnswer())
            await self.request("answer", pc="sub", sdp=self.sub.localDescription.sdp)

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next((t.mid for t in self.sub.getTransceivers() if t.receiver.track is track), "?")
        self.subscriptions[f"{track.kind}:{mid}"] = Subscription(track)

    def _watch_first_video_packet(self) -> None:
        # instrumentation of this client only: see the first video payload it receives
        for transceiver in self.sub.getTransceivers():
            receiver = transceiver.receiver
            if transceiver.kind != "video" or getattr(receiver, "_watched", False):
                continue
            receiver._watched = True
            original = receiver._handle_rtp_packet

            async def handle(packet, arrival_time_ms, original=original):
                self.sub_video_packets += 1
                if self.first_video_packet_keyframe is None:
                    descriptor, rest = VpxPayloadDescriptor.parse(packet.payload)
                    self.first_video_packet_keyframe = bool(
                        descriptor.partition_start and descriptor.partition_id == 0
                        and rest and not rest[0] & 0x01)
                await original(packet, arrival_time_ms)

            receiver._handle_rtp_packet = handle

    async def send_pli(self) -> int:
        """A PLI for each video stream it receives, as a decoder that lost its
        reference sends one (aiortc's own, on the receiver's RTCP); how many were sent."""
        sent = 0
        for transceiver in self.sub.getTransceivers() if self.sub else []:
            if transceiver.kind == "video":
                for source in transceiver.receiver.getSynchronizationSources():
                    await transceiver.receiver._send_rtcp_pli(source.source)
                    sent += 1
        return sent

    def video(self) -> list[Subscription]:
        return [s for k, s in self.subscriptions.items() if k.startswith("video")]

    def audio(self) -> list[Subscription]:
        return [s for k, s in self.subscriptions.items() if k.startswith("audio")]

    async def close(self, abrupt: bool = False) -> None:
        for task in (self._offers,):
            if task is not None:
                task.cancel()
        for sub in self.subscriptions.values():
            sub.task.cancel()
        if self.ws is not None:
            if abrupt:
                self.ws.transport.abort()  # vanish: no leave, no close frame
            else:
                await self.ws.close()
        for pc in (self.pub, self.sub):
            if pc is not None:
                await pc.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
