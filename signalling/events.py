"""Room and shipment events: small frozen dataclasses, one per kind.

Everything that happens in a room or to a shipment is one `Event` subclass below. Each
knows its wire form (`Event.to_wire`, the server event of ``PROTOCOL.md``), who hears it
on the wire (`Event.audience`): the room's members, the ``events.subscribe`` watchers
of its room or shipment, both, or nobody (an event for plugins only), and the lane its
queued subscribers see it in (`Event.lane`: its room, else its shipment). They are
dispatched through one registry, `signalling.bus.EventBus`.

    Event
    ├── RoomCreated          plugins only
    ├── RoomClosed           watchers, plugins (members were told as they were taken out)
    │   └── RoomCreateFailed plugins only: what a room.create check claimed is released
    ├── ParticipantJoined    members (but the joiner), watchers, plugins
    ├── ParticipantLeft
    ├── TrackPublished       members (but the publisher), watchers, plugins
    ├── TrackUnpublished
    ├── ActiveSpeakers       members only (frequent: not for watchers or webhooks)
    ├── TrackPaused          one subscriber (sent by the node to it), plugins
    ├── TrackResumed
    ├── MessageStored        watchers, plugins (members get it from the message delivery)
    ├── ShipmentStatus       the bound room's members, watchers, plugins
    ├── Alert
    ├── RecordingStarted
    ├── RecordingStopped
    └── AuditCheckpoint
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
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
    "ActiveSpeakers",
    "TrackPaused",
    "TrackResumed",
    "MessageStored",
    "ShipmentStatus",
    "Alert",
    "RecordingStarted",
    "RecordingStopped",
    "AuditCheckpoint",
    "event_from_wire",
]


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
    identity: str | None = None
    """Who it was (an addition to the contract's ``participant_left``)."""

    @property
    def origin(self) -> str | None:
        return self.participant_id

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"participant_id": self.participant_id}
        if self.identity is not None:
            out["identity"] = self.identity
        return out


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
class ActiveSpeakers(Event):
    """Who speaks in the room, the first speaker first (``active_speakers``, an addition):
    sent at most twice a second, when the list or its order changes, and every ~2 s
    while someone speaks; an empty list when the room fell silent. For the members
    (a console's speaker ring and level bars), not for watchers or webhooks."""

    type: ClassVar[str] = "active_speakers"
    audience: ClassVar[Audience] = Audience.MEMBERS
    room: str
    speakers: tuple[tuple[str, float], ...]
    """``(participant_id, level)`` pairs; ``level`` linear 0..1."""

    def fields(self) -> dict[str, Any]:
        return {"speakers": [{"participant_id": participant_id, "level": level}
                             for participant_id, level in self.speakers]}


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackPaused(Event):
    """A subscriber's video track stopped for bandwidth (``track_paused {track_id,
    reason}``, an addition; ``reason`` is ``"bandwidth"``: even the track's lowest
    simulcast layer does not fit the subscriber's estimate; its audio goes on). Only
    that subscriber hears it: the node sends it to its connection itself, the bus
    takes it to plugins only (``audience`` NOBODY)."""

    type: ClassVar[str] = "track_paused"
    audience: ClassVar[Audience] = Audience.NOBODY
    room: str
    participant_id: str
    """The subscriber whose video paused (not on the wire: it is the recipient)."""
    track_id: str
    reason: str

    def fields(self) -> dict[str, Any]:
        return {"track_id": self.track_id, "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackResumed(Event):
    """The video a ``track_paused`` stopped flows again by itself (``track_resumed
    {track_id}``, an addition); to that subscriber only, as `TrackPaused`."""

    type: ClassVar[str] = "track_resumed"
    audience: ClassVar[Audience] = Audience.NOBODY
    room: str
    participant_id: str
    track_id: str

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
