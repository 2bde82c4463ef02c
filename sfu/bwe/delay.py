"""A delay-based bandwidth estimate from transport-cc results, in the shape of
libwebrtc's GCC (draft-ietf-rmcat-gcc-02): a queue that grows says the path is full
before any packet is lost.

    results -> InterArrival (5 ms send-time groups, bursts merged)
            -> TrendlineDetector (slope of the smoothed delay over 20 groups,
               adaptive threshold, overuse / normal / underuse)
            -> AimdRateControl (sfu.bwe.aimd)           -> DelayBasedEstimate.bitrate

:class:`AckedBitrate` measures what the receiver got (bit/s over the last 0.5 s of
arrival time); the controller cuts to a fraction of it. Times are seconds: send times on
the sender's clock, arrivals on the receiver's (only differences are used). Sans-IO.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from .aimd import AimdRateControl, Usage
from .twcc import PacketResult

__all__ = ["AckedBitrate", "DelayBasedEstimate", "InterArrival", "TrendlineDetector"]

GROUP_LENGTH = 0.005  # packets sent within 5 ms of a group's first are one group
BURST_DELTA = 0.005  # arrivals closer than this with a shrinking delay: one burst
MAX_BURST = 0.1


class InterArrival:
    """Groups packets by send time and yields, per completed group, the change against
    the previous group: ``(send_delta, arrival_delta, arrival_time)`` in seconds."""

    def __init__(self) -> None:
        self._current: list[float] | None = None  # first_send, send, first_arrival, arrival
        self._previous: list[float] | None = None
        self._reordered = 0

    def add(self, send_time: float, arrival: float) -> tuple[float, float, float] | None:
        current = self._current
        if current is None:
            self._current = [send_time, send_time, arrival, arrival]
            return None
        if send_time < current[0]:
            return None  # older than the group being built: out of order, ignore
        if self._belongs(current, send_time, arrival):
            current[1] = max(current[1], send_time)
            current[3] = max(current[3], arrival)
            return None
        out = None
        previous = self._previous
        if previous is not None:
            send_delta = current[1] - previous[1]
            arrival_delta = current[3] - previous[3]
            if arrival_delta < 0:  # the receiver's clock or the path reordered groups
                self._reordered += 1
                if self._reordered >= 3:
                    self._previous = None
                    self._reordered = 0
            else:
                self._reordered = 0
                out = (send_delta, arrival_delta, current[3])
        self._previous = current
        self._current = [send_time, send_time, arrival, arrival]
        return out

    @staticmethod
    def _belongs(current: list[float], send_time: float, arrival: float) -> bool:
        if send_time - current[0] <= GROUP_LENGTH:
            return True
        arrival_delta = arrival - current[3]
        propagation = arrival_delta - (send_time - current[1])
        return propagation < 0 and arrival_delta <= BURST_DELTA and arrival - current[2] < MAX_BURST


class TrendlineDetector:
    """The trendline filter and overuse detector (libwebrtc's ``TrendlineEstimator``),
    in milliseconds inside as libwebrtc's constants are."""

    WINDOW = 20
    SMOOTHING = 0.9
    GAIN = 4.0
    K_UP, K_DOWN = 0.0087, 0.039
    OVERUSE_TIME_MS = 10.0

    def __init__(self) -> None:
        self.usage = Usage.NORMAL
        self.threshold = 12.5
        self.trend = 0.0
        self._deltas = 0
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._first_arrival: float | None = None
        self._history: collections.deque[tuple[float, float]] = collections.deque(maxlen=self.WINDOW)
        self._overuse_ms = -1.0
        self._overuse_count = 0
        self._previous_trend = 0.0
        self._last_threshold_update: float | None = None

    def update(self, send_delta: float, arrival_delta: float, arrival: float) -> Usage:
        delta_ms = (arrival_delta - send_delta) * 1000
        self._deltas = min(self._deltas + 1, 1000)
        self._accumulated += delta_ms
        self._smoothed = self.SMOOTHING * self._smoothed + (1 - self.SMOOTHING) * self._accumulated
        if self._first_arrival is None:
            self._first_arrival = arrival
        self._history.append(((arrival - self._first_arrival) * 1000, self._smoothed))
        if len(self._history) == self.WINDOW:
            slope = _slope(self._history)
            if slope is not None:
                self.trend = slope
        self._detect(send_delta * 1000, arrival * 1000)
        return self.usage

    def _detect(self, ts_delta_ms: float, now_ms: float) -> None:
        if self._deltas < 2:
            self.usage = Usage.NORMAL
            return
        modified = min(self._deltas, 60) * self.trend * self.GAIN
        if modified > self.threshold:
            if self._overuse_ms == -1:
                self._overuse_ms = ts_delta_ms / 2
            else:
                self._overuse_ms += ts_delta_ms
            self._overuse_count += 1
            if self._overuse_ms > self.OVERUSE_TIME_MS and self._overuse_count > 1 \
                    and self.trend >= self._previous_trend:
                self._overuse_ms = 0.0
                self._overuse_count = 0
                self.usage = Usage.OVERUSE
        elif modified < -self.threshold:
            self._overuse_ms = -1
            self._overuse_count = 0
            self.usage = Usage.UNDERUSE
        else:
            self._overuse_ms = -1
            self._overuse_count = 0
            self.usage = Usage.NORMAL
        self._previous_trend = self.trend
        self._adapt_threshold(modified, now_ms)

    def _adapt_threshold(self, modified: float, now_ms: float) -> None:
        # The threshold follows the trend slowly up and quickly down, so a path with
        # jittery delay (Wi-Fi) does not read as congestion, and a sudden spike does
        # not teach it anything (ignored above threshold + 15).
        if self._last_threshold_update is None:
            self._last_threshold_update = now_ms
        if abs(modified) > self.threshold + 15:
            self._last_threshold_update = now_ms
            return
        k = self.K_DOWN if abs(modified) < self.threshold else self.K_UP
        elapsed = min(max(now_ms - self._last_threshold_update, 0.0), 100.0)
        self.threshold += k * (abs(modified) - self.threshold) * elapsed
        self.threshold = min(max(self.threshold, 6.0), 600.0)
        self._last_threshold_update = now_ms


def _slope(points: Iterable[tuple[float, float]]) -> float | None:
    points = list(points)
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    numerator = sum((x - mean_x) * (y - mean_y) for x, y in points)
    denominator = sum((x - mean_x) ** 2 for x, _ in points)
    return numerator / denominator if denominator else None


class AckedBitrate:
    """What the receiver acknowledged, bit/s, over the last ``window`` seconds of
    arrival time (None before two arrivals). A short window: after a jump in the send
    rate (a layer switch, a probe that succeeded) a cut must follow what is sent now."""

    def __init__(self, window: float = 0.25) -> None:
        self.window = window
        self._arrivals: collections.deque[tuple[float, int]] = collections.deque()
        self._bytes = 0

    def add(self, arrival: float, size: int) -> None:
        if self._arrivals and arrival < self._arrivals[-1][0]:
            arrival = self._arrivals[-1][0]  # reordered: count it now
        self._arrivals.append((arrival, size))
        self._bytes += size
        while self._arrivals[0][0] < arrival - self.window:
            self._bytes -= self._arrivals.popleft()[1]

    @property
    def bitrate(self) -> float | None:
        if len(self._arrivals) < 2:
            return None
        # n arrivals span n - 1 gaps: the first packet's bytes came before the window
        span = max(self._arrivals[-1][0] - self._arrivals[0][0], 0.05)
        return (self._bytes - self._arrivals[0][1]) * 8 / span


class DelayBasedEstimate:
    """``on_results(now, results)`` -> the delay-based estimate (bit/s); ``usage`` is
    the detector's last verdict, ``acked`` the acknowledged rate."""

    def __init__(self, start: int, minimum: int, maximum: int) -> None:
        self.inter_arrival = InterArrival()
        self.detector = TrendlineDetector()
        self.rate = AimdRateControl(start, minimum, maximum)
        self.acked = AckedBitrate()
        self.usage = Usage.NORMAL

    @property
    def bitrate(self) -> int:
        return int(self.rate.bitrate)

    def on_results(self, now: float, results: list[PacketResult]) -> int:
        overused = False
        for result in sorted((r for r in results if r.arrival is not None), key=lambda r: r.seq):
            self.acked.add(result.arrival, result.size)
            deltas = self.inter_arrival.add(result.send_time, result.arrival)
            if deltas is not None:
                usage = self.detector.update(*deltas)
                overused = overused or usage is Usage.OVERUSE
        # an overuse seen inside this feedback counts even if the detector has moved on
        self.usage = Usage.OVERUSE if overused else self.detector.usage
        return self.rate.update(now, self.usage, self.acked.bitrate)
