"""Interop with GStreamer's webrtcbin: it publishes VP8 and Opus through a real node to
a webrtcbin subscriber and an aiortc subscriber, and both decode from a keyframe on.

webrtcbin runs in ``gst_peer.py`` under Debian's ``/usr/bin/python3`` (python3-gi),
spoken to in JSON lines; this side speaks to the node with ``signalling.client``.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import subprocess
import time

import pytest

from signalling.client import DockcastClient

from .peer import Participant

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

GST_PYTHON = "/usr/bin/python3"
GST_PEER = pathlib.Path(__file__).with_name("gst_peer.py")
GST_CHECK = """
import gi
for name, version in (("Gst", "1.0"), ("GstSdp", "1.0"), ("GstWebRTC", "1.0"), ("Nice", "0.1")):
    gi.require_version(name, version)
from gi.repository import Gst
Gst.init(None)
missing = [e for e in ("webrtcbin", "nicesrc", "dtlssrtpenc", "vp8enc", "vp8dec", "rtpvp8pay",
                       "rtpvp8depay", "opusenc", "opusdec", "rtpopuspay", "rtpopusdepay",
                       "videotestsrc", "audiotestsrc")
           if Gst.ElementFactory.find(e) is None]
print(" ".join(missing))
"""


def _gstreamer_missing() -> str | None:
    """What is missing to run webrtcbin, or None."""
    if not os.path.exists(GST_PYTHON):
        return f"{GST_PYTHON} is missing"
    check = subprocess.run([GST_PYTHON, "-c", GST_CHECK], capture_output=True, text=True, timeout=60)
    if check.returncode != 0:
        return check.stderr.strip().splitlines()[-1] if check.stderr.strip() else "python3-gi fails"
    if check.stdout.strip():
        return f"GStreamer elements missing: {check.stdout.strip()}"
    return None


@pytest.fixture(scope="module")
def gstreamer():
    missing = _gstreamer_missing()
    if missing:
        pytest.fail(f"{missing}: `make test` installs GStreamer and python3-gi (scripts/system-deps.sh)")


class GstPeer:
    """One ``gst_peer.py`` process: JSON lines in and out, its stderr in a file."""

    def __init__(self, proc: asyncio.subprocess.Process, log: pathlib.Path) -> None:
        self.proc = proc
        self.log_path = log
        self.messages: list[dict] = []
        self._cursor: dict[str, int] = {}
        self._arrived = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, mode: str, log: pathlib.Path) -> GstPeer:
        with open(log, "w") as err:
            proc = await asyncio.create_subprocess_exec(
                GST_PYTHON, str(GST_PEER), mode, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err)
        return cls(proc, log)

    async def _read(self) -> None:
        while line := await self.proc.stdout.readline():
            try:
                self.messages.append(json.loads(line))
            except ValueError:
                self.messages.append({"type": "garbage", "line": line.decode(errors="replace")})
            self._arrived.set()
        self.messages.append({"type": "exited"})
        self._arrived.set()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    async def next(self, type_: str, timeout: float = 15) -> dict:
        """The next message of ``type_`` not yet returned; an error or exit raises."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(self._cursor.get(type_, 0), len(self.messages)):
                msg = self.messages[i]
                if msg["type"] == type_:
                    self._cursor[type_] = i + 1
                    return msg
                if msg["type"] in ("error", "exited", "garbage"):
                    raise AssertionError(f"webrtcbin peer: {msg}\n{self.log()}")
            self._arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"webrtcbin peer sent no {type_!r}: {self.messages}\n{self.log()}")
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                pass

    async def send(self, **msg) -> None:
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        await self.proc.stdin.drain()

    async def stats(self) -> dict:
        await self.send(type="stats")
        return await self.next("stats")

    def connected(self) -> bool:
        return any(m["type"] == "state" and m["connection"] == "connected" for m in self.messages)

    async def close(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.send(type="quit")
                await asyncio.wait_for(self.proc.wait(), 10)
            except (ConnectionError, TimeoutError):
                self.proc.kill()
                await self.proc.wait()
        await self._reader


def _tracks(sdp: str) -> list[dict]:
    """The ``tracks`` of a publish request for each m-line of a webrtcbin offer."""
    tracks = []
    for section in sdp.split("\nm=")[1:]:
        kind = section.split(" ", 1)[0]
        mid = re.search(r"^a=mid:(\S+)", section, re.M).group(1)
        tracks.append({"mid": mid, "kind": kind,
                       "source": "camera" if kind == "video" else "microphone"})
    return tracks


async def _wait(predicate, timeout=15.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(step)
    return await predicate()


async def test_webrtcbin_publishes_to_webrtcbin_and_aiortc(node, gstreamer, tmp_path):
    peers: list[GstPeer] = []
    clients: list[DockcastClient] = []
    aiortc_sub: Participant | None = None
    try:
        # the webrtcbin publisher offers (video0: VP8, audio1: Opus, bundle-only) and the node answers
        gst_pub = await GstPeer.start("publish", tmp_path / "gst-publisher.log")
        peers.append(gst_pub)
        pub = await DockcastClient.connect(node.url, node.token("gst-camera"))
        clients.append(pub)
        await pub.join("dock-1")
        offer = await gst_pub.next("offer")
        tracks = _tracks(offer["sdp"])
        assert [t["kind"] for t in tracks] == ["video", "audio"]
        published = await pub.publish(offer["sdp"], tracks)
        await gst_pub.send(type="answer", sdp=published["sdp"])

        async def publisher_connected():
            return gst_pub.connected()

        # DTLS: the node is the client here and webrtcbin's certificate is RSA
        assert await _wait(publisher_connected, timeout=15), (gst_pub.messages, node.log()[-3000:])
        track_ids = [t["track_id"] for t in published["tracks"]]
        assert sorted(t["kind"] for t in published["tracks"]) == ["audio", "video"]

        # two seconds of video: its first keyframe is now too old for the node to replay
        # (keyframe_replay_age), and vp8enc makes no other unless asked (keyframe-max-dist)
        async def two_seconds_encoded():
            return (await gst_pub.stats())["encoded_frames"] >= 30

        assert await _wait(two_seconds_encoded, timeout=20), await gst_pub.stats()
        assert (await gst_pub.stats())["encoded_keyframes"] == 1

        # a webrtcbin subscriber answers the node's offer
        gst_sub = await GstPeer.start("subscribe", tmp_path / "gst-subscriber.log")
        peers.append(gst_sub)
        sub = await DockcastClient.connect(node.url, node.token("gst-viewer"))
        clients.append(sub)
        await sub.join("dock-1")
        reply = await sub.subscribe(track_ids)
        assert reply["track_ids"] == track_ids
        node_offer = await sub.next_event("offer", timeout=15)
        await gst_sub.send(type="offer", sdp=node_offer["sdp"])
        answer = await gst_sub.next("answer")
        await sub.answer(answer["sdp"])

        # and an aiortc subscriber
        aiortc_sub = Participant(node.url, node.token("aiortc-viewer"))
        await aiortc_sub.connect()
        await aiortc_sub.join()
        await aiortc_sub.request("subscribe", track_ids=track_ids)

        async def gst_decoding():
            s = await gst_sub.stats()
            return s["video_decoded"] >= 30 and s["audio_decoded"] >= 100

        assert await _wait(gst_decoding, timeout=30), (await gst_sub.stats(), gst_sub.log())
        stats = await gst_sub.stats()
        assert stats["first_video_packet_keyframe"] is True, stats
        assert stats["first_video_frame_keyframe"] is True, stats
        assert stats["first_decoded_size"] == [320, 240], stats

        async def aiortc_decoding():
            return (len(aiortc_sub.video()) == 1 and aiortc_sub.video()[0].frames >= 30
                    and len(aiortc_sub.audio()) == 1 and aiortc_sub.audio()[0].frames >= 50)

        assert await _wait(aiortc_decoding, timeout=30), (
            [s.frames for s in aiortc_sub.subscriptions.values()])
        assert aiortc_sub.first_video_packet_keyframe is True

        # the keyframes both subscribers started with were asked of webrtcbin by the node
        published_stats = await gst_pub.stats()
        assert published_stats["encoded_keyframes"] >= 2, published_stats
    finally:
        if aiortc_sub is not None:
            await aiortc_sub.close()
        for client in clients:
            await client.close()
        for peer in peers:
            await peer.close()
