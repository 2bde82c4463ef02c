"""What every client-to-server message of ``PROTOCOL.md`` may carry, as data.

Each message type has a :class:`MessageSpec`: its fields (name, value type, required or
not), the grants that allow it (any one of them suffices; none listed = any token),
whether the connection must have joined a room first, and the name of the success reply
(``None`` for ``trickle`` and ``ack``, which are answered only on error).

:func:`validate` checks one decoded message against its spec and returns a
:class:`Request`, or raises :class:`~signalling.errors.BadRequest` with a message that
names the field. Unknown types are refused; unknown fields are kept (clients newer than
the server may send them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .codec import kind_name, valid_id
from .errors import BadRequest

__all__ = [
    "GRANT_NAMES",
    "ValueType",
    "Scalar",
    "OneOf",
    "ListOf",
    "Record",
    "Field",
    "MessageSpec",
    "SPECS",
    "Request",
    "validate",
]

GRANT_NAMES = ("publish", "subscribe", "message", "record", "admin")


# ---- value types -----------------------------------------------------------------------


class ValueType:
    """A value type: ``description`` names it for humans; :meth:`error` returns why
    ``value`` does not fit, or ``None``."""

    description: str

    def error(self, value: Any, path: str) -> str | None:
        raise NotImplementedError


@dataclass(frozen=True)
class Scalar(ValueType):
    """A value of one of ``pytypes`` (bools never pass as numbers), optionally limited to
    ``choices``, a ``min_len`` for strings and a ``minimum`` for numbers."""

    description: str
    pytypes: tuple[type, ...]
    choices: tuple[Any, ...] = ()
    min_len: int = 0
    minimum: float | None = None

    def error(self, value: Any, path: str) -> str | None:
        if not isinstance(value, self.pytypes) or (
            # bool is an int subclass, yet true is no number
            isinstance(value, bool) and bool not in self.pytypes and _is_numeric(self.pytypes)
        ):
            return f"field '{path}' must be {self.description}, got {kind_name(value)}"
        if self.choices and value not in self.choices:
            options = ", ".join(repr(c) for c in self.choices)
            return f"field '{path}' must be one of {options}"
        if self.min_len and len(value) < self.min_len:
            return f"field '{path}' must not be empty"
        if self.minimum is not None and value < self.minimum:
            return f"field '{path}' must be at least {self.minimum:g}"
        return None


def _is_numeric(pytypes: tuple[type, ...]) -> bool:
    return int in pytypes or float in pytypes


@dataclass(frozen=True)
class OneOf(ValueType):
    """Any of several types (e.g. a string or a map)."""

    options: tuple[ValueType, ...]

    @property
    def description(self) -> str:  # type: ignore[override]
        return " or ".join(o.description for o in self.options)

    def error(self, value: Any, path: str) -> str | None:
        if any(o.error(value, path) is None for o in self.options):
            return None
        return f"field '{path}' must be {self.description}, got {kind_name(value)}"


@dataclass(frozen=True)
class ListOf(ValueType):
    item: ValueType

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"an array of {self.item.description}"

    def error(self, value: Any, path: str) -> str | None:
        if not isinstance(value, list):
            return f"field '{path}' must be {self.description}, got {kind_name(value)}"
        for i, item in enumerate(value):
            problem = self.item.error(item, f"{path}[{i}]")
            if problem:
                return problem
        return None


@dataclass(frozen=True)
class Record(ValueType):
    """A map with known fields (others allowed)."""

    fields: tuple[Field, ...]
    description = "a map"

    def error(self, value: Any, path: str) -> str | None:
        if not isinstance(value, dict):
            return f"field '{path}' must be a map, got {kind_name(value)}"
        return _fields_error(self.fields, value, f"{path}.")


@dataclass(frozen=True)
class Field:
    name: str
    type: ValueType
    required: bool = True
    nullable: bool = False


def _fields_error(fields: tuple[Field, ...], value: Mapping[str, Any], prefix: str) -> str | None:
    for f in fields:
        if f.name not in value:
            if f.required:
                return f"missing field '{prefix}{f.name}'"
            continue
        item = value[f.name]
        if item is None and (f.nullable or not f.required):
            # An optional field sent as null means "absent", as JSON clients often do.
            continue
        problem = f.type.error(item, prefix + f.name)
        if problem:
            return problem
    return None


STR = Scalar("a string", (str,))
NAME = Scalar("a non-empty string", (str,), min_len=1)
INT = Scalar("an integer", (int,))
SEQ = Scalar("a non-negative integer", (int,), minimum=0)
BOOL = Scalar("a boolean", (bool,))
NUMBER = Scalar("a number", (int, float))
DURATION = Scalar("a number of seconds >= 0", (int, float), minimum=0)
POSITIVE_INT = Scalar("a positive integer", (int,), minimum=1)
POSITIVE = Scalar("a positive number", (int, float), minimum=1e-9)
MAP = Scalar("a map", (dict,))
ANY = Scalar("any value", (object,))
NAMES = ListOf(NAME)


def _enum(*choices: str) -> Scalar:
    return Scalar("a string", (str,), choices=choices)


def _req(name: str, vtype: ValueType) -> Field:
    return Field(name, vtype)


def _opt(name: str, vtype: ValueType) -> Field:
    return Field(name, vtype, required=False)


PC = _enum("pub", "sub")
TRACK_OFFER = Record(
    (
        _req("mid", STR),
        _req("kind", _enum("audio", "video")),
        _req("source", _enum("camera", "microphone", "screen", "playback")),
        _opt("name", STR),
    )
)
CANDIDATE = Record(
    (
        _req("candidate", STR),
        Field("sdpMid", STR, required=False, nullable=True),
        Field("sdpMLineIndex", SEQ, required=False, nullable=True),
    )
)
RESUME = Record((_req("session_id", NAME), _req("last_seq", SEQ)))


# ---- message specs ---------------------------------------------------------------------


@dataclass(frozen=True)
class MessageSpec:
    type: str
    fields: tuple[Field, ...] = ()
    #: Grants of which the token needs one; empty: any authenticated connection.
    grants: frozenset[str] = frozenset()
    #: The connection must have joined a room (``Connection.room`` set by the app).
    in_room: bool = False
    #: The success reply's type; ``None``: no reply except an error.
    reply: str | None = "ok"


def _spec(type_, fields=(), grants=(), in_room=False, reply="ok") -> MessageSpec:
    return MessageSpec(type_, tuple(fields), frozenset(grants), in_room, reply)


ADMIN = ("admin",)
RECORD = ("record", "admin")

#: Every client-to-server message type, by name.
SPECS: Mapping[str, MessageSpec] = MappingProxyType(
    {
        s.type: s
        for s in (
            # session
            _spec("hello", [_req("token", NAME), _opt("resume", RESUME), _opt("region", NAME)],
                  reply="welcome"),
            _spec("join", [_req("room", NAME), _opt("name", STR), _opt("metadata", MAP), _opt("subscribe", BOOL)],
                  reply="joined"),
            _spec("leave", reply="left"),
            _spec("ping", reply="pong"),
            # media
            _spec(
                "publish",
                [_req("sdp", NAME), _req("tracks", ListOf(TRACK_OFFER))],
                ("publish",),
                True,
                "published",
            ),
            _spec("unpublish", [_req("track_ids", NAMES)], ("publish",), True, "unpublished"),
            _spec("subscribe", [_req("track_ids", NAMES), _opt("max_height", POSITIVE_INT),
                                _opt("max_fps", POSITIVE)], ("subscribe",), True, "subscribed"),
            _spec("answer", [_req("pc", _enum("sub")), _req("sdp", NAME)], ("subscribe",), True),
            _spec("unsubscribe", [_req("track_ids", NAMES)], ("subscribe",), True, "unsubscribed"),
            _spec("trickle", [_req("pc", PC), _req("candidate", CANDIDATE)], (), True, None),
            # room messages
            _spec(
                "send",
                [_req("topic", STR), _req("payload", ANY), _req("msg_id", NAME)],
                ("message",),
                True,
                "sent",
            ),
            _spec("ack", [_req("seq", SEQ)], (), True, None),
            # administration
            _spec(
                "room.create",
                [_req("room", NAME), _opt("shipment_id", NAME), _opt("metadata", MAP), _opt("record", BOOL),
                 _opt("empty_timeout", DURATION)],
                ADMIN,
                reply="room",
            ),
            _spec("room.list", grants=ADMIN, reply="rooms"),
            _spec("room.close", [_req("room", NAME)], ADMIN),
            _spec("participant.remove", [_req("room", NAME), _req("participant_id", NAME)], ADMIN),
            _spec(
                "shipment.upsert",
                [_req("shipment_id", NAME)]
                + [_opt(n, STR) for n in ("tracking_no", "carrier", "origin", "destination", "stage")]
                + [_opt("eta", OneOf((STR, NUMBER)))],
                ADMIN,
                reply="shipment",
            ),
            _spec(
                "shipment.event",
                [
                    _req("shipment_id", NAME),
                    _req("status", NAME),
                    _opt("detail", OneOf((STR, MAP))),
                    _opt("severity", _enum("info", "warning", "critical")),
                ],
                ADMIN,
            ),
            _spec("shipment.get", [_req("shipment_id", NAME)], ADMIN, reply="shipment"),
            _spec("recording.start", [_req("room", NAME)], RECORD, reply="recording"),
            _spec("recording.stop", [_req("room", NAME)], RECORD, reply="recording"),
            _spec(
                "recording.list",
                [_opt("room", NAME), _opt("shipment_id", NAME)],
                RECORD,
                reply="recordings",
            ),
            _spec("recording.playback", [_req("recording_id", NAME), _req("room", NAME)], RECORD),
            _spec("recording.media", [_req("recording_id", NAME)], RECORD, reply="media_link"),
            _spec("recording.delete", [_req("recording_id", NAME)], ADMIN),
            _spec(
                "inspection.verdict",
                [
                    _req("room", NAME),
                    _req("verdict", _enum("resellable", "not_resellable", "partial")),
                    _opt("refund", OneOf((NUMBER, BOOL))),
                    _opt("note", STR),
                ],
                ADMIN,
            ),
            _spec("audit.get", [_req("session_id", NAME)], ADMIN, reply="audit"),
            _spec("assistant.captions", [_req("room", NAME), _req("participant_id", NAME),
                                         _req("on", BOOL), _opt("lang", _enum("zh", "en"))], RECORD),
            _spec("assistant.triage", [_req("room", NAME), _opt("shipment_id", NAME), _opt("track_id", NAME),
                                       _opt("participant_id", NAME), _opt("photo", STR)], RECORD),
            _spec("events.subscribe", [_opt("rooms", NAMES), _opt("shipment_ids", NAMES)], ADMIN),
        )
    }
)


# ---- requests --------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A validated client request: its ``type``, its ``id`` (``None`` if the client sent
    none) and every other field of the message, read-only."""

    type: str
    id: int | str | None
    fields: Mapping[str, Any] = field(hash=False)

    @property
    def spec(self) -> MessageSpec:
        return SPECS[self.type]

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        """A field's value, ``default`` if it is absent or null."""
        value = self.fields.get(name)
        return default if value is None else value


def validate(msg: Mapping[str, Any]) -> Request:
    """Check a decoded message against its spec; raise ``BadRequest`` naming the field."""
    request_id = msg.get("id")
    if request_id is not None and not valid_id(request_id):
        raise BadRequest(f"field 'id' must be an integer or a string, got {kind_name(request_id)}")
    msg_type = msg.get("type")
    if not isinstance(msg_type, str):
        raise BadRequest("field 'type' must be a string", request_id=request_id)
    spec = SPECS.get(msg_type)
    if spec is None:
        raise BadRequest(f"unknown message type {msg_type[:64]!r}", request_id=request_id)
    problem = _fields_error(spec.fields, msg, "")
    if problem:
        raise BadRequest(f"{msg_type}: {problem}", request_id=request_id)
    fields = {k: v for k, v in msg.items() if k != "type" and k != "id"}
    return Request(msg_type, request_id, MappingProxyType(fields))
