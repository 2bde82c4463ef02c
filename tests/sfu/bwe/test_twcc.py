"""transport-cc feedback to per-packet results and back (sfu.bwe.twcc), on the wire
format of sfu.rtcp (compiled or pure: this directory runs in both modes)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfu import rtcp
from sfu.bwe import NOT_PROBE, FeedbackBuilder, FeedbackReader, PacketResult, SendLog
from sfu.errors import MalformedPacket

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def wire(feedbacks):
    """Through bytes, as a node gets them."""
    return [p for f in feedbacks for p in rtcp.parse_rtcp(f.serialize())]


def sent(log: SendLog, n: int, start: float = 10.0, gap: float = 0.002) -> list[int]:
    return [log.send(start + i * gap, 1000 + i) for i in range(n)]


def test_arrivals_come_back_as_results_within_a_tick():
    log = SendLog()
    reader = FeedbackReader(log)
    builder = FeedbackBuilder(sender_ssrc=1, media_ssrc=2)
    seqs = sent(log, 30)
    rng = random.Random(3)
    arrivals = {}
    t = 500.0
    for seq in seqs:
        t += rng.uniform(0.0, 0.01)
        if seq % 7 != 3:  # every 7th lost
            arrivals[seq] = t
            builder.on_packet(seq, t)
    (feedback,) = wire(builder.build())
    results = reader.results(feedback)
    assert [r.seq for r in results] == seqs  # the lost ones too, after the last received
    for r in results:
        assert r.send_time == 10.0 + r.seq * 0.002 and r.size == 1000 + r.seq and r.probe == NOT_PROBE
        if r.seq in arrivals:
            assert abs(r.arrival - arrivals[r.seq]) <= 0.000125 + 1e-9
        else:
            assert r.arrival is None and not r.received


def test_feedbacks_that_overlap_report_a_received_packet_once():
    log = SendLog()
    reader = FeedbackReader(log)
    sent(log, 3)
    feedback = rtcp.TransportFeedback(base_sequence=0, reference_time=10,
                                      packets=[(0, 1000), (1, None), (2, 500)])
    assert [r.received for r in reader.results(feedback)] == [True, False, True]
    again = rtcp.TransportFeedback(base_sequence=0, reference_time=10,
                                   packets=[(0, 1000), (1, 700), (2, 500)])
    assert [(r.seq, r.received) for r in reader.results(again)] == [(1, True)]  # late, not lost


def test_packets_the_log_does_not_know_are_left_out():
    log = SendLog(capacity=4)
    reader = FeedbackReader(log)
    sent(log, 10)  # 0..5 overwritten
    feedback = rtcp.TransportFeedback(base_sequence=4, reference_time=0,
                                      packets=[(s, 250) for s in range(4, 14)])
    assert [r.seq for r in reader.results(feedback)] == [6, 7, 8, 9]  # 10..13 never sent


def test_a_claim_of_many_packets_is_read_only_as_far_as_anything_was_sent():
    log = SendLog()
    reader = FeedbackReader(log)
    sent(log, 10)
    most = rtcp.MAX_FEEDBACK_PACKETS
    (feedback,) = rtcp.parse_rtcp(rtcp.TransportFeedback(
        base_sequence=5, packets=[((5 + i) & 0xFFFF, None) for i in range(most)]).serialize())
    assert [r.seq for r in reader.results(feedback)] == [5, 6, 7, 8, 9]


def test_reference_time_is_unwrapped_across_feedbacks():
    log = SendLog()
    reader = FeedbackReader(log)
    sent(log, 2)
    top = (1 << 23) - 1  # the largest signed 24-bit value; the next tick wraps to -2**23
    (first,) = reader.results(rtcp.TransportFeedback(base_sequence=0, reference_time=top,
                                                     packets=[(0, 0)]))
    (second,) = reader.results(rtcp.TransportFeedback(base_sequence=1, reference_time=-(1 << 23),
                                                      packets=[(1, 0)]))
    assert abs(second.arrival - first.arrival - 0.064) < 1e-9


def test_the_builder_splits_what_one_feedback_cannot_carry():
    builder = FeedbackBuilder(max_packets=10)
    for seq in range(25):
        builder.on_packet(seq, 1.0 + seq * 0.001)
    builder.on_packet(25, 100.0)  # 99 s after the last: beyond a two-byte delta
    feedbacks = wire(builder.build())
    assert [len(f.packets) for f in feedbacks] == [10, 10, 5, 1]
    assert [f.feedback_count for f in feedbacks] == [0, 1, 2, 3]
    assert builder.build() == []
    builder.on_packet(3, 101.0)  # already reported (lost or not): too late to say more
    assert builder.build() == []


def test_the_builder_wraps_sequence_numbers():
    builder = FeedbackBuilder()
    for i, seq in enumerate([65534, 65535, 1]):
        builder.on_packet(seq, 2.0 + i * 0.01)
    (feedback,) = wire(builder.build())
    assert feedback.base_sequence == 65534
    assert [(s, d is not None) for s, d in feedback.packets] == [(65534, True), (65535, True), (0, False),
                                                                 (1, True)]


@st.composite
def hostile_feedback(draw) -> bytes:
    """Bytes that look like a transport-cc feedback, then perhaps cut or corrupted."""
    count = draw(st.integers(0, 0xFFFF))
    header = bytes([0x8F, 205]) + draw(st.binary(min_size=2, max_size=2))
    body = draw(st.binary(min_size=8, max_size=8)) + draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
    body += count.to_bytes(2, "big") + draw(st.binary(min_size=4, max_size=4))
    body += draw(st.binary(max_size=80))
    data = header + body
    if draw(st.booleans()):  # a consistent length field
        data = bytes([0x8F, 205]) + ((len(body) + 3) // 4).to_bytes(2, "big") + body + bytes(-len(body) % 4)
    return data


@SETTINGS
@given(hostile_feedback(), st.integers(0, 70_000))
def test_hostile_feedback_gives_results_or_malformed_and_stays_bounded(data, sent_count):
    log = SendLog(capacity=1024)
    log.next_seq = sent_count
    for _ in range(min(sent_count, 1024)):
        log.send(0.0, 1200)  # the last 1024 numbers are known
    reader = FeedbackReader(log)
    try:
        packets = rtcp.parse_rtcp(data)
    except MalformedPacket:
        return
    for packet in packets:
        if isinstance(packet, rtcp.TransportFeedback):
            # a 2-byte run-length chunk says at most 8191 statuses; the count caps them all
            assert len(packet.packets) <= min(0xFFFF, 8191 * max(0, len(data) - 20) // 2)
            results = reader.results(packet)
            assert len(results) <= min(len(packet.packets), 1024)
            assert all(isinstance(r, PacketResult) for r in results)


@SETTINGS
@given(st.lists(st.one_of(st.none(), st.integers(-0x8000 * 250, 0x7FFF * 250)), max_size=200),
       st.integers(0, 0xFFFF), st.integers(-(1 << 23), (1 << 23) - 1))
def test_any_well_formed_feedback_reads_without_raising(deltas, base, reference):
    log = SendLog(capacity=256)
    log.next_seq = base
    for _ in range(256):
        log.send(1.0, 500)
    packets = [((base + i) & 0xFFFF, d) for i, d in enumerate(deltas)]
    feedback = rtcp.TransportFeedback(base_sequence=base, reference_time=reference, packets=packets)
    try:
        (parsed,) = rtcp.parse_rtcp(feedback.serialize())
    except ValueError:
        return  # a running total out of range: not a feedback anyone can send
    results = FeedbackReader(log).results(parsed)
    assert len(results) <= len(deltas)
    assert sum(r.received for r in results) <= sum(d is not None for d in deltas)
