"""The rate controller of a delay-based estimate: AIMD in the shape of libwebrtc's
``AimdRateControl`` (GCC, draft-ietf-rmcat-gcc-02 section 5.5).

The detector's signal drives three states, as data in ``_NEXT``: overuse decreases
(to 0.85 x the acknowledged rate, at most once per round trip unless the rate fell
below half), underuse holds (the queue is draining: wait), normal after a hold
increases. The increase is multiplicative (8 % a second) while the link's capacity is
unknown and additive (about a packet per response time) near the capacity measured at
the last overuse, so the estimate probes gently where it last hurt and quickly
elsewhere. An increase never takes the estimate above 1.5 x what was acknowledged plus
10 kbit/s: what was not sent was not tested. Sans-IO: time (seconds) is passed in.
"""

from __future__ import annotations

import enum
import math

__all__ = ["AimdRateControl", "LinkCapacity", "RateState", "Usage"]


class Usage(enum.Enum):
    """What the overuse detector concludes about the path's queue."""

    NORMAL = "normal"
    OVERUSE = "overuse"
    UNDERUSE = "underuse"


class RateState(enum.Enum):
    HOLD = "hold"
    INCREASE = "increase"
    DECREASE = "decrease"


# (state, usage) -> next state; GCC's table, libwebrtc's ChangeState
_NEXT = {
    RateState.HOLD: {Usage.NORMAL: RateState.INCREASE, Usage.OVERUSE: RateState.DECREASE,
                     Usage.UNDERUSE: RateState.HOLD},
    RateState.INCREASE: {Usage.NORMAL: RateState.INCREASE, Usage.OVERUSE: RateState.DECREASE,
                         Usage.UNDERUSE: RateState.HOLD},
    RateState.DECREASE: {Usage.NORMAL: RateState.HOLD, Usage.OVERUSE: RateState.DECREASE,
                         Usage.UNDERUSE: RateState.HOLD},
}

BETA = 0.85  # multiplicative decrease factor
INCREASE_PER_SECOND = 1.08  # multiplicative increase far from the last congestion


class LinkCapacity:
    """The rate acknowledged at past overuses (kbit/s), averaged, with a deviation: the
    estimate is "near" the capacity between ``lower`` and ``upper`` (3 sigma)."""

    def __init__(self) -> None:
        self.estimate_kbps: float | None = None
        self._deviation = 0.4  # normalised variance, as libwebrtc's

    def _sigma(self) -> float:
        assert self.estimate_kbps is not None
        return math.sqrt(self._deviation * self.estimate_kbps)

    @property
    def upper(self) -> float:
        return math.inf if self.estimate_kbps is None else (self.estimate_kbps + 3 * self._sigma()) * 1000

    @property
    def lower(self) -> float:
        return 0.0 if self.estimate_kbps is None else max(0.0, self.estimate_kbps - 3 * self._sigma()) * 1000

    def on_overuse(self, acked_bps: float) -> None:
        sample = acked_bps / 1000
        alpha = 0.05
        if self.estimate_kbps is None:
            self.estimate_kbps = sample
        else:
            self.estimate_kbps = (1 - alpha) * self.estimate_kbps + alpha * sample
        error = self.estimate_kbps - sample
        self._deviation = (1 - alpha) * self._deviation + alpha * error * error / max(self.estimate_kbps, 1.0)
        self._deviation = min(max(self._deviation, 0.4), 2.5)

    def reset(self) -> None:
        self.estimate_kbps = None


class AimdRateControl:
    """``update(now, usage, acked)`` -> the new estimate (bit/s). ``acked`` is the rate
    the receiver acknowledged lately (bit/s, None before any); ``rtt`` (seconds) may be
    set by the caller as it learns it."""

    def __init__(self, start: int, minimum: int, maximum: int) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.bitrate = float(min(max(start, minimum), maximum))
        self.state = RateState.HOLD
        self.capacity = LinkCapacity()
        self.rtt = 0.2
        self._last_change: float | None = None
        self._last_decrease: float | None = None

    def set_estimate(self, now: float, bitrate: float) -> None:
        """Take ``bitrate`` as the estimate (a probe's result)."""
        self.bitrate = min(max(bitrate, self.minimum), self.maximum)
        self._last_change = now

    def time_to_reduce_further(self, now: float, acked: float | None) -> bool:
        """Overuse persists: cut again only once a round trip has shown the last cut's
        effect, or at once if even the acknowledged rate is under half the estimate."""
        if self._last_decrease is None or now - self._last_decrease >= min(max(self.rtt, 0.01), 0.2):
            return True
        return acked is not None and acked < 0.5 * self.bitrate

    def update(self, now: float, usage: Usage, acked: float | None) -> int:
        if usage is Usage.OVERUSE and not self.time_to_reduce_further(now, acked):
            return int(self.bitrate)
        self.state = _NEXT[self.state][usage]
        if self._last_change is None:
            self._last_change = now
        current = self.bitrate
        new = current
        if self.state is RateState.INCREASE:
            if acked is not None and acked > self.capacity.upper:
                self.capacity.reset()  # sending above the old capacity without harm: it moved
            dt = max(0.0, now - self._last_change)
            if self.capacity.estimate_kbps is not None:
                new = current + self._additive_per_second() * dt
            else:
                new = current + max(current * (INCREASE_PER_SECOND ** min(dt, 1.0) - 1), 1000 * min(dt, 1.0))
            if acked is not None:
                ceiling = 1.5 * acked + 10_000
                if new > ceiling:
                    new = max(current, ceiling)
            self._last_change = now
        elif self.state is RateState.DECREASE:
            decreased = BETA * (acked if acked is not None else current)
            if decreased > current and self.capacity.estimate_kbps is not None:
                decreased = BETA * self.capacity.estimate_kbps * 1000
            if decreased < current:
                new = decreased
            if acked is not None:
                if acked < self.capacity.lower:
                    self.capacity.reset()  # far below the old capacity: the link changed
                self.capacity.on_overuse(acked)
            self.state = RateState.HOLD  # after a cut, wait for the queue to drain
            self._last_change = now
            self._last_decrease = now
        else:
            self._last_change = now
        self.bitrate = min(max(new, self.minimum), self.maximum)
        return int(self.bitrate)

    def _additive_per_second(self) -> float:
        """About one average packet per response time (libwebrtc's additive increase)."""
        bits_per_frame = self.bitrate / 30
        packets_per_frame = max(1, math.ceil(bits_per_frame / (1200 * 8)))
        response_time = self.rtt + 0.1
        return max(4000.0, bits_per_frame / packets_per_frame / response_time)
