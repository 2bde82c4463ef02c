"""Time and timers for the media plane, passed in rather than read.

``Producer``, ``Consumer``, ``Participant`` and ``Room`` never call ``time.time``,
``time.monotonic`` or the asyncio loop themselves: they take a :class:`Clock` (what
time it is) and a :class:`Scheduler` (run this later, run this coroutine). The
defaults, :data:`SYSTEM_CLOCK` and :data:`ASYNCIO_SCHEDULER`, are the real ones; tests
pass one :class:`ManualClock`, which is both, and move time with
:meth:`ManualClock.advance` (due callbacks fire, spawned coroutines run) with no loop
and no sleeps.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

__all__ = ["GRID_S", "Clock", "Scheduler", "Cancellable", "SystemClock", "AsyncioScheduler",
           "ManualClock", "ManualTimer", "ManualTask", "SYSTEM_CLOCK", "ASYNCIO_SCHEDULER"]


GRID_S = 0.25
"""The default grid of `Scheduler.call_on_grid` (seconds)."""


def _on_grid(now: float, delay: float, grid: float) -> float:
    if grid <= 0:
        raise ValueError(f"a grid is a positive number of seconds, not {grid}")
    return math.ceil((now + max(0.0, delay)) / grid - 1e-9) * grid


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals, ages)."""

    def wall(self) -> float:
        """Unix time in seconds (abs-send-time stamps, creation dates)."""


class Cancellable(Protocol):
    def cancel(self) -> Any:
        """Stop it if it has not run (or finished) yet; harmless afterwards."""


class Scheduler(Protocol):
    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """Call ``callback()`` once, ``delay`` seconds from now."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> Cancellable:
        """Run ``coro`` in the background (it starts at the next turn, not inside this call)."""

    def call_on_grid(self, delay: float, callback: Callable[[], None],
                     grid: float = GRID_S) -> Cancellable:
        """Call ``callback()`` once, at the first multiple of ``grid`` seconds (on the
        scheduler's own clock) at least ``delay`` seconds from now: periodic work of
        many objects (every participant's bandwidth tick and reports) then falls due
        together and costs one wakeup, not one each."""


class SystemClock:
    """The machine's clocks."""

    monotonic = staticmethod(time.monotonic)
    wall = staticmethod(time.time)


class AsyncioScheduler:
    """Timers and tasks on ``loop``, or on the loop running at the time of each call."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return (self._loop or asyncio.get_running_loop()).call_later(delay, callback)

    def call_on_grid(self, delay: float, callback: Callable[[], None],
                     grid: float = GRID_S) -> asyncio.TimerHandle:
        # the loop's own time: uvloop keeps it in whole milliseconds, so every timer on
        # one grid point has the same deadline and one wakeup runs them all
        loop = self._loop or asyncio.get_running_loop()
        return loop.call_at(_on_grid(loop.time(), delay, grid), callback)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future:
        return asyncio.ensure_future(coro, loop=self._loop)


SYSTEM_CLOCK = SystemClock()
ASYNCIO_SCHEDULER = AsyncioScheduler()


class ManualTimer:
    """A callback of a :class:`ManualClock`, due at ``when``."""

    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualTask:
    """A coroutine spawned on a :class:`ManualClock`: stepped whenever the clock runs,
    until it finishes. An awaited future that is not done yet blocks it (it is polled
    again at the next run), so it may await asyncio events set by the test."""

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self._waiting: Any = None
        self.result: Any = None
        self.exception: BaseException | None = None
        self.finished = False
        self.cancelled = False

    def done(self) -> bool:
        return self.finished

    def cancel(self) -> bool:
        if self.finished:
            return False
        self.cancelled = True
        return True

    def _step(self) -> bool:
        """Run until it blocks or ends; True if it made progress."""
        if self.finished:
            return False
        if self._waiting is not None and not self._waiting.done() and not self.cancelled:
            return False
        progressed = False
        while True:
            self._waiting = None
            try:
                if self.cancelled:
                    self._coro.throw(asyncio.CancelledError())
                    self.cancelled = False  # it swallowed the cancellation and goes on
                yielded = self._coro.send(None)
            except StopIteration as stop:
                self.result, self.finished = stop.value, True
                return True
            except asyncio.CancelledError:
                self.cancelled = self.finished = True
                return True
            except Exception as exc:  # noqa: BLE001 - kept for the test to inspect
                self.exception, self.finished = exc, True
                return True
            progressed = True
            if yielded is not None and not yielded.done():
                self._waiting = yielded
                return progressed


class ManualClock:
    """A :class:`Clock` and :class:`Scheduler` whose time moves only when told.

    ``monotonic()`` starts at ``start``; ``wall()`` is ``wall_offset`` seconds ahead
    of it. :meth:`advance` moves time forward, firing each due callback at its due time
    (in order), and runs the spawned coroutines that can make progress.
    """

    def __init__(self, start: float = 1000.0, wall_offset: float = 1_700_000_000.0) -> None:
        self.now = start
        self.wall_offset = wall_offset
        self._timers: list[tuple[float, int, ManualTimer]] = []
        self._order = itertools.count()
        self.tasks: list[ManualTask] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self.wall_offset

    def call_on_grid(self, delay: float, callback: Callable[[], None],
                     grid: float = GRID_S) -> ManualTimer:
        return self.call_later(_on_grid(self.now, delay, grid) - self.now, callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> ManualTimer:
        timer = ManualTimer(self.now + max(0.0, delay), callback)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> ManualTask:
        task = ManualTask(coro)
        self.tasks.append(task)
        return task

    @property
    def pending(self) -> list[ManualTimer]:
        """The timers not yet fired nor cancelled, soonest first."""
        return [t for _, _, t in sorted(self._timers) if not t.cancelled]

    def run_tasks(self) -> None:
        """Step the spawned coroutines until none can make progress."""
        while any([task._step() for task in self.tasks]):
            pass
        self.tasks = [t for t in self.tasks if not t.finished]

    def advance(self, seconds: float = 0.0) -> None:
        """Move time ``seconds`` forward, firing what falls due on the way."""
        end = self.now + seconds
        self.run_tasks()
        while self._timers and self._timers[0][0] <= end:
            when, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self.now = max(self.now, when)
            timer.callback()
            self.run_tasks()
        self.now = end
