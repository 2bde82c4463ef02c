"""RTCP parse and serialise, compiled against pure Python."""

from __future__ import annotations


def _compound(impl) -> bytes:
    """What a subscriber sends: a receiver report, a NACK and a PLI."""
    report = impl.ReceiverReport(ssrc=1, reports=[impl.ReportBlock(
        ssrc=2, fraction_lost=3, packets_lost=4, highest_sequence=5000, jitter=20,
        lsr=0, dlsr=0)])
    return impl.serialize_rtcp([report, impl.Nack(sender_ssrc=1, media_ssrc=2, lost=[10, 11, 13, 40]),
                                impl.Pli(sender_ssrc=1, media_ssrc=2)])


def test_parse_compound(benchmark, rtcp):
    data = _compound(rtcp)
    packets = benchmark(rtcp.parse_rtcp, data)
    assert len(packets) == 3


def test_serialize_compound(benchmark, rtcp):
    packets = rtcp.parse_rtcp(_compound(rtcp))
    benchmark(rtcp.serialize_rtcp, packets)
