"""RTP header parse and rewrite, compiled against pure Python."""

from __future__ import annotations

from .conftest import rtp_packet

PACKET = rtp_packet()
EXT_MAP = bytes([0, 5, 7] + [0] * 253)  # mid -> 5, abs-send-time -> 7 (as for a subscriber)


def test_parse_header(benchmark, rtp):
    header = benchmark(rtp.parse_header, PACKET)
    assert header[0] == 96 and header[4] == 0x11223344


def test_rewrite(benchmark, rtp):
    out = benchmark(rtp.rewrite, PACKET, 0xAABBCCDD, 4242, 123456, 100, EXT_MAP, 7, 0x123456)
    assert len(out) == len(PACKET) and out[1] & 0x7F == 100


def test_parse_and_rewrite(benchmark, rtp):
    def step():
        pt, _m, seq, ts, _ssrc, *_ = rtp.parse_header(PACKET)
        return rtp.rewrite(PACKET, 0xAABBCCDD, seq + 10, ts + 10, 100, EXT_MAP, 7, 0)

    benchmark(step)


def test_full_packet_object(benchmark, rtp):
    """The full ``RtpPacket`` (not on the forwarding path), for comparison."""
    benchmark(lambda: rtp.RtpPacket.parse(PACKET).serialize())
