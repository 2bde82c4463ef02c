"""Counting what arrives: sequence checks, latency stamps, percentiles (sans-IO).

The publisher appends a :data:`TRAILER` to every payload it sends (the SFU forwards
payloads untouched, and no decoder sees them): its packet index, the send time on
``CLOCK_MONOTONIC`` (one clock for every process of the machine) and a magic. A
subscriber reads it back to compute latency per packet. A server that re-encodes
(the naive relay) keeps no trailer; its latency is found per video frame instead
(:func:`match_frames`), from the RTP timestamps, which the publisher jitters so that
only one alignment of the two logs fits.
"""

from __future__ import annotations

import bisect
import math
import random
import struct
from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = ["TRAILER", "MAGIC", "OUTAGE_S", "stamp", "read_stamp", "StreamStats", "Reservoir",
           "percentiles", "match_frames", "merge_counts"]

MAGIC = b"DcB1"
TRAILER = struct.Struct("!QI4s")  # send time (ns, CLOCK_MONOTONIC), packet index, magic

OUTAGE_S = 0.2
"""A subscriber's video silent this long (seconds) is an outage."""


def stamp(payload: bytes, index: int, send_ns: int) -> bytes:
    return payload + TRAILER.pack(send_ns, index & 0xFFFFFFFF, MAGIC)


def read_stamp(data: bytes, end: int | None = None) -> tuple[int, int] | None:
    """``(send_ns, index)`` from a packet whose payload ends at ``end``, or None."""
    end = len(data) if end is None else end
    if end < TRAILER.size or data[end - 4:end] != MAGIC:
        return None
    send_ns, index, _ = TRAILER.unpack_from(data, end - TRAILER.size)
    return send_ns, index


class StreamStats:
    """Sequence-number accounting of one received RTP stream (RFC 3550 wrap-around).

    ``lost`` is what never arrived between the first and the highest sequence number
    seen; ``duplicates`` arrived twice; ``reordered`` arrived after a later one; a
    packet ``WINDOW`` or more behind the highest is "old" (counted as received only).
    """

    WINDOW = 4096
    MAX_GAP = 64  # a longer gap is not worth asking for again

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.received = 0
        self.unique = 0
        self.duplicates = 0
        self.reordered = 0
        self._first: int | None = None
        self._highest: int | None = None  # extended
        self._seen: set[int] = set()
        self.missing: list[int] = []  # sequence numbers skipped by the last "new" packet

    def add(self, seq: int) -> str:
        """Count one arrival; returns "new", "late" (reordered), "dup" or "old"."""
        self.received += 1
        if self._highest is None:
            self._first = self._highest = seq
            self._seen.add(seq)
            self.unique += 1
            return "new"
        highest = self._highest
        delta = ((seq - highest + 0x8000) & 0xFFFF) - 0x8000
        ext = highest + delta
        if delta <= -self.WINDOW:
            return "old"  # too far behind to tell a duplicate from a late one
        if ext in self._seen:
            self.duplicates += 1
            return "dup"
        if ext < self._first:
            self._first = ext  # arrived before the first one we saw: widen the span
        self._seen.add(ext)
        self.unique += 1
        if delta > 0:
            if 1 < delta <= self.MAX_GAP:
                self.missing = [(highest + i) & 0xFFFF for i in range(1, delta)]
            self._highest = ext
            if len(self._seen) > 2 * self.WINDOW:
                floor = ext - self.WINDOW
                self._seen = {s for s in self._seen if s >= floor}
            return "new"
        self.reordered += 1
        return "late"

    @property
    def expected(self) -> int:
        if self._highest is None:
            return 0
        return self._highest - self._first + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.unique)

    def as_dict(self) -> dict[str, int]:
        return {"received": self.received, "expected": self.expected, "lost": self.lost,
                "duplicates": self.duplicates, "reordered": self.reordered}


class Reservoir:
    """A uniform sample of at most ``size`` values from a stream (Algorithm R)."""

    def __init__(self, size: int = 20000, seed: int | None = None) -> None:
        self.size = size
        self.count = 0
        self.values: list[float] = []
        self._rng = random.Random(seed)

    def add(self, value: float) -> None:
        self.count += 1
        if len(self.values) < self.size:
            self.values.append(value)
        else:
            j = self._rng.randrange(self.count)
            if j < self.size:
                self.values[j] = value

    def extend(self, values: Iterable[float]) -> None:
        for value in values:
            self.add(value)

    def clear(self) -> None:
        self.count = 0
        self.values = []


def percentiles(values: Sequence[float], points: Iterable[float] = (50, 95, 99)) -> dict[str, float | None]:
    """``{"p50": .., "p95": .., ...}`` by linear interpolation; None when empty."""
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for p in points:
        key = f"p{p:g}"
        if not ordered:
            out[key] = None
            continue
        rank = (len(ordered) - 1) * p / 100.0
        lo = math.floor(rank)
        hi = min(lo + 1, len(ordered) - 1)
        out[key] = ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)
    return out


def match_frames(sent: dict[int, int], received: Sequence[tuple[int, int]],
                 max_latency_ns: int = 5_000_000_000, probe: int = 24, slack: int = 2) -> list[int]:
    """Latencies (ns) of received video frames, matched to sent ones by RTP timestamp.

    ``sent``: the publisher's ``{rtp_timestamp: send_ns}``; ``received``: one
    subscriber's ``[(rtp_timestamp, arrival_ns)]`` after a server that rewrote the
    timestamps by an unknown constant, give or take ``slack`` ticks (a re-encoder
    rounds through its own time base). The constant that maps the most received frames
    onto sent ones wins (the publisher's timestamp jitter makes it unique).
    """
    if not sent or not received:
        return []
    by_time = sorted(sent.items(), key=lambda item: item[1])
    times = [send_ns for _, send_ns in by_time]
    votes: Counter[int] = Counter()
    step = max(1, len(received) // probe)  # probes spread over the whole window
    for out_ts, arrival in received[::step][:probe]:
        lo = bisect.bisect_left(times, arrival - max_latency_ns)
        hi = bisect.bisect_right(times, arrival)
        for in_ts, _ in by_time[lo:hi]:
            votes[(out_ts - in_ts) & 0xFFFFFFFF] += 1
    if not votes:
        return []

    def near(offset: int) -> int:
        return sum(votes.get((offset + d) & 0xFFFFFFFF, 0) for d in range(-slack, slack + 1))

    offset = max(votes, key=near)
    tries = sorted(range(-slack, slack + 1), key=abs)
    latencies = []
    for out_ts, arrival in received:
        for d in tries:
            send_ns = sent.get((out_ts - offset + d) & 0xFFFFFFFF)
            if send_ns is not None:
                if arrival >= send_ns:
                    latencies.append(arrival - send_ns)
                break
    return latencies


def merge_counts(rows: Iterable[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """Sum ``{kind: {counter: n}}`` maps (per-stream counts into totals)."""
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        for kind, counts in row.items():
            target = out.setdefault(kind, {})
            for key, value in counts.items():
                target[key] = target.get(key, 0) + value
    return out
