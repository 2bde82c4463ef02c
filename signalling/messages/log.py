"""The `RoomLog` interface: a durable, gap-free, deduplicated log per room, with cursors.

Each room's messages form a log. `RoomLog.append` assigns the next ``seq`` of the room
(1, 2, 3... with no gaps) only once the message is durably stored, and stores a
``msg_id`` once per room and sender: the same sender sending it again is answered the
first ``seq`` with ``duplicate=True``; another sender's message with the same ``msg_id``
is its own message. A ``msg_id`` is remembered as long as its message is retained.

Two kinds of cursor (the highest ``seq`` acked, cumulative, never moving back) are kept
apart: a *member* cursor per room member, whose acks decide ``sent`` and delivery, and a
*follower* cursor for a slow consumer (a webhook) that follows a room's log on its own
and so never delays a member. Retention (`RetentionPolicy`) drops old messages by age
and size, but never one that a member or a follower has not acked, unless
``drop_unacked`` is set.

`RoomLog` validates every argument in its public methods, once, then calls the
backend's underscore method of the same name; a backend only stores and looks up. So
every backend refuses the same input with the same errors.

    SignallingError (signalling.errors: the package's whole tree)
    ├── RoomLogError                           (internal)
    │   ├── InvalidMessage (also ValueError)   an argument the log refuses (bad_request)
    │   └── AckBeyondEnd (also ValueError)     an ack past the room's last seq (bad_request)
    └── DurableDbError                         the store failed or was closed (unavailable);
        ├── StoreUnavailable                   from signalling.durable, so not a RoomLogError,
        └── StoreClosed                        raised by every backend alike

Each class carries its wire error code (``PROTOCOL.md``) as ``code``.
"""

from __future__ import annotations

import abc
import math
import time
from dataclasses import dataclass
from typing import Any

import msgpack

from ..codec import wire_ts
from ..errors import FixedCodeError
from ..durable import DurableDbError, StoreClosed, StoreUnavailable

from .retention import RetentionPolicy

__all__ = [
    "RoomLog",
    "StoredMessage",
    "AppendResult",
    "RoomLogError",
    "InvalidMessage",
    "AckBeyondEnd",
    "DurableDbError",
    "StoreClosed",
    "StoreUnavailable",
    "MAX_NAME_CHARS",
    "MAX_READ",
    "pack_payload",
    "unpack_payload",
]

MAX_NAME_CHARS = 256
"""Longest room, msg_id, sender, topic, member and follower accepted by the log."""
MAX_READ = 10_000
"""Most messages one `RoomLog.read` returns."""


class RoomLogError(FixedCodeError):
    code = "internal"


class InvalidMessage(RoomLogError, ValueError):
    code = "bad_request"


class AckBeyondEnd(RoomLogError, ValueError):
    code = "bad_request"

    @classmethod
    def check(cls, room: str, seq: int, last_seq: int) -> None:
        """Raise it when ``seq`` is past ``last_seq``: backends call this atomically."""
        if seq > last_seq:
            raise cls(f"ack {seq} is past the last message of room {room!r} ({last_seq})")


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message of a room's log. ``ts`` is the Unix time (seconds) it was sent."""

    room: str
    seq: int
    msg_id: str
    sender: str
    topic: str
    payload: Any
    ts: float

    def to_event(self) -> dict:
        """The ``message`` event of ``PROTOCOL.md`` for this message."""
        return {
            "type": "message",
            "room": self.room,
            "seq": self.seq,
            "msg_id": self.msg_id,
            "from": self.sender,
            "topic": self.topic,
            "payload": self.payload,
            "ts": wire_ts(self.ts),
        }


@dataclass(frozen=True, slots=True)
class AppendResult:
    """``seq`` of the stored message; ``duplicate`` when the sender had stored ``msg_id``
    in the room already (``message`` is then the first one, and nothing new was written)."""

    seq: int
    duplicate: bool
    message: StoredMessage


def pack_payload(payload: Any) -> bytes:
    """The payload as stored; `InvalidMessage` if it is not msgpack/JSON-able."""
    try:
        return msgpack.packb(payload, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidMessage(f"payload cannot be stored: {exc}") from None


def unpack_payload(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _check_name(what: str, value: Any, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidMessage(f"{what} must be a string, not {type(value).__name__}")
    if not value and not empty:
        raise InvalidMessage(f"{what} must not be empty")
    if len(value) > MAX_NAME_CHARS:
        raise InvalidMessage(f"{what} is longer than {MAX_NAME_CHARS} characters")
    return value


def _check_seq(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidMessage(f"{what} must be an integer >= 0, not {value!r}")
    return value


def _check_time(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidMessage(f"{what} must be a finite number, not {value!r}")
    return float(value)


def _touched(now: Any) -> float:
    return time.time() if now is None else _check_time("now", now)


class RoomLog(abc.ABC):
    """The interface every backend implements; all methods are coroutines."""

    def __init__(self, retention: RetentionPolicy | None = None) -> None:
        self.retention = retention if retention is not None else RetentionPolicy()

    async def append(
        self, room: str, msg_id: str, sender: str, topic: str, payload: Any, ts: float
    ) -> AppendResult:
        """Store a message; return once it is durable (or already stored: the same
        ``msg_id`` from the same ``sender`` in ``room``)."""
        _check_name("room", room)
        _check_name("msg_id", msg_id)
        _check_name("sender", sender, empty=True)
        _check_name("topic", topic, empty=True)
        ts = _check_time("ts", ts)
        return await self._append(room, msg_id, sender, topic, pack_payload(payload), ts)

    async def read(self, room: str, after_seq: int = 0, limit: int = 1000) -> list[StoredMessage]:
        """Retained messages with ``seq > after_seq``, in order, at most ``limit``."""
        _check_name("room", room)
        _check_seq("after_seq", after_seq)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_READ:
            raise InvalidMessage(f"limit must be an integer from 1 to {MAX_READ}")
        return await self._read(room, after_seq, limit)

    async def last_seq(self, room: str) -> int:
        """The seq of the room's latest message; 0 when it never had one."""
        return await self._last_seq(_check_name("room", room))

    async def first_seq(self, room: str) -> int:
        """The seq of the oldest retained message; ``last_seq + 1`` when none is.

        A reader resuming from ``after_seq < first_seq - 1`` has lost messages to
        retention.
        """
        return await self._first_seq(_check_name("room", room))

    # -- member cursors ---------------------------------------------------------------

    async def add_member(self, room: str, member: str, now: float | None = None) -> int:
        """Give ``member`` a cursor at the room's ``last_seq`` unless it has one; return it.

        Call it when a member joins: from then on, retention keeps what it has not acked.
        ``now`` (Unix seconds, default the clock) marks the cursor as touched, for
        `RetentionPolicy.member_idle_s`.
        """
        return await self._add_member(_check_name("room", room), _check_name("member", member),
                                      _touched(now))

    async def ack(self, room: str, member: str, seq: int, now: float | None = None) -> int:
        """Cumulative ack: ``member`` has every message up to ``seq``. Return the cursor.

        The cursor never moves back; an ack past ``last_seq`` raises `AckBeyondEnd`.
        ``now`` marks it as touched, as in `add_member`.
        """
        _check_name("room", room)
        _check_name("member", member)
        return await self._ack(room, member, _check_seq("seq", seq), _touched(now))

    async def cursor(self, room: str, member: str) -> int | None:
        """The member's cursor, or ``None`` when it has none."""
        return await self._cursor(_check_name("room", room), _check_name("member", member))

    async def members(self, room: str) -> dict[str, int]:
        """Every member with a cursor in the room, with its cursor."""
        return await self._members(_check_name("room", room))

    async def remove_member(self, room: str, member: str) -> None:
        """Drop the member's cursor: it no longer holds messages back from retention."""
        await self._remove_member(_check_name("room", room), _check_name("member", member))

    # -- follower cursors -------------------------------------------------------------

    async def follow(self, room: str, follower: str) -> int:
        """Give ``follower`` a cursor at the room's ``last_seq`` unless it has one; return it.

        A follower (a webhook, an exporter) reads the room's log at its own pace from its
        own cursor. Its cursor is not a member's: it never delays ``sent`` or delivery,
        yet retention keeps what it has not acked.
        """
        return await self._follow(_check_name("room", room), _check_name("follower", follower))

    async def follower_ack(self, room: str, follower: str, seq: int) -> int:
        """Cumulative ack of a follower, like `ack`; return its cursor.

        The cursor never moves back; an ack past ``last_seq`` raises `AckBeyondEnd`. As
        with `ack`, a follower without a cursor gets one.
        """
        _check_name("room", room)
        _check_name("follower", follower)
        return await self._follower_ack(room, follower, _check_seq("seq", seq))

    async def follower_cursors(self, follower: str) -> dict[str, tuple[int, int]]:
        """Every room where ``follower`` has a cursor: ``{room: (cursor, last_seq)}``.

        A follower starting again reads each room from its cursor up to ``last_seq``.
        """
        return await self._follower_cursors(_check_name("follower", follower))

    async def unfollow(self, room: str, follower: str) -> None:
        """Drop the follower's cursor: it no longer holds messages back from retention."""
        await self._unfollow(_check_name("room", room), _check_name("follower", follower))

    # -- retention --------------------------------------------------------------------

    async def prune(self, now: float) -> dict[str, int]:
        """Apply the retention policy at time ``now``; return deleted counts by room.

        First the member cursors idle for longer than ``member_idle_s`` go, then the
        messages that `retention_cut` says."""
        return await self._prune(_check_time("now", now))

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending writes and release the store. Idempotent."""

    # -- what a backend implements: arguments are already checked ----------------------

    @abc.abstractmethod
    async def _append(self, room, msg_id, sender, topic, packed: bytes, ts: float) -> AppendResult: ...

    @abc.abstractmethod
    async def _read(self, room, after_seq, limit) -> list[StoredMessage]: ...

    @abc.abstractmethod
    async def _last_seq(self, room) -> int: ...

    @abc.abstractmethod
    async def _first_seq(self, room) -> int: ...

    @abc.abstractmethod
    async def _add_member(self, room, member, now: float) -> int: ...

    @abc.abstractmethod
    async def _ack(self, room, member, seq, now: float) -> int: ...

    @abc.abstractmethod
    async def _cursor(self, room, member) -> int | None: ...

    @abc.abstractmethod
    async def _members(self, room) -> dict[str, int]: ...

    @abc.abstractmethod
    async def _remove_member(self, room, member) -> None: ...

    @abc.abstractmethod
    async def _follow(self, room, follower) -> int: ...

    @abc.abstractmethod
    async def _follower_ack(self, room, follower, seq) -> int: ...

    @abc.abstractmethod
    async def _follower_cursors(self, follower) -> dict[str, tuple[int, int]]: ...

    @abc.abstractmethod
    async def _unfollow(self, room, follower) -> None: ...

    @abc.abstractmethod
    async def _prune(self, now: float) -> dict[str, int]:
        """Delete, in each room, every seq <= `retention_cut` of its facts."""
