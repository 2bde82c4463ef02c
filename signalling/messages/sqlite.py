"""`SqliteRoomLog`: the log in one SQLite file (`signalling.durable.DurableDb`).

Schema versions: 1 had ``rooms``, ``messages`` and the members' ``cursors``; 2 adds
``follower_cursors``; 3 dedupes ``msg_id`` per sender: the unique index on
``(room, msg_id)`` becomes one on ``(room, sender, msg_id)`` (the old rows satisfy it,
since they were unique per room already); 4 adds ``cursor_touched``, when each member
cursor was last joined with or acked (a cursor without a row counts as touched at the
first prune after the upgrade). Every statement is idempotent, so opening an older file
upgrades it in place and keeps everything in it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from signalling.durable import DurableDb

from .log import AckBeyondEnd, AppendResult, RoomLog, StoredMessage, unpack_payload
from .retention import RetentionPolicy, retention_cut

__all__ = ["SqliteRoomLog", "SCHEMA_VERSION"]

SCHEMA_VERSION = 4

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
    """CREATE TABLE IF NOT EXISTS cursors (
        room TEXT NOT NULL,
        member TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (room, member)
    ) WITHOUT ROWID""",
    # Version 2.
    """CREATE TABLE IF NOT EXISTS follower_cursors (
        room TEXT NOT NULL,
        follower TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (room, follower)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS follower_cursors_by_follower ON follower_cursors (follower)",
    # Version 3: a msg_id is unique per sender in a room (versions 1 and 2: per room).
    "DROP INDEX IF EXISTS messages_by_msg_id",
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_by_sender_msg_id ON messages (room, sender, msg_id)",
    # Version 4: when each member cursor was last touched, so idle ones can expire.
    """CREATE TABLE IF NOT EXISTS cursor_touched (
        room TEXT NOT NULL,
        member TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (room, member)
    ) WITHOUT ROWID""",
)


def _touch(conn: sqlite3.Connection, room: str, member: str, now: float) -> None:
    conn.execute(
        "INSERT INTO cursor_touched (room, member, at) VALUES (?, ?, ?)"
        " ON CONFLICT (room, member) DO UPDATE SET at = excluded.at",
        (room, member, now),
    )


def _expire_idle_members(conn: sqlite3.Connection, idle_since: float, now: float) -> int:
    """Drop the member cursors last touched before ``idle_since``; how many went."""
    conn.execute(  # cursors from before version 4: touched now, at their first prune
        "INSERT INTO cursor_touched (room, member, at) SELECT room, member, ? FROM cursors"
        " WHERE true ON CONFLICT (room, member) DO NOTHING",
        (now,),
    )
    gone = conn.execute(
        "DELETE FROM cursors WHERE (room, member) IN"
        " (SELECT room, member FROM cursor_touched WHERE at < ?)",
        (idle_since,),
    ).rowcount
    conn.execute("DELETE FROM cursor_touched WHERE at < ?", (idle_since,))
    return gone

_COLUMNS = "room, seq, msg_id, sender, topic, payload, ts"


def _message(row: tuple) -> StoredMessage:
    room, seq, msg_id, sender, topic, payload, ts = row
    return StoredMessage(room, seq, msg_id, sender, topic, unpack_payload(payload), ts)


def _last_seq_of(conn: sqlite3.Connection, room: str) -> int:
    row = conn.execute("SELECT last_seq FROM rooms WHERE room = ?", (room,)).fetchone()
    return row[0] if row else 0


@dataclass(frozen=True, slots=True)
class _Cursors:
    """One table of cursors, keyed by (room, ``who``): members' or followers'."""

    table: str
    who: str

    def get(self, conn: sqlite3.Connection, room: str, who: str) -> int | None:
        row = conn.execute(
            f"SELECT seq FROM {self.table} WHERE room = ? AND {self.who} = ?", (room, who)
        ).fetchone()
        return row[0] if row else None

    def start(self, conn: sqlite3.Connection, room: str, who: str) -> int:
        """A cursor at the room's last seq unless there is one; the cursor."""
        conn.execute(
            f"INSERT INTO {self.table} (room, {self.who}, seq) VALUES (?, ?, ?)"
            f" ON CONFLICT (room, {self.who}) DO NOTHING",
            (room, who, _last_seq_of(conn, room)),
        )
        return self.get(conn, room, who)

    def advance(self, conn: sqlite3.Connection, room: str, who: str, seq: int) -> int:
        """A cumulative ack: the cursor moves up to ``seq``, never back."""
        AckBeyondEnd.check(room, seq, _last_seq_of(conn, room))
        conn.execute(
            f"INSERT INTO {self.table} (room, {self.who}, seq) VALUES (?, ?, ?)"
            f" ON CONFLICT (room, {self.who}) DO UPDATE SET seq = MAX(seq, excluded.seq)",
            (room, who, seq),
        )
        return self.get(conn, room, who)

    def remove(self, conn: sqlite3.Connection, room: str, who: str) -> None:
        conn.execute(f"DELETE FROM {self.table} WHERE room = ? AND {self.who} = ?", (room, who))


_MEMBERS = _Cursors("cursors", "member")
_FOLLOWERS = _Cursors("follower_cursors", "follower")


# -- the facts retention_cut asks for --------------------------------------------------


def _lowest_cursor(conn: sqlite3.Connection, room: str) -> int | None:
    return conn.execute(
        "SELECT MIN(seq) FROM (SELECT seq FROM cursors WHERE room = ?1"
        " UNION ALL SELECT seq FROM follower_cursors WHERE room = ?1)",
        (room,),
    ).fetchone()[0]


def _first_young_seq(conn: sqlite3.Connection, room: str, young_since: float) -> int | None:
    return conn.execute(
        "SELECT MIN(seq) FROM messages WHERE room = ? AND ts >= ?", (room, young_since)
    ).fetchone()[0]


def _bytes_cut_seq(conn: sqlite3.Connection, room: str, max_bytes: int) -> int:
    row = conn.execute(
        "SELECT MAX(seq) FROM (SELECT seq, SUM(length(payload))"
        " OVER (ORDER BY seq DESC) AS total FROM messages WHERE room = ?)"
        " WHERE total > ?",
        (room, max_bytes),
    ).fetchone()
    return row[0] or 0


class SqliteRoomLog(RoomLog):
    """The log in a SQLite file (WAL, ``synchronous=FULL``, group commit).

    ``append`` returns after the transaction holding the message committed; appends
    queued meanwhile share the next transaction, so many concurrent senders cost one
    fsync per batch, not one each. The file is private (0600 in a 0700 directory).
    """

    def __init__(self, path: str | Path, retention: RetentionPolicy | None = None) -> None:
        super().__init__(retention)
        self._db = DurableDb(path, _SCHEMA, version=SCHEMA_VERSION, name="roomlog")

    @property
    def path(self) -> Path:
        return self._db.path

    async def _append(self, room, msg_id, sender, topic, packed, ts):
        def job(conn: sqlite3.Connection) -> AppendResult:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room = ? AND sender = ? AND msg_id = ?",
                (room, sender, msg_id),
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

    async def _add_member(self, room, member, now):
        def job(conn):
            cursor = _MEMBERS.start(conn, room, member)
            _touch(conn, room, member, now)
            return cursor

        return await self._db.write(job)

    async def _ack(self, room, member, seq, now):
        def job(conn):
            cursor = _MEMBERS.advance(conn, room, member, seq)
            _touch(conn, room, member, now)
            return cursor

        return await self._db.write(job)

    async def _cursor(self, room, member):
        return await self._db.read(lambda conn: _MEMBERS.get(conn, room, member))

    async def _members(self, room):
        def job(conn):
            rows = conn.execute("SELECT member, seq FROM cursors WHERE room = ?", (room,))
            return dict(rows.fetchall())

        return await self._db.read(job)

    async def _remove_member(self, room, member):
        def job(conn):
            _MEMBERS.remove(conn, room, member)
            conn.execute("DELETE FROM cursor_touched WHERE room = ? AND member = ?", (room, member))

        await self._db.write(job)

    async def _follow(self, room, follower):
        return await self._db.write(lambda conn: _FOLLOWERS.start(conn, room, follower))

    async def _follower_ack(self, room, follower, seq):
        return await self._db.write(lambda conn: _FOLLOWERS.advance(conn, room, follower, seq))

    async def _follower_cursors(self, follower):
        def job(conn):
            rows = conn.execute(
                "SELECT f.room, f.seq, COALESCE(r.last_seq, 0) FROM follower_cursors AS f"
                " LEFT JOIN rooms AS r ON r.room = f.room WHERE f.follower = ?",
                (follower,),
            )
            return {room: (seq, last) for room, seq, last in rows}

        return await self._db.read(job)

    async def _unfollow(self, room, follower):
        await self._db.write(lambda conn: _FOLLOWERS.remove(conn, room, follower))

    async def _prune(self, now):
        policy = self.retention
        young_since = policy.young_since(now)
        idle_since = policy.idle_since(now)

        def job(conn):
            if idle_since is not None:
                _expire_idle_members(conn, idle_since, now)
            deleted = {}
            for room, last in conn.execute("SELECT room, last_seq FROM rooms").fetchall():
                cut = retention_cut(
                    policy,
                    last_seq=last,
                    lowest_cursor=_lowest_cursor(conn, room),
                    first_young_seq=(
                        None if young_since is None else _first_young_seq(conn, room, young_since)
                    ),
                    bytes_cut_seq=(
                        0 if policy.max_bytes is None else _bytes_cut_seq(conn, room, policy.max_bytes)
                    ),
                )
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
