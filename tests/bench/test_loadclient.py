"""The load clients read keyframe requests with sfu's own RTCP parser."""

from __future__ import annotations

from bench.loadclient import _keyframe_requests
from sfu.rtcp import Fir, Nack, Pli, ReceiverReport, serialize_rtcp


def test_keyframe_requests_name_the_media_ssrcs_of_plis_and_firs():
    data = serialize_rtcp([
        ReceiverReport(ssrc=1, reports=[]),
        Pli(sender_ssrc=1, media_ssrc=0xAAAA),
        Nack(sender_ssrc=1, media_ssrc=0xCCCC, lost=[5]),
        Fir(sender_ssrc=1, media_ssrc=0, entries=[(0xBBBB, 3)]),
    ])
    assert _keyframe_requests(data) == [0xAAAA, 0xBBBB]


def test_malformed_rtcp_asks_for_nothing():
    assert _keyframe_requests(b"\x81\xce\x00\x09") == []
    assert _keyframe_requests(b"") == []


def test_publisher_packets_carry_the_negotiated_ids_and_pace_their_headers():
    import random
    from types import SimpleNamespace

    from bench.loadclient import _OutStream
    from sfu.extensions import EXT_ABS_SEND_TIME, EXT_MID
    from sfu.rtp import RtpPacket

    # what aiortc's transceiver holds once negotiated (read through sfu._aiortc_internals)
    transceiver = SimpleNamespace(
        mid="0", sender=SimpleNamespace(_ssrc=0x1234),
        _codecs=[SimpleNamespace(mimeType="video/VP8", payloadType=96),
                 SimpleNamespace(mimeType="video/rtx", payloadType=97)],
        _headerExtensions=[SimpleNamespace(uri=EXT_MID, id=1), SimpleNamespace(uri=EXT_ABS_SEND_TIME, id=3)])
    stream = _OutStream("video", transceiver, random.Random(1))
    first = RtpPacket.parse(stream.packet(b"frame", True, 3000))
    second = RtpPacket.parse(stream.packet(b"frame", False, 6000))
    assert (first.ssrc, first.payload_type, first.marker, first.payload) == (0x1234, 96, 1, b"frame")
    assert [i for i, _ in first.extensions] == [1, 3] and first.extensions[0][1] == b"0"
    assert second.sequence_number == (first.sequence_number + 1) & 0xFFFF
    assert (second.timestamp - first.timestamp) & 0xFFFFFFFF == 3000
    assert stream.packets == 2


def test_a_subscriber_notes_each_video_outage_and_when_it_ended():
    from bench.loadclient import OUTAGE_S, Subscriber
    from bench.stats import Reservoir
    from sfu.rtp import RtpPacket

    sub = Subscriber(None, None, name="s", latency=Reservoir(10), nack=False)
    sub.kinds = {96: "video", 111: "audio"}

    def arrive(seq: int, at: float, pt: int = 96) -> None:
        sub._on_rtp(RtpPacket(payload_type=pt, sequence_number=seq, timestamp=seq * 3000,
                              ssrc=pt, payload=b"\x10\x00\x00").serialize(), at)

    for i in range(5):
        arrive(i, 10.0 + i * 0.033)
    arrive(5, 10.2 + OUTAGE_S * 3)  # the node died; video again on another route
    arrive(6, 10.2 + OUTAGE_S * 3 + 0.033)
    arrive(1, 11.9, pt=111)  # audio says nothing about the video's outages
    assert sub.outages == [(10.0 + 4 * 0.033, 10.2 + OUTAGE_S * 3)]


def test_a_subscriber_reading_natively_knows_when_its_video_last_came():
    """The failover scenario asks whether video flows: natively read video counts."""
    import socket
    import time

    import pylibsrtp

    from bench import _receive_py
    from bench.loadclient import Subscriber
    from bench.stats import Reservoir
    from sfu.rtp import RtpPacket

    key = bytes(range(30))
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    into = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    into.bind(("127.0.0.1", 0))
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sub = Subscriber(None, None, name="s", latency=Reservoir(10), nack=False, native=True)
    sub.receiver = _receive_py.Receiver(into.fileno(), rx, video_pts={96: True})
    try:
        assert sub.last_video is None
        before = time.monotonic()
        packet = RtpPacket(payload_type=96, sequence_number=1, timestamp=0, ssrc=7,
                           payload=b"\x10\x00\x00").serialize()
        out.sendto(tx.protect(packet), into.getsockname())
        time.sleep(0.01)
        sub.receiver.drain()
        assert before <= sub.last_video <= time.monotonic()
    finally:
        sub.receiver.close()
        into.close()
        out.close()
