"""Room and shipment events: small frozen dataclasses, dispatched through one registry.

Everything that happens in a room or to a shipment is one `Event` subclass below. Each
knows its wire form (`Event.to_wire`, the server event of ``PROTOCOL.md``) and who
hears it on the wire (`Event.audience`): the room's members, the ``events.subscribe``
watchers of its room or shipment, both, or nobody (an event for plugins only).

`EventBus` is the one registry. Subscribers name the event types they want (a base
class catches its subclasses, `Event` catches everything):

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
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .codec import wire_ts
from .messages.log import StoredMessage

__all__ = [
    "Audience",
    "Event",
    "RoomCreated",
    "RoomClosed",
    "RoomCreateFailed",
    "ParticipantJoined",
    "ParticipantLeft",
    "TrackPublished",
    "TrackUnpublished",
    "MessageStored",
    "ShipmentStatus",
    "Alert",
    "RecordingStarted",
    "RecordingStopped",
    "AuditCheckpoint",
    "EventBus",
    "Subscriber",
    "event_from_wire",
]

log = logging.getLogger(__name__)


class Audience(enum.Flag):
    """Who hears an event on the wire (plugins hear every event they subscribe to)."""

    NOBODY = 0
    MEMBERS = enum.auto()
    WATCHERS = enum.auto()
    ALL = MEMBERS | WATCHERS


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event. ``room`` and ``shipment_id`` say where it happened."""

    type: ClassVar[str] = ""
    """The wire ``type``; empty for an event that never goes on the wire."""
    audience: ClassVar[Audience] = Audience.ALL

    room: str | None = None
    shipment_id: str | None = None

    @property
    def origin(self) -> str | None:
        """The participant whose action this is: members hear it, that one does not."""
        return None

    def fields(self) -> dict[str, Any]:
        """The event's own wire fields (``type`` aside)."""
        return {}

    def to_wire(self) -> dict[str, Any]:
        """The server event of ``PROTOCOL.md``."""
        return {"type": self.type, **self.fields()}

    @property
    def lane(self) -> str:
        """The queue this event's subscribers see it in: events of one lane in order."""
        if self.room is not None:
            return "room:" + self.room
        if self.shipment_id is not None:
            return "shipment:" + self.shipment_id
        return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomCreated(Event):
    """A room opened (``room.create`` or a first ``join``); for plugins only."""

    audience: ClassVar[Audience] = Audience.NOBODY
    room: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomClosed(Event):
    """A room closed. Its members were told first, as they were taken out of it (before
    their peers closed), so the bus sends it to watchers and plugins only."""

    type: ClassVar[str] = "room_closed"
    audience: ClassVar[Audience] = Audience.WATCHERS
    room: str
    reason: str

    def fields(self) -> dict[str, Any]:
        return {"room": self.room, "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomCreateFailed(RoomClosed):
    """``room.create`` was refused after some plugins' checks passed: what they claimed
    (a shipment's binding) is released as for a closed room. For plugins only."""

    audience: ClassVar[Audience] = Audience.NOBODY
    reason: str = "create_failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantJoined(Event):
    type: ClassVar[str] = "participant_joined"
    room: str
    participant: Mapping[str, Any]
    """As ``participant_joined.participant``: participant_id, identity, name, ..."""

    @property
    def origin(self) -> str | None:
        return self.participant.get("participant_id")

    def fields(self) -> dict[str, Any]:
        return {"participant": dict(self.participant)}


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantLeft(Event):
    type: ClassVar[str] = "participant_left"
    room: str
    participant_id: str

    @property
    def origin(self) -> str | None:
        return self.participant_id

    def fields(self) -> dict[str, Any]:
        return {"participant_id": self.participant_id}


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackPublished(Event):
    type: ClassVar[str] = "track_published"
    room: str
    track: Mapping[str, Any]
    """As ``track_published.track``: track_id, participant_id, kind, source, ..."""

    @property
    def origin(self) -> str | None:
        return self.track.get("participant_id")

    def fields(self) -> dict[str, Any]:
        return {"track": dict(self.track)}


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackUnpublished(Event):
    type: ClassVar[str] = "track_unpublished"
    room: str
    track_id: str
    participant_id: str | None = None

    @property
    def origin(self) -> str | None:
        return self.participant_id

    def fields(self) -> dict[str, Any]:
        return {"track_id": self.track_id}


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageStored(Event):
    """A room message was durably stored. Members get it from the message delivery
    (in ``seq`` order, with replay), so the bus sends it to watchers only."""

    type: ClassVar[str] = "message"
    audience: ClassVar[Audience] = Audience.WATCHERS
    room: str
    message: StoredMessage

    def to_wire(self) -> dict[str, Any]:
        return self.message.to_event()


@dataclass(frozen=True, slots=True, kw_only=True)
class ShipmentStatus(Event):
    """A shipment's status changed; ``room`` is its bound room, if one is open."""

    type: ClassVar[str] = "shipment_status"
    shipment_id: str
    status: str
    detail: Any = None
    ts: float = 0.0
    """Unix seconds (milliseconds on the wire)."""

    def fields(self) -> dict[str, Any]:
        return {"shipment_id": self.shipment_id, "status": self.status, "detail": self.detail,
                "ts": wire_ts(self.ts)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert(Event):
    type: ClassVar[str] = "alert"
    severity: str
    text: str
    ts: float = 0.0

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "text": self.text, "ts": wire_ts(self.ts)}
        if self.shipment_id is not None:
            out["shipment_id"] = self.shipment_id
        if self.room is not None:
            out["room"] = self.room
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingStarted(Event):
    type: ClassVar[str] = "recording_started"
    room: str
    recording_id: str

    def fields(self) -> dict[str, Any]:
        return {"recording_id": self.recording_id}


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingStopped(Event):
    type: ClassVar[str] = "recording_stopped"
    room: str
    recording_id: str

    def fields(self) -> dict[str, Any]:
        return {"recording_id": self.recording_id}


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditCheckpoint(Event):
    type: ClassVar[str] = "audit_checkpoint"
    session_id: str
    size: int
    root: str
    signature: str

    def fields(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "size": self.size, "root": self.root,
                "signature": self.signature}


_BY_WIRE_TYPE: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (RoomClosed, ParticipantJoined, ParticipantLeft, TrackPublished, TrackUnpublished,
                ShipmentStatus, Alert, RecordingStarted, RecordingStopped, AuditCheckpoint)
}


def event_from_wire(msg: Mapping[str, Any], room: str | None = None,
                    shipment_id: str | None = None) -> Event:
    """The typed event of a wire event map (``ts`` in milliseconds); `ValueError` for a
    ``type`` that is not a room or shipment event, or missing fields."""
    cls = _BY_WIRE_TYPE.get(msg.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"not a room or shipment event: {msg.get('type')!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in msg.items() if k in names}
    if "ts" in values and isinstance(values["ts"], (int, float)):
        values["ts"] = values["ts"] / 1000.0
    values.setdefault("room", room)
    if "shipment_id" in names:
        values.setdefault("shipment_id", shipment_id)
    try:
        return cls(**values)
    except TypeError as exc:
        raise ValueError(f"{msg.get('type')}: {exc}") from None


# -- the registry -------------------------------------------------------------------------

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
