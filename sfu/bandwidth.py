"""LossBasedEstimate: the bitrate the SFU allows a publisher's video, sent as REMB.

aiortc negotiates no transport-cc, and a publisher without feedback never ramps up
(Chromium starts near 300 kbit/s). This is the classic loss-based controller (the
one in RFC 8698's family and in libwebrtc's loss-based path): back off by half the
loss when more than 10% is lost, hold between 2% and 10%, and grow 8% a second
below 2%, between a floor and the configured maximum. Sans-IO.
"""

from __future__ import annotations

__all__ = ["LossBasedEstimate"]


class LossBasedEstimate:
    def __init__(self, maximum: int = 2_500_000, minimum: int = 100_000, start: int = 1_000_000) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.bitrate = max(minimum, min(maximum, start))

    def update(self, fraction_lost: int) -> int:
        """Feed one report interval's loss (RFC 3550 fraction, 0..255); the new bitrate."""
        loss = fraction_lost / 256
        if loss > 0.10:
            self.bitrate = int(self.bitrate * (1 - loss / 2))
        elif loss < 0.02:
            self.bitrate = int(self.bitrate * 1.08)
        self.bitrate = max(self.minimum, min(self.maximum, self.bitrate))
        return self.bitrate
