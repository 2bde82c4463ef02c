"""The shipments store: records, status history, room bindings, recordings (SQLite).

Same durability rules as the room log (``signalling.durable``): WAL, ``synchronous=FULL``,
group commit; a write returns once it is on disk. The store checks integrity rules
that need the data (one open room per shipment, one open shipment per room) inside the
write, so concurrent requests cannot both win; field validation is the service's job.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from signalling.durable import DurableDb
from signalling.codec import wire_ts
from signalling.errors import Conflict

__all__ = [
    "ShipmentStore",
    "Shipment",
    "HistoryEntry",
    "RoomBinding",
    "Recording",
    "ShipmentDetails",
    "SHIPMENT_FIELDS",
    "read_details",
]

#: The fields `ShipmentStore.upsert` may change.
SHIPMENT_FIELDS = ("tracking_no", "carrier", "origin", "destination", "stage", "eta")


@dataclass(frozen=True, slots=True)
class Shipment:
    shipment_id: str
    tracking_no: str | None
    carrier: str | None
    origin: str | None
    destination: str | None
    stage: str | None
    eta: str | None
    status: str | None  # the latest status event's, None before the first
    created_at: float
    updated_at: float

    def to_wire(self) -> dict:
        return {
            "shipment_id": self.shipment_id,
            "tracking_no": self.tracking_no,
            "carrier": self.carrier,
            "origin": self.origin,
            "destination": self.destination,
            "stage": self.stage,
            "eta": self.eta,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    shipment_id: str
    seq: int  # 1, 2, 3... per shipment
    status: str
    severity: str
    detail: Any  # a string, a map or None
    ts: float

    def to_wire(self) -> dict:
        return {
            "seq": self.seq,
            "status": self.status,
            "severity": self.severity,
            "detail": self.detail,
            "ts": wire_ts(self.ts),
        }


@dataclass(frozen=True, slots=True)
class RoomBinding:
    shipment_id: str
    room: str
    opened_at: float
    closed_at: float | None
    close_reason: str | None

    @property
    def open(self) -> bool:
        return self.closed_at is None

    def to_wire(self) -> dict:
        return {
            "room": self.room,
            "open": self.open,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "close_reason": self.close_reason,
        }


@dataclass(frozen=True, slots=True)
class Recording:
    recording_id: str
    shipment_id: str
    room: str
    state: str
    started_at: float | None
    stopped_at: float | None

    def to_wire(self) -> dict:
        return {
            "recording_id": self.recording_id,
            "room": self.room,
            "shipment_id": self.shipment_id,
            "state": self.state,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
        }


@dataclass(frozen=True, slots=True)
class ShipmentDetails:
    shipment: Shipment
    history: tuple[HistoryEntry, ...]
    rooms: tuple[RoomBinding, ...]
    recordings: tuple[Recording, ...]

    def to_wire(self) -> dict:
        return {
            **self.shipment.to_wire(),
            "history": [h.to_wire() for h in self.history],
            "rooms": [r.to_wire() for r in self.rooms],
            "recordings": [r.to_wire() for r in self.recordings],
        }


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS shipments (
        shipment_id TEXT PRIMARY KEY,
        tracking_no TEXT, carrier TEXT, origin TEXT, destination TEXT, stage TEXT, eta TEXT,
        status TEXT,
        last_seq INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS history (
        shipment_id TEXT NOT NULL REFERENCES shipments (shipment_id),
        seq INTEGER NOT NULL,
        status TEXT NOT NULL,
        severity TEXT NOT NULL,
        detail BLOB,
        ts REAL NOT NULL,
        PRIMARY KEY (shipment_id, seq)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS room_bindings (
        id INTEGER PRIMARY KEY,
        shipment_id TEXT NOT NULL REFERENCES shipments (shipment_id),
        room TEXT NOT NULL,
        opened_at REAL NOT NULL,
        closed_at REAL,
        close_reason TEXT
    )""",
    """CREATE UNIQUE INDEX IF NOT EXISTS one_open_room_per_shipment
        ON room_bindings (shipment_id) WHERE closed_at IS NULL""",
    """CREATE UNIQUE INDEX IF NOT EXISTS one_open_shipment_per_room
        ON room_bindings (room) WHERE closed_at IS NULL""",
    "CREATE INDEX IF NOT EXISTS bindings_by_shipment ON room_bindings (shipment_id, id)",
    """CREATE TABLE IF NOT EXISTS recordings (
        recording_id TEXT PRIMARY KEY,
        shipment_id TEXT NOT NULL REFERENCES shipments (shipment_id),
        room TEXT NOT NULL,
        state TEXT NOT NULL,
        started_at REAL,
        stopped_at REAL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS recordings_by_shipment ON recordings (shipment_id, started_at)",
)

_SHIPMENT_COLUMNS = (
    "shipment_id, tracking_no, carrier, origin, destination, stage, eta, status,"
    " created_at, updated_at"
)
_BINDING_COLUMNS = "shipment_id, room, opened_at, closed_at, close_reason"
_RECORDING_COLUMNS = "recording_id, shipment_id, room, state, started_at, stopped_at"


def _pack(detail: Any) -> bytes | None:
    return None if detail is None else msgpack.packb(detail, use_bin_type=True)


def _unpack(blob: bytes | None) -> Any:
    return None if blob is None else msgpack.unpackb(blob, raw=False, strict_map_key=False)


def _shipment(conn: sqlite3.Connection, shipment_id: str) -> Shipment | None:
    row = conn.execute(
        f"SELECT {_SHIPMENT_COLUMNS} FROM shipments WHERE shipment_id = ?", (shipment_id,)
    ).fetchone()
    return Shipment(*row) if row else None


def _create(conn: sqlite3.Connection, shipment_id: str, now: float) -> None:
    conn.execute(
        "INSERT INTO shipments (shipment_id, created_at, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (shipment_id) DO NOTHING",
        (shipment_id, now, now),
    )


def _open_binding(conn: sqlite3.Connection, column: str, value: str) -> RoomBinding | None:
    row = conn.execute(
        f"SELECT {_BINDING_COLUMNS} FROM room_bindings WHERE {column} = ? AND closed_at IS NULL",
        (value,),
    ).fetchone()
    return RoomBinding(*row) if row else None


class ShipmentStore:
    """Shipments in a SQLite file; every method is a coroutine."""

    def __init__(self, path: str | Path) -> None:
        self._db = DurableDb(path, _SCHEMA, version=1, name="shipments")

    @property
    def path(self) -> Path:
        return self._db.path

    async def close(self) -> None:
        await self._db.close()

    async def get(self, shipment_id: str) -> Shipment | None:
        return await self._db.read(lambda conn: _shipment(conn, shipment_id))

    async def upsert(self, shipment_id: str, changes: dict[str, str | None], now: float) -> Shipment:
        """Create the shipment if needed, then set ``changes`` (a subset of
        `SHIPMENT_FIELDS`; ``None`` clears a field). Return the record."""
        unknown = set(changes) - set(SHIPMENT_FIELDS)
        if unknown:
            raise ValueError(f"not shipment fields: {sorted(unknown)}")

        def job(conn):
            _create(conn, shipment_id, now)
            if changes:
                assignments = ", ".join(f"{name} = ?" for name in changes)
                conn.execute(
                    f"UPDATE shipments SET {assignments}, updated_at = ? WHERE shipment_id = ?",
                    (*changes.values(), now, shipment_id),
                )
            return _shipment(conn, shipment_id)

        return await self._db.write(job)

    async def add_event(
        self, shipment_id: str, status: str, severity: str, detail: Any, ts: float
    ) -> tuple[HistoryEntry, list[str]] | None:
        """Append a status to the history (next ``seq``) and make it the shipment's
        status. Return the entry and the shipment's open rooms; ``None`` if the
        shipment is unknown (nothing written)."""
        packed = _pack(detail)

        def job(conn):
            row = conn.execute(
                "SELECT last_seq FROM shipments WHERE shipment_id = ?", (shipment_id,)
            ).fetchone()
            if row is None:
                return None
            seq = row[0] + 1
            conn.execute(
                "INSERT INTO history (shipment_id, seq, status, severity, detail, ts)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (shipment_id, seq, status, severity, packed, ts),
            )
            conn.execute(
                "UPDATE shipments SET last_seq = ?, status = ?, updated_at = ? WHERE shipment_id = ?",
                (seq, status, ts, shipment_id),
            )
            rooms = conn.execute(
                "SELECT room FROM room_bindings WHERE shipment_id = ? AND closed_at IS NULL",
                (shipment_id,),
            ).fetchall()
            entry = HistoryEntry(shipment_id, seq, status, severity, _unpack(packed), ts)
            return entry, [r[0] for r in rooms]

        return await self._db.write(job)

    async def bind_room(self, shipment_id: str, room: str, now: float) -> RoomBinding:
        """Bind ``room`` to the shipment (created with its id alone if unknown).

        Binding the same open pair again returns the existing binding. A shipment with
        another open room, or a room open for another shipment: ``Conflict``.
        """

        def job(conn):
            current = _open_binding(conn, "shipment_id", shipment_id)
            if current is not None:
                if current.room == room:
                    return current
                raise Conflict(f"shipment {shipment_id!r} is bound to open room {current.room!r}")
            other = _open_binding(conn, "room", room)
            if other is not None:
                raise Conflict(f"room {room!r} is bound to shipment {other.shipment_id!r}")
            _create(conn, shipment_id, now)
            conn.execute(
                "INSERT INTO room_bindings (shipment_id, room, opened_at) VALUES (?, ?, ?)",
                (shipment_id, room, now),
            )
            return RoomBinding(shipment_id, room, now, None, None)

        return await self._db.write(job)

    async def unbind_room(self, room: str, now: float, reason: str) -> RoomBinding | None:
        """Close the room's open binding; return it closed, ``None`` if there was none."""

        def job(conn):
            current = _open_binding(conn, "room", room)
            if current is None:
                return None
            conn.execute(
                "UPDATE room_bindings SET closed_at = ?, close_reason = ?"
                " WHERE room = ? AND closed_at IS NULL",
                (now, reason, room),
            )
            return RoomBinding(current.shipment_id, room, current.opened_at, now, reason)

        return await self._db.write(job)

    async def unbind_rooms_except(self, open_rooms: Iterable[str], now: float,
                                  reason: str) -> list[RoomBinding]:
        """Close every open binding whose room is not in ``open_rooms``; return them."""
        keep = set(open_rooms)

        def job(conn):
            rows = conn.execute(
                f"SELECT {_BINDING_COLUMNS} FROM room_bindings WHERE closed_at IS NULL"
            ).fetchall()
            stale = [b for b in (RoomBinding(*row) for row in rows) if b.room not in keep]
            for binding in stale:
                conn.execute(
                    "UPDATE room_bindings SET closed_at = ?, close_reason = ?"
                    " WHERE room = ? AND closed_at IS NULL",
                    (now, reason, binding.room),
                )
            return [RoomBinding(b.shipment_id, b.room, b.opened_at, now, reason) for b in stale]

        return await self._db.write(job)

    async def binding_for_room(self, room: str) -> RoomBinding | None:
        """The room's open binding, if any."""
        return await self._db.read(lambda conn: _open_binding(conn, "room", room))

    async def put_recording(
        self,
        recording_id: str,
        shipment_id: str,
        room: str,
        state: str,
        started_at: float | None = None,
        stopped_at: float | None = None,
    ) -> Recording:
        """Insert or update a recording of a shipment's room (timestamps only fill in)."""

        def job(conn):
            _create(conn, shipment_id, started_at or stopped_at or 0.0)
            conn.execute(
                f"INSERT INTO recordings ({_RECORDING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (recording_id) DO UPDATE SET state = excluded.state,"
                " started_at = COALESCE(recordings.started_at, excluded.started_at),"
                " stopped_at = COALESCE(excluded.stopped_at, recordings.stopped_at)",
                (recording_id, shipment_id, room, state, started_at, stopped_at),
            )
            row = conn.execute(
                f"SELECT {_RECORDING_COLUMNS} FROM recordings WHERE recording_id = ?",
                (recording_id,),
            ).fetchone()
            return Recording(*row)

        return await self._db.write(job)

    async def details(self, shipment_id: str) -> ShipmentDetails | None:
        """The shipment with its history, rooms and recordings (one snapshot)."""
        return await self._db.read(lambda conn: read_details(conn, shipment_id))


def read_details(conn: sqlite3.Connection, shipment_id: str) -> ShipmentDetails | None:
    """The shipment with its history, rooms and recordings, read on ``conn`` (inside one
    read transaction for a consistent snapshot); ``None`` if it does not exist."""
    shipment = _shipment(conn, shipment_id)
    if shipment is None:
        return None
    history = tuple(
        HistoryEntry(shipment_id, seq, status, severity, _unpack(detail), ts)
        for seq, status, severity, detail, ts in conn.execute(
            "SELECT seq, status, severity, detail, ts FROM history"
            " WHERE shipment_id = ? ORDER BY seq",
            (shipment_id,),
        )
    )
    rooms = tuple(
        RoomBinding(*row)
        for row in conn.execute(
            f"SELECT {_BINDING_COLUMNS} FROM room_bindings WHERE shipment_id = ? ORDER BY id",
            (shipment_id,),
        )
    )
    recordings = tuple(
        Recording(*row)
        for row in conn.execute(
            f"SELECT {_RECORDING_COLUMNS} FROM recordings WHERE shipment_id = ?"
            " ORDER BY started_at, recording_id",
            (shipment_id,),
        )
    )
    return ShipmentDetails(shipment, history, rooms, recordings)
