"""A small deterministic link simulator for the estimator's tests: no network, no clock.

A sender (media at a chosen rate, plus the estimator's probes) records every packet in a
``SendLog``; a ``Link`` (a bottleneck whose capacity may change over time, a drop-tail
queue, propagation delay, seeded random loss) gives each packet an arrival time or
loses it; the receiver's ``FeedbackBuilder`` makes transport-cc feedback every 50 ms,
serialized to bytes and parsed back as a node would, and the feedback reaches the
sender one propagation delay later (the return path is not congested). Everything is
a function of the seed: the same run gives the same trace.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from sfu import rtcp
from sfu.bwe import NOT_PROBE, Estimator, FeedbackBuilder, FeedbackReader, SendLog

RECEIVER_CLOCK_OFFSET = 1234.5678  # the receiver's clock has its own origin


def steps(*segments: tuple[float, float]) -> Callable[[float], float]:
    """A capacity that is ``rate`` from ``start`` on, for ``(start, rate)`` segments."""
    segments = sorted(segments)

    def capacity(t: float) -> float:
        rate = segments[0][1]
        for start, value in segments:
            if t >= start:
                rate = value
        return rate

    return capacity


@dataclass
class Link:
    """A bottleneck of ``capacity(t)`` bit/s with a FIFO queue of at most ``queue`` s,
    ``delay`` s of propagation each way and ``loss`` random loss before the queue."""

    capacity: Callable[[float], float]
    delay: float = 0.025
    queue: float = 0.25
    loss: float = 0.0
    seed: int = 1
    _free_at: float = 0.0
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def carry(self, t: float, size: int) -> float | None:
        if self.loss and self._rng.random() < self.loss:
            return None
        start = max(t, self._free_at)
        if start - t > self.queue:
            return None  # drop-tail: the buffer is full
        self._free_at = start + size * 8 / self.capacity(start)
        return self._free_at + self.delay


@dataclass
class Sample:
    t: float
    estimate: int
    acked: int | None
    capacity: float
    media: float


@dataclass
class Trace:
    """What the sender saw, enough to replay the estimator in open loop: every packet
    sent ``(time, size, probe)`` in order and every feedback ``(time, bytes)``."""

    sends: list = field(default_factory=list)
    feedbacks: list = field(default_factory=list)


class Simulation:
    """``run(until)`` steps time by ``step`` s; each step delivers due feedback to the
    estimator, sends ``media(t, estimator)`` bit/s in ``size``-byte packets, and the
    probes ``estimator.probe(t, want(t, estimator))`` asks for in ``padding``-byte
    packets. ``on_step(t, estimator)`` runs after each step (a layer selector, say)."""

    def __init__(self, link: Link, estimator: Estimator, media: Callable[[float, Estimator], float],
                 want: Callable[[float, Estimator], int | None] = lambda t, e: None,
                 size: int = 1200, padding: int = 250, step: float = 0.005,
                 feedback_interval: float = 0.05) -> None:
        self.link = link
        self.estimator = estimator
        self.media = media
        self.want = want
        self.size = size
        self.padding = padding
        self.step = step
        self.feedback_interval = feedback_interval
        self.log = SendLog()
        self.reader = FeedbackReader(self.log)
        self.builder = FeedbackBuilder(sender_ssrc=1, media_ssrc=2)
        self.trace = Trace()
        self.samples: list[Sample] = []
        self.t = 0.0
        self._bucket = 0.0
        self._arrivals: list[tuple[float, int]] = []  # (arrival, seq16), in arrival order
        self._in_flight: list[tuple[float, bytes]] = []  # feedback on its way back
        self._probe_sends: list[tuple[float, int, int]] = []
        self._next_feedback = feedback_interval

    def run(self, until: float, on_step: Callable[[float, Estimator], None] | None = None) -> list[Sample]:
        while self.t < until:
            self._tick(on_step)
        return self.samples

    def _tick(self, on_step) -> None:
        t, estimator = self.t, self.estimator
        while self._in_flight and self._in_flight[0][0] <= t:
            due, data = self._in_flight.pop(0)
            self.trace.feedbacks.append((round(due, 6), data))
            for packet in rtcp.parse_rtcp(data):
                estimator.on_feedback(due, self.reader.results(packet))
        rate = self.media(t, estimator)
        probe = estimator.probe(t, self.want(t, estimator))
        if probe is not None:
            gap = probe.interval(self.padding)
            self._probe_sends += [(t + k * gap, self.padding, probe.cluster)
                                  for k in range(probe.count(self.padding))]
        self._bucket += rate * self.step / 8
        sends = []
        n = int(self._bucket // self.size)
        self._bucket -= n * self.size
        # media sent while a probe is under way belongs to its cluster (libwebrtc's pacer)
        cluster = self._probe_sends[0][2] if self._probe_sends else NOT_PROBE
        sends += [(t + k * self.step / max(n, 1), self.size, cluster) for k in range(n)]
        due = [s for s in self._probe_sends if s[0] < t + self.step]
        self._probe_sends = [s for s in self._probe_sends if s[0] >= t + self.step]
        for when, size, cluster in sorted(sends + due):
            when = max(when, t)
            self.trace.sends.append((round(when, 6), size, cluster))
            seq = self.log.send(when, size, cluster)
            arrival = self.link.carry(when, size)
            if arrival is not None:
                self._arrivals.append((arrival, seq))
        if t >= self._next_feedback:
            self._next_feedback += self.feedback_interval
            ready = [a for a in self._arrivals if a[0] <= t]
            self._arrivals = self._arrivals[len(ready):]
            for arrival, seq in ready:
                self.builder.on_packet(seq, arrival + RECEIVER_CLOCK_OFFSET)
            for feedback in self.builder.build():
                self._in_flight.append((t + self.link.delay, feedback.serialize()))
        if on_step is not None:
            on_step(t, estimator)
        self.samples.append(Sample(t, estimator.bitrate, estimator.acked_bitrate,
                                   self.link.capacity(t), rate))
        self.t = round(t + self.step, 9)


def replay(trace: dict, estimator: Estimator) -> list[tuple[float, int]]:
    """Feed a stored trace (``make_traces.py``'s columns) to ``estimator`` in open loop;
    ``[(time, estimate)]`` after each feedback."""
    times = list(itertools.accumulate(trace["send_us"]))
    sizes = [size for size, n in trace["size"] for _ in range(n)]
    probes = [probe for probe, n in trace["probe"] for _ in range(n)]
    assert len(times) == len(sizes) == len(probes), "a trace's columns differ in length"
    log = SendLog()
    reader = FeedbackReader(log)
    i = 0
    out = []
    for due, data in trace["feedbacks"]:
        while i < len(times) and times[i] / 1e6 <= due:
            log.send(times[i] / 1e6, sizes[i], probes[i])
            i += 1
        for packet in rtcp.parse_rtcp(bytes.fromhex(data)):
            estimator.on_feedback(due, reader.results(packet))
        out.append((due, estimator.bitrate))
    return out
