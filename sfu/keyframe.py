"""Keyframe requests towards a publisher, throttled.

Subscribers that start, lose packets or ask with PLI/FIR all want a keyframe; the
publisher is asked at most once per ``interval`` seconds per producer (a burst of
subscribers joining costs one keyframe, not one each). A request that arrives inside
the interval is remembered and sent when the interval ends, so nobody waits forever.
Sans-IO: time is passed in.
"""

from __future__ import annotations

__all__ = ["KeyframeRequestThrottle"]


class KeyframeRequestThrottle:
    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._last_sent = float("-inf")
        self.pending = False
        self.sent = 0
        self.suppressed = 0

    def request(self, now: float) -> bool:
        """A keyframe is wanted: True if a request should be sent now."""
        if now - self._last_sent >= self.interval:
            self._last_sent = now
            self.pending = False
            self.sent += 1
            return True
        self.pending = True
        self.suppressed += 1
        return False

    def due(self, now: float) -> float | None:
        """Seconds until a pending request may be sent (None if none is pending)."""
        if not self.pending:
            return None
        return max(0.0, self._last_sent + self.interval - now)

    def satisfied(self) -> None:
        """A keyframe arrived: a pending request is no longer needed."""
        self.pending = False
