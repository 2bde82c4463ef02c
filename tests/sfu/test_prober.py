"""Probe clusters as RTX padding with transport-wide numbers (sfu.prober)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from sfu.bwe import NOT_PROBE, Probe
from sfu.clock import ManualClock
from sfu.extensions import EXT_TRANSPORT_CC
from sfu.forward import SendLog
from sfu.prober import BURST_S, Prober, padding_packet


def parse(packet: bytes, twcc_id: int) -> RtpPacket:
    extensions = HeaderExtensionsMap()
    extensions.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=twcc_id, uri=EXT_TRANSPORT_CC)]))
    return RtpPacket.parse(packet, extensions)


@given(ssrc=st.integers(0, 2**32 - 1), pt=st.integers(0, 127), seq=st.integers(0, 2**16 - 1),
       ts=st.integers(0, 2**32 - 1), twcc_id=st.integers(1, 14), twcc_seq=st.integers(0, 2**16 - 1),
       padding=st.integers(1, 255))
def test_a_padding_packet_parses_back_with_no_payload(ssrc, pt, seq, ts, twcc_id, twcc_seq, padding):
    packet = padding_packet(ssrc, pt, seq, ts, twcc_id, twcc_seq, padding)
    parsed = parse(packet, twcc_id)
    assert (parsed.ssrc, parsed.payload_type, parsed.sequence_number, parsed.timestamp) == (ssrc, pt, seq, ts)
    assert parsed.extensions.transport_sequence_number == twcc_seq
    assert parsed.payload == b"" and parsed.padding_size == padding
    assert len(packet) == 12 + 8 + padding


@pytest.mark.parametrize("twcc_id, padding", [(0, 10), (15, 10), (3, 0), (3, 256)])
def test_impossible_ids_and_paddings_are_refused(twcc_id, padding):
    with pytest.raises(ValueError):
        padding_packet(1, 96, 1, 1, twcc_id, 1, padding)


def consumer(rtx=True):
    seqs = iter(range(100, 10_000))
    return SimpleNamespace(closed=False, rtx_ssrc=4242 if rtx else None, rtx_payload_type=97 if rtx else None,
                           state=SimpleNamespace(last_ts=5555), take_rtx_seq=lambda: next(seqs))


def test_a_cluster_is_paced_in_bursts_and_logged_with_its_id():
    clock, log, sent = ManualClock(), SendLog(), []
    prober = Prober(log, lambda p: sent.append((clock.now, p)) or True, clock, clock)
    probe = Probe(cluster=7, bitrate=1_000_000, duration=0.03)
    assert prober.send(probe, consumer(), twcc_id=5)
    assert prober.busy and not prober.send(probe, consumer(), twcc_id=5)  # one at a time
    clock.advance(1.0)
    assert not prober.busy and prober.clusters == 1
    size = len(sent[0][1])
    assert len(sent) == prober.sent == probe.count(size)
    # paced: never more than a burst's worth at one instant, spread over about the duration
    per_instant = {}
    for t, _ in sent:
        per_instant[t] = per_instant.get(t, 0) + 1
    assert max(per_instant.values()) <= max(1, -(-BURST_S * probe.bitrate // (size * 8)))
    assert sent[-1][0] - sent[0][0] >= probe.duration * 0.5
    # each one numbered by the log, on the RTX stream, recorded with the cluster
    for i, (t, packet) in enumerate(sent):
        parsed = parse(packet, 5)
        assert parsed.ssrc == 4242 and parsed.payload_type == 97 and parsed.sequence_number == 100 + i
        assert log.lookup(log.unwrap(parsed.extensions.transport_sequence_number)) == (t, size, 7)
    assert log.lookup(log.next_seq) is None and NOT_PROBE != 7


def test_no_rtx_no_probe_and_a_closed_consumer_ends_the_cluster():
    clock, log = ManualClock(), SendLog()
    prober = Prober(log, lambda p: True, clock, clock)
    assert not prober.send(Probe(cluster=1, bitrate=500_000), consumer(rtx=False), twcc_id=5)
    c = consumer()
    assert prober.send(Probe(cluster=2, bitrate=200_000, duration=0.2), c, twcc_id=5)
    sent = prober.sent
    c.closed = True
    clock.advance(1.0)
    assert prober.sent == sent and not prober.busy
