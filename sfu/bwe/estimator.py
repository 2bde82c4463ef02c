"""One subscriber transport's bandwidth estimate: delay-based, capped by loss, raised
by probes; fed by transport-cc results or by the subscriber's own REMB.

    estimator = Estimator(start=300_000)
    # per packet sent: seq = log.send(now, size)  (sfu.bwe.sendlog)
    # per transport-cc feedback: estimator.on_feedback(now, reader.results(feedback))
    # per REMB (a subscriber without transport-cc): estimator.on_remb(now, remb.bitrate)
    # per receiver report: estimator.on_receiver_report(now, fraction_lost, packets)
    # now and then: probe = estimator.probe(now, want=selector.desired_bitrate)

``estimator.bitrate`` is what the subscriber's video may use (bit/s). Sans-IO: ``now``
is seconds on the caller's monotonic clock, the same clock as the send log's.
"""

from __future__ import annotations

from collections.abc import Sequence

from .aimd import Usage
from .delay import DelayBasedEstimate
from .loss import LossBasedControl
from .probe import Probe, ProbeController, ProbeResults
from .twcc import PacketResult

__all__ = ["ACKED_FLOOR", "START_LOSS_GRACE_S", "Estimator"]

START_LOSS_GRACE_S = 1.0
"""Transport-cc packets sent within this of the first one are not counted for loss: a
receiver whose side of the DTLS handshake ends after ours drops the first packets it
cannot decrypt yet, and their loss cut a 3 Mbit/s viewer's estimate from 300 to 120
kbit/s in its first two seconds (the delay-based estimate, and probes, still count
them)."""

ACKED_FLOOR = 0.85
"""The loss ceiling never falls under this x the acknowledged rate (transport-cc): the
rate GCC's delay-based rule also backs off to at an overuse."""


class Estimator:
    """``bitrate`` = min(delay-based or REMB, loss-based ceiling), within
    [``minimum``, ``maximum``]. ``acked_bitrate`` is the rate the receiver
    acknowledged (transport-cc only), ``rtt`` a round-trip estimate in seconds
    (send to feedback, so including the feedback interval), ``mode`` ``"twcc"`` or
    ``"remb"`` once the first input arrived (None before)."""

    def __init__(self, start: int = 300_000, minimum: int = 50_000, maximum: int = 5_000_000,
                 probe_interval: float = 3.0) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError(f"Estimator needs 0 < minimum <= maximum, not {minimum}, {maximum}")
        self.minimum = minimum
        self.maximum = maximum
        self.delay = DelayBasedEstimate(start, minimum, maximum)
        self.loss = LossBasedControl(minimum, maximum)
        self.probes = ProbeController(maximum, interval=probe_interval)
        self._probe_results = ProbeResults()
        self.bitrate = min(max(start, minimum), maximum)
        self.remb: int | None = None
        self.rtt: float | None = None
        self.mode: str | None = None
        self._first_send: float | None = None  # of the first packet feedback was about
        self.probed_at: float | None = None
        """When a probe last succeeded: the path took what it was sent at (transport-cc)."""
        self.proven = float(self.bitrate)
        """What the path has shown it takes (transport-cc): the start, then the highest of
        what was acknowledged and what probes measured, cut with the estimate at each
        congestion signal. See `usable`."""

    def restart(self, start: int, proven: float | None = None) -> None:
        """Start again from ``start`` (before any feedback: a subscriber found to
        negotiate transport-cc starts lower than one that will send REMBs), taking
        ``proven`` (default: the start) as what the path has shown."""
        self.delay = DelayBasedEstimate(start, self.minimum, self.maximum)
        self.bitrate = min(max(start, self.minimum), self.maximum)
        self.proven = float(self.bitrate if proven is None else min(proven, self.bitrate))

    @property
    def usable(self) -> int:
        """The estimate as far as the path has shown it (transport-cc): ``bitrate``, but
        not above `proven`. The delay-based estimate grows by itself to 1.5 x what was
        acknowledged (libwebrtc's rule, made for an encoder that then fills it); an SFU
        that moved a subscriber up a layer on that alone would flood a link that
        never carried the rate (seen: a 300 kbit/s viewer on 640x360 estimated at
        619 kbit/s after 12 s, moved to 1280x720 and frozen). A layer is gone up to only
        within this, which probes raise (LiveKit's allocator likewise waits for a
        probe). In REMB mode, ``bitrate``."""
        if self.mode != "twcc":
            return self.bitrate
        return int(min(self.bitrate, max(self.proven, self.minimum)))

    @property
    def acked_bitrate(self) -> int | None:
        acked = self.delay.acked.bitrate
        return None if acked is None else int(acked)

    @property
    def usage(self) -> Usage:
        """The delay detector's last verdict (transport-cc only)."""
        return self.delay.usage

    def on_feedback(self, now: float, results: Sequence[PacketResult]) -> int:
        """Results of one transport-cc feedback (``FeedbackReader.results``); the new
        estimate."""
        self.mode = "twcc"
        if not results:
            return self.bitrate
        before = self.bitrate
        received = [r for r in results if r.arrival is not None]
        if received:
            sample = max(0.0, now - max(r.send_time for r in received))
            self.rtt = sample if self.rtt is None else 0.875 * self.rtt + 0.125 * sample
            self.delay.rate.rtt = self.rtt
        self.delay.on_results(now, list(results))
        for cluster, rate in sorted(self._probe_results.add(received).items()):
            if self.probes.on_result(now, cluster, rate):
                self.probed_at = now
            self.proven = max(self.proven, rate)  # a full path measures its capacity too
            self.loss.raise_to(rate)  # that much got through, whatever was lost before
            if rate > self.delay.bitrate and self.delay.usage is not Usage.OVERUSE:
                self.delay.rate.set_estimate(now, rate)
        if self._first_send is None:
            self._first_send = min(r.send_time for r in results)
        scored = [r for r in results if r.send_time - self._first_send >= START_LOSS_GRACE_S]
        if scored:
            lost = sum(1 for r in scored if r.arrival is None)
            self.loss.on_loss(now, lost, len(scored), self.bitrate)
        acked = self.delay.acked.bitrate
        if acked is not None:
            # what arrived did get through: loss (a full drop-tail queue loses most of a
            # burst) must not hold the estimate far under it, or a link flooded once
            # (a start on too high a layer, a link that drops) is judged at a third of
            # its rate and climbs back 8 % a second (seen: a 300 kbit/s link at 100k)
            self.loss.raise_to(ACKED_FLOOR * acked)
            self.proven = max(self.proven, acked)
        bitrate = self._combine(self.delay.bitrate)
        if bitrate < before:  # a congestion signal: what was shown before may be gone
            self.proven = min(self.proven, bitrate)
        return bitrate

    def on_remb(self, now: float, bitrate: int) -> int:
        """A REMB from the subscriber (its receive-side estimate, bit/s); the new estimate."""
        if self.mode != "twcc":
            self.mode = "remb"
        self.remb = max(0, int(bitrate))
        return self._combine(self.remb if self.mode == "remb" else self.delay.bitrate)

    def on_receiver_report(self, now: float, fraction_lost: int, packets: int) -> int:
        """Loss from an RTCP receiver report (fraction 0..255 over ``packets`` expected)
        when there is no transport-cc; ignored with it (its own loss is finer)."""
        if self.mode == "twcc":
            return self.bitrate
        lost = round(fraction_lost / 256 * packets)
        self.loss.on_loss(now, lost, packets, self.bitrate)
        return self._combine(self.remb if self.remb is not None else self.bitrate)

    def trial(self, now: float, bitrate: int) -> int:
        """The caller starts sending ``bitrate`` again on trial (a video paused for
        bandwidth, resumed at its lowest layer: in REMB mode nothing else could raise
        the estimate, since a paused video brings neither REMBs nor counted packets).
        Loss seen before and the last REMB no longer hold the estimate under
        ``bitrate``; the feedback from now on decides. The new estimate."""
        bitrate = int(bitrate)
        self.loss.raise_to(bitrate)
        if self.remb is not None:
            self.remb = max(self.remb, bitrate)
        if self.mode == "remb":
            return self._combine(self.remb if self.remb is not None else bitrate)
        if bitrate > self.delay.bitrate:
            self.delay.rate.set_estimate(now, bitrate)
        return self._combine(self.delay.bitrate)

    def probe(self, now: float, want: int | None) -> Probe | None:
        """A probe to send now if the caller ``want``s more than the estimate (the next
        layer's bitrate with its margin: ``LayerSelector.desired_bitrate``)."""
        return self.probes.request(now, self.usable, want)

    def _combine(self, base: int) -> int:
        self.bitrate = int(min(max(min(base, self.loss.bitrate), self.minimum), self.maximum))
        return self.bitrate
