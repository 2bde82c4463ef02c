"""Loss-based bitrate control: the classic rule of libwebrtc's loss-based path (and
RFC 8698's family): above 10 % loss back off by half the loss, between 2 % and 10 %
hold, below 2 % grow 8 % (a second). Sans-IO.

:class:`LossBasedEstimate` applies it once per report interval (the REMB the SFU sends a
publisher, from its own reception statistics). :class:`LossBasedControl` applies it in
time to transport-cc or receiver-report loss, as a ceiling over the delay-based
estimate: it starts with no opinion (the maximum) and only bites under heavy loss, so
random loss on a link (Wi-Fi) does not hold the estimate below the link's rate.
"""

from __future__ import annotations

__all__ = ["LossBasedControl", "LossBasedEstimate", "next_bitrate"]

HIGH_LOSS = 0.10
LOW_LOSS = 0.02
GROWTH = 1.08


def next_bitrate(bitrate: float, loss: float, elapsed: float = 1.0) -> float:
    """The rule for one step of ``elapsed`` seconds (growth scales with it, at most one
    second's worth; a cut is a cut): ``loss`` is a fraction, 0..1."""
    if loss > HIGH_LOSS:
        return bitrate * (1 - loss / 2)
    if loss < LOW_LOSS:
        return bitrate * GROWTH ** min(max(elapsed, 0.0), 1.0)
    return bitrate


class LossBasedEstimate:
    """The bitrate the SFU allows a publisher's video, sent as REMB: aiortc negotiates
    no transport-cc, and a publisher without feedback never ramps up (Chromium starts
    near 300 kbit/s). ``update`` once per report interval."""

    def __init__(self, maximum: int = 2_500_000, minimum: int = 100_000, start: int = 1_000_000) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.bitrate = max(minimum, min(maximum, start))

    def update(self, fraction_lost: int) -> int:
        """Feed one report interval's loss (RFC 3550 fraction, 0..255); the new bitrate."""
        self.bitrate = int(next_bitrate(self.bitrate, fraction_lost / 256))
        self.bitrate = max(self.minimum, min(self.maximum, self.bitrate))
        return self.bitrate


class LossBasedControl:
    """A loss-based ceiling fed in time: ``on_loss(now, lost, expected, current)`` with
    the packets lost and expected since the last call and the combined estimate now
    in force (bit/s); returns the ceiling. Loss is judged over at least ``min_packets``
    packets and ``period`` seconds (fewer say nothing: 3 of 20 packets lost is 15 %,
    and a link with 5 % random loss shows that in one feedback out of 13), and cuts are
    at most one per ``decrease_interval`` s."""

    def __init__(self, minimum: int, maximum: int, min_packets: int = 20, period: float = 0.5,
                 decrease_interval: float = 0.3) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.min_packets = min_packets
        self.period = period
        self.decrease_interval = decrease_interval
        self.bitrate = float(maximum)
        self.loss = 0.0
        self._lost = 0
        self._expected = 0
        self._last_update: float | None = None
        self._last_decrease: float | None = None
        self._since: float | None = None  # start of the period being counted

    def raise_to(self, bitrate: float) -> None:
        """A probe showed ``bitrate`` gets through: loss from before no longer caps below it."""
        self.bitrate = min(max(self.bitrate, bitrate), self.maximum)

    def on_loss(self, now: float, lost: int, expected: int, current: float) -> int:
        self._lost += max(lost, 0)
        self._expected += max(expected, 0)
        if self._since is None:
            self._since = now
        if self._expected < self.min_packets or now - self._since < self.period:
            return int(self.bitrate)
        loss = min(self._lost / self._expected, 1.0)
        self.loss = loss
        self._lost = self._expected = 0
        self._since = now
        elapsed = 0.0 if self._last_update is None else now - self._last_update
        self._last_update = now
        if loss > HIGH_LOSS:
            if self._last_decrease is not None and now - self._last_decrease < self.decrease_interval:
                return int(self.bitrate)
            self._last_decrease = now
            # cut from what is in force, not from a ceiling far above it
            self.bitrate = next_bitrate(min(self.bitrate, current), loss)
        else:
            self.bitrate = next_bitrate(self.bitrate, loss, elapsed)
        self.bitrate = min(max(self.bitrate, self.minimum), self.maximum)
        return int(self.bitrate)
