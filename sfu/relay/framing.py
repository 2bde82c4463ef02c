"""What travels on a trunk, as bytes: sans-IO (no sockets, no clock, no QUIC).

**Datagrams** (QUIC DATAGRAM frames, RFC 9221) carry media, as the RTP-over-QUIC draft
maps it: a QUIC variable-length integer (RFC 9000 §16), the *wire flow id*, then one
whole RTP packet or one (compound) RTCP packet, unencrypted beyond QUIC's own
protection. A subscription is a *flow*, an even number chosen by the node that
subscribes; its RTP travels as ``flow`` and its RTCP (both ways: sender reports down,
NACKs up) as ``flow + 1``. Bit 1 of a flow names the side that chose it, as QUIC does for
stream ids: 0 for the trunk's client, 1 for its server, so both nodes can subscribe on
one trunk without their flows ever colliding.

**Control** is one bidirectional QUIC stream (the client's first, id 0) of frames: a
QUIC varint length, then a msgpack map with ``type`` and the fields of one message:

    hello        {node_id, version}          both ways, first; nothing else before it
    subscribe    {flow, room, track_id}      subscriber -> origin
    subscribed   {flow, track: TrackInfo}    origin -> subscriber: the flow is live
    error        {flow?, code, message}      origin -> subscriber (or a refused hello)
    unsubscribe  {flow}                      subscriber -> origin
    keyframe     {flow}                      subscriber -> origin (a PLI or FIR upstream)
    closed       {flow, reason}              origin -> subscriber: the producer went away

NACKs go upstream as RTCP datagrams on ``flow + 1`` rather than control messages: they
are RTCP already, and a lost one is better dropped than delivered late.

Anything parsed here may come from a hostile peer: every parser returns a message or
raises `MalformedFrame` (a ``ValueError``), never anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack

from .errors import FrameTooLarge, MalformedFrame

__all__ = [
    "VERSION", "MAX_CONTROL_FRAME", "MAX_FLOW",
    "encode_varint", "decode_varint", "Datagram", "datagram_prefix", "split_datagram",
    "TrackInfo", "ControlMessage", "Hello", "Subscribe", "Subscribed", "ErrorMessage",
    "Unsubscribe", "Keyframe", "FlowClosed", "encode_control", "ControlReader",
]

VERSION = 1
"""The trunk protocol's version, sent in ``hello``; a node refuses another version."""
MAX_CONTROL_FRAME = 64 * 1024
"""Largest control frame body a node accepts (a longer length prefix: `FrameTooLarge`)."""
MAX_FLOW = (1 << 62) - 2
"""Largest flow id (the varint's range, even)."""
_MAX_NAME = 256     # node, room, track and participant ids, codec names
_MAX_TEXT = 1024    # error messages and reasons

# -- variable-length integers (RFC 9000 §16) -----------------------------------------------


def encode_varint(value: int) -> bytes:
    """``value`` (0 to 2**62 - 1) as a QUIC variable-length integer."""
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 0x4000_0000:
        return (value | 0x8000_0000).to_bytes(4, "big")
    if value < 0x4000_0000_0000_0000:
        return (value | 0xC000_0000_0000_0000).to_bytes(8, "big")
    raise ValueError(f"{value} does not fit a QUIC varint (0 to 2**62 - 1)")


def decode_varint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """The varint at ``data[pos:]``: ``(value, position after it)``."""
    if pos >= len(data):
        raise MalformedFrame("a varint was expected, the bytes ended")
    first = data[pos]
    size = 1 << (first >> 6)
    end = pos + size
    if end > len(data):
        raise MalformedFrame(f"a {size}-byte varint is cut short")
    if size == 1:
        return first, end
    return int.from_bytes(data[pos:end], "big") & ((1 << (8 * size - 2)) - 1), end


# -- datagrams --------------------------------------------------------------------------


@dataclass(frozen=True)
class Datagram:
    """One datagram: ``packet`` (RTP, or RTCP when ``rtcp``) of the subscription ``flow``."""

    flow: int
    rtcp: bool
    packet: bytes

    def serialize(self) -> bytes:
        return datagram_prefix(self.flow, self.rtcp) + self.packet

    @classmethod
    def parse(cls, data: bytes) -> Datagram:
        wire_flow, pos = split_datagram(data)
        rtcp = bool(wire_flow & 1)
        packet = bytes(data[pos:])
        if len(packet) < (4 if rtcp else 12):
            raise MalformedFrame(f"flow {wire_flow & ~1}: a datagram with a {len(packet)}-byte "
                                 f"{'RTCP' if rtcp else 'RTP'} packet")
        if packet[0] >> 6 != 2:
            raise MalformedFrame(f"flow {wire_flow & ~1}: not RTP version 2")
        return cls(wire_flow & ~1, rtcp, packet)


def datagram_prefix(flow: int, rtcp: bool = False) -> bytes:
    """The bytes before every packet of ``flow`` (computed once per flow: the packet path
    only concatenates)."""
    if flow & 1 or not 0 <= flow <= MAX_FLOW:
        raise ValueError(f"flow ids are even, 0 to {MAX_FLOW}: not {flow}")
    return encode_varint(flow | rtcp)


def split_datagram(data: bytes) -> tuple[int, int]:
    """``(wire flow id, offset of the packet)`` of a datagram (the packet path's parser:
    the packet itself is checked by whoever reads it)."""
    first = data[0] if data else 0
    if first < 0x40 and data:
        return first, 1
    return decode_varint(data)


# -- control messages: field checks -----------------------------------------------------

Check = Callable[[str, Any], Any]


def _name(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
        raise MalformedFrame(f"{where}: a non-empty string of at most {_MAX_NAME} characters "
                             f"was expected")
    return value


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise MalformedFrame(f"{where}: a string of at most {_MAX_TEXT} characters was expected")
    return value


def _int_in(low: int, high: int) -> Check:
    def check(where: str, value: Any) -> int:
        if type(value) is not int or not low <= value <= high:
            raise MalformedFrame(f"{where}: an integer from {low} to {high} was expected")
        return value
    return check


def _flow(where: str, value: Any) -> int:
    value = _int_in(0, MAX_FLOW)(where, value)
    if value & 1:
        raise MalformedFrame(f"{where}: flow ids are even")
    return value


def _optional(check: Check) -> Check:
    def optional(where: str, value: Any) -> Any:
        return None if value is None else check(where, value)
    return optional


def _one_of(*choices: str) -> Check:
    def check(where: str, value: Any) -> str:
        if value not in choices:
            raise MalformedFrame(f"{where}: one of {', '.join(choices)} was expected")
        return value
    return check


def _ext_ids(where: str, value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or len(value) > 16:
        raise MalformedFrame(f"{where}: a map of at most 16 header-extension URIs was expected")
    return {_name(f"{where} key", k): _int_in(1, 255)(f"{where}[{k!r}]", v)
            for k, v in value.items()}


def _parameters(where: str, value: Any) -> dict[str, str | int]:
    if not isinstance(value, dict) or len(value) > 32:
        raise MalformedFrame(f"{where}: a map of at most 32 codec parameters was expected")
    out: dict[str, str | int] = {}
    for k, v in value.items():
        if type(v) is int:
            out[_name(f"{where} key", k)] = v
        else:
            out[_name(f"{where} key", k)] = _text(f"{where}[{k!r}]", v)
    return out


def _fields(where: str, data: Any, checks: dict[str, tuple[Check, bool]]) -> dict[str, Any]:
    """The fields of ``data`` (a map) by ``checks``: name -> (check, required). Unknown
    fields are ignored (a newer node may add some)."""
    if not isinstance(data, dict):
        raise MalformedFrame(f"{where}: a map was expected")
    out = {}
    for name, (check, required) in checks.items():
        if name in data:
            out[name] = check(f"{where}.{name}", data[name])
        elif required:
            raise MalformedFrame(f"{where}: {name} is missing")
    return out


# -- control messages ---------------------------------------------------------------------


@dataclass(frozen=True)
class TrackInfo:
    """A producer as the origin node describes it in ``subscribed``: what the far node
    needs to build an ordinary `sfu.Producer` of the same track."""

    track_id: str
    participant_id: str
    kind: str
    codec: str
    clock_rate: int
    payload_type: int
    channels: int | None = None
    ext_ids: dict[str, int] = field(default_factory=dict)
    parameters: dict[str, str | int] = field(default_factory=dict)
    source: str = "camera"
    name: str | None = None
    mid: str = "0"

    _CHECKS: ClassVar[dict[str, tuple[Check, bool]]] = {
        "track_id": (_name, True), "participant_id": (_name, True),
        "kind": (_one_of("audio", "video"), True), "codec": (_name, True),
        "clock_rate": (_int_in(1, 10_000_000), True), "payload_type": (_int_in(0, 127), True),
        "channels": (_optional(_int_in(1, 255)), False), "ext_ids": (_ext_ids, False),
        "parameters": (_parameters, False), "source": (_name, False),
        "name": (_optional(_text), False), "mid": (_name, False),
    }

    def to_map(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._CHECKS}

    @classmethod
    def from_map(cls, data: Any, where: str = "track") -> TrackInfo:
        return cls(**_fields(where, data, cls._CHECKS))


class ControlMessage:
    """A control message: ``serialize()`` gives the msgpack body of its frame,
    ``ControlMessage.parse(body)`` the message of a body (whichever its ``type``)."""

    TYPE: ClassVar[str]
    _CHECKS: ClassVar[dict[str, tuple[Check, bool]]]
    _BY_TYPE: ClassVar[dict[str, type[ControlMessage]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ControlMessage._BY_TYPE[cls.TYPE] = cls

    def to_map(self) -> dict[str, Any]:
        return {"type": self.TYPE, **{name: getattr(self, name) for name in self._CHECKS}}

    @classmethod
    def from_map(cls, data: dict[str, Any]) -> ControlMessage:
        return cls(**_fields(cls.TYPE, data, cls._CHECKS))

    def serialize(self) -> bytes:
        return msgpack.packb(self.to_map(), use_bin_type=True)

    @staticmethod
    def parse(body: bytes) -> ControlMessage:
        try:
            data = msgpack.unpackb(body, raw=False, strict_map_key=True)
        except Exception as exc:  # noqa: BLE001 - msgpack raises a handful of unrelated types
            raise MalformedFrame(f"a control frame that is not msgpack: {exc}") from None
        if not isinstance(data, dict):
            raise MalformedFrame("a control frame that is not a map")
        kind = data.get("type")
        message_class = ControlMessage._BY_TYPE.get(kind) if isinstance(kind, str) else None
        if message_class is None:
            raise MalformedFrame(f"a control frame of unknown type {str(kind)[:40]!r}")
        return message_class.from_map(data)


@dataclass(frozen=True)
class Hello(ControlMessage):
    TYPE = "hello"
    _CHECKS = {"node_id": (_name, True), "version": (_int_in(0, 1 << 31), True)}
    node_id: str
    version: int = VERSION


@dataclass(frozen=True)
class Subscribe(ControlMessage):
    TYPE = "subscribe"
    _CHECKS = {"flow": (_flow, True), "room": (_name, True), "track_id": (_name, True)}
    flow: int
    room: str
    track_id: str


@dataclass(frozen=True)
class Subscribed(ControlMessage):
    TYPE = "subscribed"
    _CHECKS = {"flow": (_flow, True),
               "track": (lambda where, value: TrackInfo.from_map(value, where), True)}
    flow: int
    track: TrackInfo

    def to_map(self) -> dict[str, Any]:
        return {"type": self.TYPE, "flow": self.flow, "track": self.track.to_map()}


@dataclass(frozen=True)
class ErrorMessage(ControlMessage):
    """``error``: a subscribe refused (``flow``), or a hello refused (no flow)."""

    TYPE = "error"
    _CHECKS = {"flow": (_optional(_flow), False), "code": (_name, True),
               "message": (_text, False)}
    flow: int | None
    code: str
    message: str = ""


@dataclass(frozen=True)
class Unsubscribe(ControlMessage):
    TYPE = "unsubscribe"
    _CHECKS = {"flow": (_flow, True)}
    flow: int


@dataclass(frozen=True)
class Keyframe(ControlMessage):
    TYPE = "keyframe"
    _CHECKS = {"flow": (_flow, True)}
    flow: int


@dataclass(frozen=True)
class FlowClosed(ControlMessage):
    TYPE = "closed"
    _CHECKS = {"flow": (_flow, True), "reason": (_text, False)}
    flow: int
    reason: str = ""


def encode_control(message: ControlMessage) -> bytes:
    """``message`` as a frame of the control stream: varint length, then the body."""
    body = message.serialize()
    if len(body) > MAX_CONTROL_FRAME:
        raise ValueError(f"a {message.TYPE} frame of {len(body)} bytes (at most "
                         f"{MAX_CONTROL_FRAME})")
    return encode_varint(len(body)) + body


class ControlReader:
    """The receiving half of the control stream: ``feed(bytes)`` returns the messages
    completed so far. A `MalformedFrame` leaves the reader unusable (the stream is out of
    step: the trunk must close)."""

    def __init__(self, max_frame: int = MAX_CONTROL_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[ControlMessage]:
        self._buffer += data
        messages = []
        while self._buffer:
            try:
                length, start = decode_varint(self._buffer)
            except MalformedFrame:
                break  # the length itself is not all here yet
            if length > self.max_frame:
                raise FrameTooLarge(f"a control frame of {length} bytes (at most {self.max_frame})")
            if len(self._buffer) < start + length:
                break
            body = bytes(self._buffer[start:start + length])
            del self._buffer[:start + length]
            messages.append(ControlMessage.parse(body))
        return messages
