"""Loss recovery through a real node: 5% random loss on a subscriber's link, then on a
publisher's, each behind the WAN emulator (`bench.wan.UdpRelay`: 20 ms each way, 5%
loss each way, seeded). aiortc peers encode and decode real VP8.

(a) The subscriber's link: the node answers its NACKs from the cache as RTX; its video
    keeps decoding. (b) The publisher's link: the node NACKs what it lost and the
    publisher's RTX fills the holes; a subscriber on loopback decodes as if nothing
    was lost. Each prints the figures for docs/media.md.
"""

from __future__ import annotations

import asyncio
import time

import av
import numpy
import pytest
from aiortc import RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from bench.wan import UdpRelay, WanProfile, rewrite_candidates, sdp_candidate_address

from .peer import VIDEO_CLOCK, CountingVideoTrack, Participant, Subscription
from .waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

FRAME_TICKS = VIDEO_CLOCK // 15
LOSSY = WanProfile(delay_ms=20, loss_pct=5)
WATCH_S = 10


class NoisyVideoTrack(CountingVideoTrack):
    """Frames of noise, so that each takes several packets at aiortc's bitrate (a
    test pattern fits one packet a frame and a 5% loss would hardly touch it)."""

    def __init__(self) -> None:
        super().__init__(fps=15, width=320, height=240)
        self.rng = numpy.random.default_rng(5)

    async def recv(self) -> av.VideoFrame:
        frame = await super().recv()
        image = self.rng.integers(0, 256, (self.height, self.width, 3), numpy.uint8)
        noisy = av.VideoFrame.from_ndarray(image, format="bgr24")
        noisy.pts, noisy.time_base = frame.pts, frame.time_base
        return noisy


class TimedSubscription(Subscription):
    """Also keeps when each frame was decoded, to count freezes by the clock."""

    def __init__(self, track) -> None:
        self.decoded_at: list[float] = []
        super().__init__(track)

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                self.decoded_at.append(time.monotonic())
                self.frames += 1
                if frame.pts is not None:
                    self.pts.append(frame.pts)
        except Exception:  # MediaStreamError when the track ends
            pass

    def freezes(self, since: float, gap: float = 1.0) -> int:
        """Gaps of more than ``gap`` seconds between decoded frames after ``since``."""
        times = [t for t in self.decoded_at if t >= since]
        return sum(1 for a, b in zip(times, times[1:]) if b - a > gap)


class WanParticipant(Participant):
    """A participant whose publishing or subscribing peer connection goes through a
    `UdpRelay` (its SDP candidates rewritten both ways, as `bench.loadclient` does)."""

    def __init__(self, url: str, token: str, *, pub_relay: UdpRelay | None = None,
                 sub_relay: UdpRelay | None = None) -> None:
        super().__init__(url, token)
        self.pub_relay, self.sub_relay = pub_relay, sub_relay
        self.rtx_packets = 0  # video RTX packets this subscriber received

    @staticmethod
    def _from_node(relay: UdpRelay | None, sdp: str) -> str:
        if relay is None:
            return sdp
        relay.set_server(sdp_candidate_address(sdp))
        return rewrite_candidates(sdp, relay.host, relay.client_port)

    @staticmethod
    def _to_node(relay: UdpRelay | None, sdp: str) -> str:
        return sdp if relay is None else rewrite_candidates(sdp, relay.host, relay.server_port)

    async def publish(self, video: bool = True, audio: bool = True, video_track=None,
                      audio_track=None) -> dict:
        self.pub = self._pc()
        self.audio_track = audio_track or AudioStreamTrack()
        self.video_track = video_track or NoisyVideoTrack()
        self.pub.addTransceiver(self.audio_track, direction="sendonly")
        self.pub.addTransceiver(self.video_track, direction="sendonly")
        await self.pub.setLocalDescription(await self.pub.createOffer())
        tracks = [{"mid": t.mid, "kind": t.kind, "source": "camera" if t.kind == "video" else "microphone"}
                  for t in self.pub.getTransceivers()]
        published = await self.request("publish", sdp=self._to_node(self.pub_relay, self.pub.localDescription.sdp),
                                       tracks=tracks)
        answer = self._from_node(self.pub_relay, published["sdp"])
        await self.pub.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        return published

    async def _answer_offers(self) -> None:
        while True:
            offer = await self.next_event("offer", timeout=3600, reader="answerer")
            if self.sub is None:
                self.sub = self._pc()
                self.sub.on("track", self._on_track)
            sdp = self._from_node(self.sub_relay, offer["sdp"])
            await self.sub.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            await self.sub.setLocalDescription(await self.sub.createAnswer())
            self._count_rtx()
            await self.request("answer", pc="sub",
                               sdp=self._to_node(self.sub_relay, self.sub.localDescription.sdp))

    def _count_rtx(self) -> None:
        # instrumentation of this client only: the RTX packets its video receiver gets
        for transceiver in self.sub.getTransceivers():
            receiver = transceiver.receiver
            rtx = {c.payloadType for c in transceiver._codecs if c.mimeType.lower() == "video/rtx"}
            if not rtx or getattr(receiver, "_rtx_counted", False):
                continue
            receiver._rtx_counted = True
            original = receiver._handle_rtp_packet

            async def handle(packet, arrival_time_ms, original=original, rtx=rtx):
                if packet.payload_type in rtx:
                    self.rtx_packets += 1
                await original(packet, arrival_time_ms)

            receiver._handle_rtp_packet = handle

    def _on_track(self, track) -> None:
        mid = next((t.mid for t in self.sub.getTransceivers() if t.receiver.track is track), "?")
        self.subscriptions[f"{track.kind}:{mid}"] = TimedSubscription(track)


async def _joined(node, identity: str, **relays) -> WanParticipant:
    peer = WanParticipant(node.url, node.token(identity), **relays)
    await peer.connect()
    await peer.join()
    return peer


async def _watch(node, pub: WanParticipant, sub: WanParticipant) -> TimedSubscription:
    """Subscribe ``sub`` to ``pub``'s tracks and watch its video for `WATCH_S` seconds."""
    track_ids = [t["track_id"] for t in pub.published["tracks"]]
    await sub.request("subscribe", track_ids=track_ids)
    assert await wait_until(lambda: sub.video() and sub.video()[0].frames > 0, 30)
    video = sub.video()[0]
    start = time.monotonic()
    await asyncio.sleep(WATCH_S)  # the span measured, not a wait for a condition
    video.since = start
    return video


def _figures(node, video: TimedSubscription, relay: UdpRelay) -> dict:
    metrics = node.metrics()
    value = lambda name: metrics.get(name, 0.0)  # noqa: E731
    start = video.since
    return {
        "decoded_fraction": round(video.decoded_fraction(FRAME_TICKS), 3),
        "freezes": video.freezes(start),
        "longest_gap_s": round(max((b - a for a, b in zip(video.decoded_at, video.decoded_at[1:])
                                    if a >= start), default=0.0), 3),
        "frames": len([t for t in video.decoded_at if t >= start]),
        "nacks_received": value("dockcast_nacks_received_total"),
        "retransmissions": value("dockcast_retransmissions_total"),
        "nacks_refused": value("dockcast_nacks_refused_total"),
        "nacks_sent": value("dockcast_nacks_sent_total"),
        "nack_recovered": value("dockcast_nack_recovered_total"),
        "nack_failed": value("dockcast_nack_failed_total"),
        "relay": relay.stats(),
    }


async def test_five_percent_loss_on_a_subscribers_link(node):
    relay = await UdpRelay(LOSSY, seed=13).start()
    pub = await _joined(node, "warehouse-cam")
    sub = await _joined(node, "seller-on-hotel-wifi", sub_relay=relay)
    try:
        pub.published = await pub.publish()
        video = await _watch(node, pub, sub)
        figures = _figures(node, video, relay)
        print("subscriber link, 5% loss:", figures, "RTX packets received:", sub.rtx_packets)
        assert figures["relay"]["down"]["dropped_loss"] > 0  # the loss really happened
        # the node answered the subscriber's NACKs (as RTX: aiortc unwraps them)
        assert figures["nacks_received"] > 0 and figures["retransmissions"] > 0
        assert sub.rtx_packets > 0  # as RTX, which aiortc negotiated and unwraps
        # most NACKed packets are resent (70-90 of 86-120 in most runs); after a resync
        # aiortc NACKs the hundreds of numbers it skipped, which cannot be (675 NACKs,
        # 84 resent once in CI): the ratio is printed, the resends asserted
        assert figures["retransmissions"] >= 30, figures
        assert figures["decoded_fraction"] > 0.9, figures
        # aiortc's receiver NACKs a packet again only when a new gap appears (no timer, as
        # Chromium's has), so a lost RTX of a lost packet sometimes waits for its jitter
        # buffer to give up and ask for a keyframe: seen once in about five runs here
        assert figures["freezes"] <= 1, figures
    finally:
        for peer in (sub, pub):
            await peer.close()
        relay.close()


async def test_five_percent_loss_on_a_publishers_link(node):
    relay = await UdpRelay(LOSSY, seed=17).start()
    pub = await _joined(node, "warehouse-cam-on-congested-wifi", pub_relay=relay)
    sub = await _joined(node, "seller")
    try:
        pub.published = await pub.publish()
        video = await _watch(node, pub, sub)
        figures = _figures(node, video, relay)
        print("publisher link, 5% loss:", figures)
        assert figures["relay"]["up"]["dropped_loss"] > 0
        # the node NACKed what it lost and the publisher's RTX brought it back
        assert figures["nacks_sent"] > 0 and figures["nack_recovered"] > 0, figures
        assert figures["decoded_fraction"] > 0.9, figures
        assert figures["freezes"] == 0, figures
    finally:
        for peer in (sub, pub):
            await peer.close()
        relay.close()
