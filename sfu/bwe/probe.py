"""Probing: finding out whether the path takes more than is being sent.

A delay-based estimate never grows beyond 1.5 x what was acknowledged, and an SFU
sends a layer, not "as much as the path takes": a subscriber that fell to the lowest
layer would wait there forever. A probe is a short burst of padding (a *cluster*) sent
faster than the estimate; the rate at which the receiver got it is what the path can
take (libwebrtc's ``ProbeController`` and ``ProbeBitrateEstimator``, trimmed).

- :class:`ProbeController` decides when (``want`` above the estimate, at once again
  while each probe succeeds, exponentially, else once per ``interval``) and at what rate.
- :class:`ProbeResults` measures clusters from transport-cc results: send rate over the
  cluster's send times, receive rate over its arrivals; a receive rate well under the
  send rate is the path's capacity, taken at 95 %.
Sans-IO; time in seconds, rates in bit/s, sizes in bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .sendlog import NOT_PROBE
from .twcc import PacketResult

__all__ = ["START_INTERVAL_S", "START_PROBES", "Probe", "ProbeController", "ProbeResults"]

START_INTERVAL_S = 1.0
"""Until a first probe has succeeded, a failed one is retried after this, not after
the controller's ``interval``: a start is a guess (300 kbit/s), and the first cluster
often fails where the first keyframe burst fills the queue with it (a 3 Mbit/s
viewer waited 4.8 s at its start for a second probe, and 8 s for the top layer)."""
START_PROBES = 3
"""... for this many probes at most: a link no probe can get through (a 300 kbit/s link
probed at twice its estimate) was otherwise probed every 1-2 s for good, and the
queue each probe left cut its estimate until its video paused (4.5 s, in two
`dockcast bench quality` runs of three)."""

MIN_PACKETS = 5
MIN_DURATION = 0.015
_UNSATURATED = 0.9  # received under 90 % of the send rate: the path is full
_UTILISATION = 0.95
_MAX_VALID_RATIO = 2.0  # received faster than twice the send rate: a measuring artefact


@dataclass(frozen=True)
class Probe:
    """Send a cluster: at least ``min_packets`` packets and ``bitrate`` x ``duration``
    bits of padding (or RTX of recent packets: anything the subscriber drops), paced
    at ``bitrate``. Record each in the send log with ``probe=cluster``, and so every
    media packet sent meanwhile: the path carries both, and the receive rate is
    measured over all of them."""

    cluster: int
    bitrate: int
    duration: float = MIN_DURATION
    min_packets: int = MIN_PACKETS

    def count(self, size: int) -> int:
        """How many packets of ``size`` bytes make this cluster."""
        return max(self.min_packets, math.ceil(self.bitrate * self.duration / 8 / size))

    def interval(self, size: int) -> float:
        """Seconds between two packets of ``size`` bytes at the cluster's rate."""
        return size * 8 / self.bitrate


class ProbeResults:
    """Per cluster, what its received packets say; ``add(results)`` -> ``{cluster:
    bitrate}`` for the clusters these results completed or improved."""

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self._clusters: dict[int, list] = {}

    def add(self, results: Iterable[PacketResult]) -> dict[int, int]:
        touched = set()
        for r in results:
            if r.probe == NOT_PROBE or r.arrival is None:
                continue
            c = self._clusters.get(r.probe)
            if c is None:
                if len(self._clusters) >= self.keep:  # forget the oldest cluster
                    del self._clusters[min(self._clusters)]
                # first_send, last_send, last_send_size, first_arrival, first_size, last_arrival, bytes, n
                c = self._clusters[r.probe] = [r.send_time, r.send_time, r.size, r.arrival, r.size,
                                               r.arrival, 0, 0]
            c[0] = min(c[0], r.send_time)
            if r.send_time >= c[1]:
                c[1], c[2] = r.send_time, r.size
            if r.arrival < c[3]:
                c[3], c[4] = r.arrival, r.size
            c[5] = max(c[5], r.arrival)
            c[6] += r.size
            c[7] += 1
            touched.add(r.probe)
        out = {}
        for cluster in touched:
            rate = self._rate(self._clusters[cluster])
            if rate is not None:
                out[cluster] = rate
        return out

    @staticmethod
    def _rate(c: list) -> int | None:
        first_send, last_send, last_size, first_arrival, first_size, last_arrival, size, n = c
        if n < MIN_PACKETS * 4 // 5:
            return None
        send_interval = last_send - first_send
        receive_interval = last_arrival - first_arrival
        if not 0 < send_interval <= 1.0 or not 0 < receive_interval <= 1.0:
            return None
        send_rate = (size - last_size) * 8 / send_interval
        receive_rate = (size - first_size) * 8 / receive_interval
        if receive_rate > _MAX_VALID_RATIO * send_rate:
            return None
        if receive_rate < _UNSATURATED * send_rate:
            return round(_UTILISATION * receive_rate)
        return round(min(send_rate, receive_rate))


class ProbeController:
    """``request(now, estimate, want)`` -> a :class:`Probe` to send now, or None;
    ``on_result(cluster, bitrate)`` with what the cluster measured.

    A probe is worth sending only when the caller wants more than the estimate. It goes
    at up to twice the estimate (1.25 x ``want`` if less); a success (the result reaches 70 %
    of the probe's rate) is followed by the next probe at once, so the estimate doubles
    per round trip up to what the path takes; otherwise the next is ``interval`` s later
    (``start_interval`` until one has succeeded, for the first `START_PROBES`).
    A probe with no result after ``timeout`` s counts as failed.
    """

    def __init__(self, maximum: int, interval: float = 3.0, timeout: float = 1.0,
                 start_interval: float = START_INTERVAL_S) -> None:
        self.maximum = maximum
        self.interval = interval
        self.start_interval = min(start_interval, interval)
        self.succeeded = False
        """Whether a probe has succeeded yet (until then a failed one is retried
        after ``start_interval``)."""
        self.timeout = timeout
        self._next_cluster = 0
        self._pending: Probe | None = None
        self._pending_since = 0.0
        self._next_at = -math.inf
        self.probes_sent = 0

    def request(self, now: float, estimate: float, want: float | None) -> Probe | None:
        if want is None or want <= estimate * 1.05 or estimate >= self.maximum:
            return None
        if self._pending is not None:
            if now - self._pending_since < self.timeout:
                return None
            self._pending = None
            self._next_at = now + self._wait()
        if now < self._next_at:
            return None
        # aim past ``want``: a probe measures a little under its own rate
        bitrate = int(min(max(1.25 * want, 1.5 * estimate), 2 * estimate, self.maximum))
        probe = Probe(self._next_cluster, bitrate)
        self._next_cluster += 1
        self._pending, self._pending_since = probe, now
        self.probes_sent += 1
        return probe

    def on_result(self, now: float, cluster: int, bitrate: int) -> bool:
        """What cluster ``cluster`` measured; True if it was the pending probe and
        succeeded (reached 70 % of its rate)."""
        pending = self._pending
        if pending is None or cluster != pending.cluster:
            return False
        self._pending = None
        succeeded = bitrate >= 0.7 * pending.bitrate
        self._next_at = now if succeeded else now + self._wait()
        self.succeeded = self.succeeded or succeeded
        return succeeded

    def _wait(self) -> float:
        if self.succeeded or self.probes_sent >= START_PROBES:
            return self.interval
        return self.start_interval
