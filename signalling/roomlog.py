"""The durable per-room message log behind ``send``/``sent``/``ack``/``message``.

Each room's messages form a log. `RoomLog.append` assigns the next ``seq`` of the room
(1, 2, 3... with no gaps) only once the message is durably stored, and stores a
``msg_id`` once per room: sending it again answers the first ``seq`` with
``duplicate=True``. Members keep a cursor (the highest ``seq`` they acked, cumulative
and never moving back); retention (`RetentionPolicy`) drops old messages by age and by
size per room, but never one that a member with a cursor has not acked, unless
``drop_unacked`` is set. A ``msg_id`` is remembered as long as its message is retained.

Backends: `SqliteRoomLog` (one node, a SQLite file in WAL mode, group commit) and
`MemoryRoomLog` (tests, embedded use; not durable). A cluster backend (Redis Streams)
subclasses `RoomLog` and implements its underscore methods; `RoomLog` validates every
argument first, so all backends refuse the same input with the same errors.

    RoomLogError
    ├── InvalidMessage (also ValueError)   an argument the log refuses (bad_request)
    ├── AckBeyondEnd (also ValueError)     an ack past the room's last seq (bad_request)
    └── signalling.durable.DurableDbError   the store failed or was closed (unavailable)
"""

from __future__ import annotations

import abc
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from signalling.codec import wire_ts

from signalling.durable import DurableDb, DurableDbError, StoreClosed, StoreUnavailable

__all__ = [
    "RoomLog",
    "SqliteRoomLog",
    "MemoryRoomLog",
    "StoredMessage",
    "AppendResult",
    "RetentionPolicy",
    "RoomLogError",
    "InvalidMessage",
    "AckBeyondEnd",
    "DurableDbError",
    "StoreClosed",
    "StoreUnavailable",
    "MAX_NAME_CHARS",
    "MAX_READ",
]

MAX_NAME_CHARS = 256
"""Longest room, msg_id, sender, topic and member accepted by the log."""
MAX_READ = 10_000
"""Most messages one `RoomLog.read` returns."""


class RoomLogError(Exception):
    code = "internal"


class InvalidMessage(RoomLogError, ValueError):
    code = "bad_request"


class AckBeyondEnd(RoomLogError, ValueError):
    code = "bad_request"


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
    """``seq`` of the stored message; ``duplicate`` when ``msg_id`` was already stored
    (``message`` is then the first one, and nothing new was written)."""

    seq: int
    duplicate: bool
    message: StoredMessage


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """What `RoomLog.prune` drops, per room. ``None`` disables a limit.

    ``max_age_s``: messages older than this (by ``ts``); ``max_messages``: keep at most
    this many; ``max_bytes``: keep at most this many payload bytes (msgpack-encoded).
    Whatever the limits say, a message some member with a cursor has not acked is kept,
    unless ``drop_unacked`` is true.
    """

    max_age_s: float | None = 7 * 24 * 3600.0
    max_messages: int | None = 100_000
    max_bytes: int | None = 256 * 2**20
    drop_unacked: bool = False

    def __post_init__(self) -> None:
        for name in ("max_age_s", "max_messages", "max_bytes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value >= 0):
                raise ValueError(f"RetentionPolicy.{name} must be >= 0 or None, not {value!r}")


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


class RoomLog(abc.ABC):
    """The interface every backend implements; all methods are coroutines."""

    def __init__(self, retention: RetentionPolicy | None = None) -> None:
        self.retention = retention if retention is not None else RetentionPolicy()

    async def append(
        self, room: str, msg_id: str, sender: str, topic: str, payload: Any, ts: float
    ) -> AppendResult:
        """Store a message; return once it is durable (or already stored)."""
        _check_name("room", room)
        _check_name("msg_id", msg_id)
        _check_name("sender", sender, empty=True)
        _check_name("topic", topic, empty=True)
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
            raise InvalidMessage(f"ts must be a finite number, not {ts!r}")
        return await self._append(room, msg_id, sender, topic, pack_payload(payload), float(ts))

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

    async def add_member(self, room: str, member: str) -> int:
        """Give ``member`` a cursor at the room's ``last_seq`` unless it has one; return it.

        Call it when a member joins: from then on, retention keeps what it has not acked.
        """
        return await self._add_member(_check_name("room", room), _check_name("member", member))

    async def ack(self, room: str, member: str, seq: int) -> int:
        """Cumulative ack: ``member`` has every message up to ``seq``. Return the cursor.

        The cursor never moves back; an ack past ``last_seq`` raises `AckBeyondEnd`.
        """
        _check_name("room", room)
        _check_name("member", member)
        return await self._ack(room, member, _check_seq("seq", seq))

    async def cursor(self, room: str, member: str) -> int | None:
        """The member's cursor, or ``None`` when it has none."""
        return await self._cursor(_check_name("room", room), _check_name("member", member))

    async def members(self, room: str) -> dict[str, int]:
        """Every member with a cursor in the room, with its cursor."""
        return await self._members(_check_name("room", room))

    async def remove_member(self, room: str, member: str) -> None:
        """Drop the member's cursor: it no longer holds messages back from retention."""
        await self._remove_member(_check_name("room", room), _check_name("member", member))

    async def prune(self, now: float) -> dict[str, int]:
        """Apply the retention policy at time ``now``; return deleted counts by room."""
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
            raise InvalidMessage(f"now must be a finite number, not {now!r}")
        return await self._prune(float(now))

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending writes and release the store. Idempotent."""

    @abc.abstractmethod
    async def _append(self, room, msg_id, sender, topic, packed: bytes, ts: float) -> AppendResult: ...

    @abc.abstractmethod
    async def _read(self, room, after_seq, limit) -> list[StoredMessage]: ...

    @abc.abstractmethod
    async def _last_seq(self, room) -> int: ...

    @abc.abstractmethod
    async def _first_seq(self, room) -> int: ...

    @abc.abstractmethod
    async def _add_member(self, room, member) -> int: ...

    @abc.abstractmethod
    async def _ack(self, room, member, seq) -> int: ...

    @abc.abstractmethod
    async def _cursor(self, room, member) -> int | None: ...

    @abc.abstractmethod
    async def _members(self, room) -> dict[str, int]: ...

    @abc.abstractmethod
    async def _remove_member(self, room, member) -> None: ...

    @abc.abstractmethod
    async def _prune(self, now: float) -> dict[str, int]: ...


def _ack_beyond(room: str, seq: int, last: int) -> AckBeyondEnd:
    return AckBeyondEnd(f"ack {seq} is past the last message of room {room!r} ({last})")


# -- memory -----------------------------------------------------------------------------


@dataclass(slots=True)
class _MemoryRoom:
    last_seq: int = 0
    # messages[i].seq == last_seq - len(messages) + 1 + i: retained seqs are contiguous.
    messages: list[tuple[StoredMessage, int]] = field(default_factory=list)
    by_msg_id: dict[str, StoredMessage] = field(default_factory=dict)
    cursors: dict[str, int] = field(default_factory=dict)


class MemoryRoomLog(RoomLog):
    """The log in this process's memory: same behaviour, nothing survives a restart."""

    def __init__(self, retention: RetentionPolicy | None = None) -> None:
        super().__init__(retention)
        self._rooms: dict[str, _MemoryRoom] = {}
        self._closed = False

    def _room(self, room: str, create: bool = False) -> _MemoryRoom:
        if self._closed:
            raise StoreClosed("room log is closed")
        state = self._rooms.get(room)
        if state is None:
            state = _MemoryRoom()
            if create:
                self._rooms[room] = state
        return state

    async def _append(self, room, msg_id, sender, topic, packed, ts):
        state = self._room(room, create=True)
        first = state.by_msg_id.get(msg_id)
        if first is not None:
            return AppendResult(first.seq, True, first)
        state.last_seq += 1
        message = StoredMessage(room, state.last_seq, msg_id, sender, topic, unpack_payload(packed), ts)
        state.messages.append((message, len(packed)))
        state.by_msg_id[msg_id] = message
        return AppendResult(message.seq, False, message)

    async def _read(self, room, after_seq, limit):
        state = self._room(room)
        first = state.last_seq - len(state.messages) + 1
        start = max(after_seq + 1 - first, 0)
        return [message for message, _ in state.messages[start : start + limit]]

    async def _last_seq(self, room):
        return self._room(room).last_seq

    async def _first_seq(self, room):
        state = self._room(room)
        return state.last_seq - len(state.messages) + 1

    async def _add_member(self, room, member):
        state = self._room(room, create=True)
        return state.cursors.setdefault(member, state.last_seq)

    async def _ack(self, room, member, seq):
        state = self._room(room)
        if seq > state.last_seq:
            raise _ack_beyond(room, seq, state.last_seq)
        self._rooms.setdefault(room, state)
        cursor = max(state.cursors.get(member, 0), seq)
        state.cursors[member] = cursor
        return cursor

    async def _cursor(self, room, member):
        return self._room(room).cursors.get(member)

    async def _members(self, room):
        return dict(self._room(room).cursors)

    async def _remove_member(self, room, member):
        self._room(room).cursors.pop(member, None)

    async def _prune(self, now):
        deleted = {}
        policy = self.retention
        for name, state in self._rooms.items():
            messages = state.messages
            if not messages:
                continue
            first = messages[0][0].seq
            floor = state.last_seq
            if state.cursors and not policy.drop_unacked:
                floor = min(state.cursors.values())
            drop = 0  # how many of the oldest messages go
            if policy.max_age_s is not None:
                cutoff = now - policy.max_age_s
                while drop < len(messages) and messages[drop][0].ts < cutoff:
                    drop += 1
            if policy.max_messages is not None:
                drop = max(drop, len(messages) - policy.max_messages)
            if policy.max_bytes is not None:
                kept, keep = 0, 0
                for message, size in reversed(messages):
                    if kept + size > policy.max_bytes:
                        break
                    kept += size
                    keep += 1
                drop = max(drop, len(messages) - keep)
            drop = min(drop, max(floor - first + 1, 0))
            if drop:
                for message, _ in messages[:drop]:
                    del state.by_msg_id[message.msg_id]
                del messages[:drop]
                deleted[name] = drop
        return deleted

    async def close(self):
        self._closed = True


# -- SQLite -----------------------------------------------------------------------------

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS rooms (
        room TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS messages (
        room TEXT NOT NULL,
        seq INTEGER NOT NULL,
        msg_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        ts REAL NOT NULL,
        PRIMARY KEY (room, seq)
    ) WITHOUT ROWID""",
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_by_msg_id ON messages (room, msg_id)",
    """CREATE TABLE IF NOT EXISTS cursors (
        room TEXT NOT NULL,
        member TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (room, member)
    ) WITHOUT ROWID""",
)

_COLUMNS = "room, seq, msg_id, sender, topic, payload, ts"


def _message(row: tuple) -> StoredMessage:
    room, seq, msg_id, sender, topic, payload, ts = row
    return StoredMessage(room, seq, msg_id, sender, topic, unpack_payload(payload), ts)


def _last_seq_of(conn: sqlite3.Connection, room: str) -> int:
    row = conn.execute("SELECT last_seq FROM rooms WHERE room = ?", (room,)).fetchone()
    return row[0] if row else 0


class SqliteRoomLog(RoomLog):
    """The log in a SQLite file (WAL, ``synchronous=FULL``, group commit).

    ``append`` returns after the transaction holding the message committed; appends
    queued meanwhile share the next transaction, so many concurrent senders cost one
    fsync per batch, not one each.
    """

    def __init__(self, path: str | Path, retention: RetentionPolicy | None = None) -> None:
        super().__init__(retention)
        self._db = DurableDb(path, _SCHEMA, version=1, name="roomlog")

    @property
    def path(self) -> Path:
        return self._db.path

    async def _append(self, room, msg_id, sender, topic, packed, ts):
        def job(conn: sqlite3.Connection) -> AppendResult:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room = ? AND msg_id = ?", (room, msg_id)
            ).fetchone()
            if row is not None:
                first = _message(row)
                return AppendResult(first.seq, True, first)
            seq = _last_seq_of(conn, room) + 1
            conn.execute(
                f"INSERT INTO messages ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (room, seq, msg_id, sender, topic, packed, ts),
            )
            conn.execute(
                "INSERT INTO rooms (room, last_seq) VALUES (?, ?)"
                " ON CONFLICT (room) DO UPDATE SET last_seq = excluded.last_seq",
                (room, seq),
            )
            message = StoredMessage(room, seq, msg_id, sender, topic, unpack_payload(packed), ts)
            return AppendResult(seq, False, message)

        return await self._db.write(job)

    async def _read(self, room, after_seq, limit):
        def job(conn):
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?",
                (room, after_seq, limit),
            ).fetchall()
            return [_message(row) for row in rows]

        return await self._db.read(job)

    async def _last_seq(self, room):
        return await self._db.read(lambda conn: _last_seq_of(conn, room))

    async def _first_seq(self, room):
        def job(conn):
            row = conn.execute("SELECT MIN(seq) FROM messages WHERE room = ?", (room,)).fetchone()
            return row[0] if row[0] is not None else _last_seq_of(conn, room) + 1

        return await self._db.read(job)

    async def _add_member(self, room, member):
        def job(conn):
            conn.execute(
                "INSERT INTO cursors (room, member, seq) VALUES (?, ?, ?)"
                " ON CONFLICT (room, member) DO NOTHING",
                (room, member, _last_seq_of(conn, room)),
            )
            return _cursor_of(conn, room, member)

        return await self._db.write(job)

    async def _ack(self, room, member, seq):
        def job(conn):
            last = _last_seq_of(conn, room)
            if seq > last:
                raise _ack_beyond(room, seq, last)
            conn.execute(
                "INSERT INTO cursors (room, member, seq) VALUES (?, ?, ?)"
                " ON CONFLICT (room, member) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                (room, member, seq),
            )
            return _cursor_of(conn, room, member)

        return await self._db.write(job)

    async def _cursor(self, room, member):
        return await self._db.read(lambda conn: _cursor_of(conn, room, member))

    async def _members(self, room):
        def job(conn):
            rows = conn.execute("SELECT member, seq FROM cursors WHERE room = ?", (room,))
            return dict(rows.fetchall())

        return await self._db.read(job)

    async def _remove_member(self, room, member):
        def job(conn):
            conn.execute("DELETE FROM cursors WHERE room = ? AND member = ?", (room, member))

        await self._db.write(job)

    async def _prune(self, now):
        policy = self.retention

        def job(conn):
            deleted = {}
            rooms = conn.execute("SELECT room, last_seq FROM rooms").fetchall()
            for room, last in rooms:
                floor = last
                if not policy.drop_unacked:
                    row = conn.execute("SELECT MIN(seq) FROM cursors WHERE room = ?", (room,))
                    lowest = row.fetchone()[0]
                    floor = last if lowest is None else lowest
                cut = 0  # every seq <= cut goes
                if policy.max_age_s is not None:
                    # The old prefix: up to the first message young enough to keep.
                    row = conn.execute(
                        "SELECT MIN(seq) FROM messages WHERE room = ? AND ts >= ?",
                        (room, now - policy.max_age_s),
                    ).fetchone()
                    cut = max(cut, last if row[0] is None else row[0] - 1)
                if policy.max_messages is not None:
                    cut = max(cut, last - policy.max_messages)
                if policy.max_bytes is not None:
                    row = conn.execute(
                        "SELECT MAX(seq) FROM (SELECT seq, SUM(length(payload))"
                        " OVER (ORDER BY seq DESC) AS total FROM messages WHERE room = ?)"
                        " WHERE total > ?",
                        (room, policy.max_bytes),
                    ).fetchone()
                    cut = max(cut, row[0] or 0)
                cut = min(cut, floor)
                if cut > 0:
                    count = conn.execute(
                        "DELETE FROM messages WHERE room = ? AND seq <= ?", (room, cut)
                    ).rowcount
                    if count:
                        deleted[room] = count
            return deleted

        return await self._db.write(job)

    async def close(self):
        await self._db.close()


def _cursor_of(conn: sqlite3.Connection, room: str, member: str) -> int | None:
    row = conn.execute(
        "SELECT seq FROM cursors WHERE room = ? AND member = ?", (room, member)
    ).fetchone()
    return row[0] if row else None
