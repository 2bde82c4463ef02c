"""How late the node's event loop runs, for admission: a node that is behind refuses
new joins (``unavailable``) instead of taking them and losing the sessions it has.

A timer asks to run every ``interval`` seconds and notes how much later than asked it
did; :attr:`LoopLag.current_ms` is the largest lateness of the last ``window``
seconds. Everything the loop does (packets, joins, a garbage collection, a slow
callback) shows in it. A loop that far behind serves everyone late: better to say
``unavailable`` to one more participant (``docs/benchmarks.md``, run F, a join storm).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

__all__ = ["LoopLag"]


class LoopLag:
    """The event loop's recent lateness (see the module docstring)."""

    def __init__(self, interval: float = 0.1, window: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if interval <= 0 or window < interval:
            raise ValueError("LoopLag needs interval > 0 and window >= interval")
        self.interval = interval
        self.window = window
        self._clock = clock
        self._samples: collections.deque[tuple[float, float]] = collections.deque()  # (at, late s)
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self.worst_ms = 0.0  # since start

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Begin measuring on ``loop`` (the running one by default); idempotent."""
        if self._handle is not None:
            return
        loop = loop or asyncio.get_running_loop()
        self._due = self._clock() + self.interval
        self._handle = loop.call_later(self.interval, self._tick, loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = self._clock()
        late = max(0.0, now - self._due)
        self._samples.append((now, late))
        self.worst_ms = max(self.worst_ms, late * 1000.0)
        while self._samples and self._samples[0][0] < now - self.window:
            self._samples.popleft()
        self._due = now + self.interval
        self._handle = loop.call_later(self.interval, self._tick, loop)

    @property
    def current_ms(self) -> float:
        """The largest lateness (ms) of the last ``window`` seconds, counting the tick
        that is overdue right now (a loop stuck in one callback has no new sample)."""
        now = self._clock()
        overdue = max(0.0, now - self._due) if self._handle is not None else 0.0
        recent = max((late for at, late in self._samples if at >= now - self.window), default=0.0)
        return 1000.0 * max(recent, overdue)
