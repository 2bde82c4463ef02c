"""The one event registry of a node: typed events to their subscribers.

Subscribers name the `signalling.events` types they want (a base class catches its
subclasses, `Event` catches everything):

    bus.subscribe(RoomClosed, on_room_closed, name="shipments")           # queued
    bus.subscribe(Event, deliver_to_watchers, inline=True)                 # at once
    done = bus.publish(RoomClosed(room="dock-7", reason="closed"))

Inline subscribers run inside `EventBus.publish`, in subscription order, before it
returns: that is how the wire fan-out keeps events in the order they happened. Queued
subscribers (plugins: webhooks, shipments, the recorder and the audit log to come) run
later, away from the caller, in one lane per room (per shipment for events without a
room): the events of a room reach them in order, one at a time, while a slow or failing
subscriber in one room never delays another room. A queued subscriber that raises or
overruns ``timeout_s`` is logged with its name and skipped. `EventBus.publish` returns a
future that resolves once every queued subscriber saw the event (await it to wait:
a closed room's shipment must be released before the shipment may get a new room).

Before dispatch an event of a room that does not carry its shipment gets it from
``shipment_of`` (the membership's room record), so watchers of a shipment see the
events of its rooms.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .events import Event

__all__ = ["EventBus", "Subscriber", "Handler"]

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[None] | None]


@dataclass(slots=True, eq=False)
class Subscriber:
    """One subscription: ``handler(event)`` for events of ``types``."""

    types: tuple[type[Event], ...]
    handler: Handler
    name: str
    inline: bool
    exclude: tuple[type[Event], ...] = ()

    def wants(self, event_type: type) -> bool:
        return issubclass(event_type, self.types) and not issubclass(event_type, self.exclude)


@dataclass(slots=True, eq=False)
class _Lane:
    queue: deque = field(default_factory=deque)
    task: asyncio.Task | None = None


class EventBus:
    """The one event registry of a node; see the module docstring."""

    def __init__(self, *, shipment_of: Callable[[str], str | None] | None = None,
                 timeout_s: float | None = 10.0, on_error: Callable[[str, Event], None] | None = None
                 ) -> None:
        self.timeout_s = timeout_s
        self._shipment_of = shipment_of
        self._on_error = on_error
        self._subscribers: list[Subscriber] = []
        self._by_type: dict[type, tuple[list[Subscriber], list[Subscriber]]] = {}
        self._lanes: dict[str, _Lane] = {}
        self.errors = 0

    def subscribe(self, types: type[Event] | tuple[type[Event], ...], handler: Handler, *,
                  name: str | None = None, inline: bool = False,
                  exclude: tuple[type[Event], ...] = ()) -> Subscriber:
        """Call ``handler(event)`` for every event of ``types`` (and their subclasses)
        but those of ``exclude``.

        ``inline``: at once, inside `publish` (a plain function; it must not block);
        otherwise queued in the event's lane (a coroutine function or a plain one).
        ``name`` is logged when it fails (default: the handler's qualified name).
        """
        types = types if isinstance(types, tuple) else (types,)
        for t in (*types, *exclude):
            if not (isinstance(t, type) and issubclass(t, Event)):
                raise TypeError(f"{t!r} is not an Event type")
        sub = Subscriber(types, handler, name or getattr(handler, "__qualname__", repr(handler)),
                         inline, tuple(exclude))
        self._subscribers.append(sub)
        self._by_type.clear()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)
            self._by_type.clear()

    def wants(self, event_type: type[Event]) -> bool:
        """Whether anybody subscribed to ``event_type`` (skip building costly events)."""
        inline, queued = self._for(event_type)
        return bool(inline or queued)

    def publish(self, event: Event) -> asyncio.Future:
        """Dispatch ``event``: inline subscribers now, queued ones in its lane. Returns a
        future that resolves when the queued subscribers have seen it (never an error)."""
        if event.shipment_id is None and event.room is not None and self._shipment_of is not None:
            shipment_id = self._shipment_of(event.room)
            if shipment_id is not None:
                event = dataclasses.replace(event, shipment_id=shipment_id)
        inline, queued = self._for(type(event))
        for sub in inline:
            try:
                sub.handler(event)
            except Exception:  # noqa: BLE001 - one subscriber must not break the others
                self._failed(sub, event, None)
        done = asyncio.get_running_loop().create_future()
        if not queued:
            done.set_result(None)
            return done
        lane = self._lanes.get(event.lane)
        if lane is None:
            lane = self._lanes[event.lane] = _Lane()
        lane.queue.append((event, queued, done))
        if lane.task is None:
            lane.task = asyncio.get_running_loop().create_task(self._run_lane(event.lane, lane))
        return done

    async def drain(self) -> None:
        """Wait until every queued event was handled (at stop)."""
        while self._lanes:
            tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def pending(self) -> int:
        """Events queued and not yet handled."""
        return sum(len(lane.queue) for lane in self._lanes.values())

    def _for(self, event_type: type) -> tuple[list[Subscriber], list[Subscriber]]:
        found = self._by_type.get(event_type)
        if found is None:
            matching = [s for s in self._subscribers if s.wants(event_type)]
            found = ([s for s in matching if s.inline], [s for s in matching if not s.inline])
            self._by_type[event_type] = found
        return found

    async def _run_lane(self, key: str, lane: _Lane) -> None:
        # The lane's task exits once its queue is empty: an idle room costs no task.
        try:
            while lane.queue:
                event, subscribers, done = lane.queue.popleft()
                try:
                    for sub in subscribers:
                        await self._call(sub, event)
                finally:
                    if not done.done():
                        done.set_result(None)
        finally:
            lane.task = None
            if not lane.queue:
                self._lanes.pop(key, None)

    async def _call(self, sub: Subscriber, event: Event) -> None:
        try:
            result = sub.handler(event)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                if self.timeout_s is None:
                    await result
                else:
                    async with asyncio.timeout(self.timeout_s):
                        await result
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._failed(sub, event, "timed out")
        except Exception:  # noqa: BLE001 - a subscriber must not break the bus
            self._failed(sub, event, None)

    def _failed(self, sub: Subscriber, event: Event, why: str | None) -> None:
        self.errors += 1
        extra = {"subscriber": sub.name, "event": type(event).__name__, "room": event.room}
        if why:
            log.error("%s %s on %s", sub.name, why, type(event).__name__, extra=extra)
        else:
            log.error("%s failed on %s", sub.name, type(event).__name__, exc_info=True, extra=extra)
        if self._on_error is not None:
            self._on_error(sub.name, event)
