"""Sequence accounting, latency stamps, percentiles and frame matching."""

from __future__ import annotations

import random

import pytest

from bench.stats import Reservoir, StreamStats, match_frames, percentiles, read_stamp, stamp


def test_stamp_round_trip_and_absence():
    data = b"\x80" * 12 + stamp(b"payload", 7, 123456789)
    assert read_stamp(data) == (123456789, 7)
    assert read_stamp(b"\x80" * 12 + b"payload") is None
    assert read_stamp(b"") is None


def test_in_order_stream_with_wrap():
    s = StreamStats()
    for i in range(70000):
        assert s.add(i & 0xFFFF) == "new"
    assert s.as_dict() == {"received": 70000, "expected": 70000, "lost": 0,
                           "duplicates": 0, "reordered": 0}


def test_loss_duplicates_and_reordering():
    s = StreamStats()
    for seq in (65534, 65535, 0, 2, 1, 2, 5):
        s.add(seq)
    assert s.as_dict() == {"received": 7, "expected": 8, "lost": 2,
                           "duplicates": 1, "reordered": 1}


def test_a_gap_names_the_missing_sequence_numbers():
    s = StreamStats()
    s.add(65534)
    s.add(2)
    assert s.missing == [65535, 0, 1]
    s.missing = []
    s.add(0)  # a retransmission fills the gap late
    assert s.missing == [] and s.reordered == 1 and s.lost == 2
    s.add(200)  # a gap too long to ask for
    assert s.missing == []


def test_a_packet_older_than_the_first_widens_the_span():
    s = StreamStats()
    for seq in (10, 11, 9):
        s.add(seq)
    assert s.expected == 3 and s.lost == 0 and s.reordered == 1


def test_reset_starts_a_new_window():
    s = StreamStats()
    for seq in range(10):
        s.add(seq)
    s.reset()
    for seq in (20, 22):
        s.add(seq)
    assert (s.expected, s.lost) == (3, 1)


def test_reservoir_keeps_a_bounded_uniform_sample():
    r = Reservoir(100, seed=1)
    r.extend(range(10000))
    assert r.count == 10000 and len(r.values) == 100
    assert 3000 < sum(r.values) / 100 < 7000


def test_percentiles():
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}
    p = percentiles(list(range(101)), (0, 50, 99, 100))
    assert p == {"p0": 0, "p50": 50, "p99": 99, "p100": 100}
    assert percentiles([1.0, 2.0], (50,))["p50"] == pytest.approx(1.5)


def test_match_frames_finds_the_one_alignment():
    rng = random.Random(5)
    sent = {}
    for i in range(300):
        sent[(4_294_960_000 + i * 3000 + (rng.randint(-300, 300) if i else 0)) & 0xFFFFFFFF] = \
            1_000_000_000 + i * 33_333_333
    offset = 987_654_321
    received = []
    for n, (ts, ns) in enumerate(list(sent.items())[50:250]):
        # a re-encoder rounds timestamps by a tick now and then
        received.append(((ts + offset + (1 if n % 3 == 0 else 0)) & 0xFFFFFFFF, ns + 42_000_000))
    latencies = match_frames(sent, received)
    assert len(latencies) == 200
    assert set(latencies) == {42_000_000}


def test_match_frames_without_data():
    assert match_frames({}, [(1, 2)]) == []
    assert match_frames({1: 2}, []) == []
