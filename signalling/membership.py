"""Who is where on this node: rooms, their members' connections, and watchers.

One object owns it; the signalling session (``conn.room``), the message delivery, the
room lifecycle and the event fan-out ask it instead of keeping copies. `Membership` is
the interface; `LocalMembership` keeps it in this process (one node). The cluster keeps
the same interface and mirrors rooms and members into the shared directory (Redis), so
that other nodes can find them; connections stay local to the node that holds them.

- A room is a `RoomRecord`: open from `open_room` to `close_room`, with what the node
  keeps beside the media room (bound shipment, ``record``, ``hold_open``).
- A member is a `Member`: one connection in one room as one participant. A connection
  is in at most one room (``PROTOCOL.md``); `join` while in another is a bug, refused.
- A watcher is a connection that said ``events.subscribe`` for rooms and shipments; an
  event of a room or a shipment goes once to each connection watching either.

Nothing here awaits: each call changes the state in one step, so callers can rely on
what they just read until their next ``await``.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import FixedCodeError

__all__ = ["Membership", "LocalMembership", "RoomRecord", "Member", "MembershipError"]


class MembershipError(FixedCodeError):
    """A call that contradicts the state (a caller's bug, never a client's input)."""

    code = "internal"


@dataclass(slots=True)
class RoomRecord:
    """An open room as the node keeps it beside the media `Room`."""

    name: str
    created_at: float = field(default_factory=time.time)
    shipment_id: str | None = None
    record: bool = False
    metadata: Any = None
    hold_open: bool = False
    """Made by ``room.create`` and nobody joined yet: it waits ``empty_timeout_s``."""
    empty_timeout_s: float | None = None
    """How long a ``room.create`` room waits for its first participant (``None``: the
    node's default)."""


@dataclass(frozen=True, slots=True)
class Member:
    """One connection in a room as one participant."""

    conn: Any
    room: str
    participant_id: str
    identity: str


class Membership(abc.ABC):
    """Rooms, members and watchers of this node (see the module docstring)."""

    # -- rooms

    @abc.abstractmethod
    def open_room(self, record: RoomRecord) -> RoomRecord:
        """Open ``record.name``; an open room's record is returned unchanged."""

    @abc.abstractmethod
    def close_room(self, room: str) -> tuple[RoomRecord | None, list[Member]]:
        """Close ``room``: forget it and its members; return what it was."""

    @abc.abstractmethod
    def room(self, room: str) -> RoomRecord | None:
        """The open room's record, or ``None``."""

    @abc.abstractmethod
    def room_names(self) -> list[str]:
        """The open rooms, in the order they opened."""

    def shipment_of(self, room: str) -> str | None:
        record = self.room(room)
        return record.shipment_id if record is not None else None

    # -- members

    @abc.abstractmethod
    def join(self, conn: Hashable, room: str, participant_id: str, identity: str) -> Member:
        """``conn`` is now ``participant_id`` in the open ``room``."""

    @abc.abstractmethod
    def leave(self, conn: Hashable) -> Member | None:
        """``conn`` is out of its room; return the membership it had, if any."""

    @abc.abstractmethod
    def member(self, conn: Hashable) -> Member | None:
        """Where ``conn`` is, or ``None``."""

    @abc.abstractmethod
    def members(self, room: str) -> list[Member]:
        """The room's members, in the order they joined."""

    def room_of(self, conn: Hashable) -> str | None:
        member = self.member(conn)
        return member.room if member is not None else None

    def connections(self, room: str, exclude: str | None = None) -> list[Any]:
        """The connections of the room's members but participant ``exclude``."""
        return [m.conn for m in self.members(room) if m.participant_id != exclude]

    def has_identity(self, room: str, identity: str) -> bool:
        """Whether ``identity`` is in ``room`` on any connection."""
        return any(m.identity == identity for m in self.members(room))

    # -- watchers

    @abc.abstractmethod
    def watch(self, conn: Hashable, rooms: Iterable[str], shipment_ids: Iterable[str]) -> None:
        """``conn`` also watches these rooms and shipments (subscriptions add up)."""

    @abc.abstractmethod
    def unwatch(self, conn: Hashable) -> None:
        """``conn`` watches nothing any more (it closed)."""

    @abc.abstractmethod
    def watchers(self, room: str | None, shipment_id: str | None) -> set[Any]:
        """Every connection watching ``room`` or ``shipment_id``."""

    @abc.abstractmethod
    def watched_count(self, conn: Hashable) -> int:
        """How many rooms plus shipments ``conn`` watches."""

    @abc.abstractmethod
    def watcher_count(self) -> int:
        """How many connections watch something."""


class LocalMembership(Membership):
    """`Membership` in this process's memory."""

    def __init__(self) -> None:
        self._rooms: dict[str, RoomRecord] = {}
        self._members: dict[str, dict[Hashable, Member]] = {}
        self._by_conn: dict[Hashable, Member] = {}
        self._room_watchers: dict[str, set[Hashable]] = {}
        self._shipment_watchers: dict[str, set[Hashable]] = {}
        self._watching: dict[Hashable, tuple[set[str], set[str]]] = {}

    # -- rooms

    def open_room(self, record: RoomRecord) -> RoomRecord:
        found = self._rooms.get(record.name)
        if found is not None:
            return found
        self._rooms[record.name] = record
        self._members[record.name] = {}
        return record

    def close_room(self, room: str) -> tuple[RoomRecord | None, list[Member]]:
        record = self._rooms.pop(room, None)
        members = list(self._members.pop(room, {}).values())
        for member in members:
            self._by_conn.pop(member.conn, None)
        return record, members

    def room(self, room: str) -> RoomRecord | None:
        return self._rooms.get(room)

    def room_names(self) -> list[str]:
        return list(self._rooms)

    # -- members

    def join(self, conn: Hashable, room: str, participant_id: str, identity: str) -> Member:
        members = self._members.get(room)
        if members is None:
            raise MembershipError(f"room {room!r} is not open")
        current = self._by_conn.get(conn)
        if current is not None:
            raise MembershipError(f"{conn!r} is in room {current.room!r} already")
        member = Member(conn, room, participant_id, identity)
        members[conn] = member
        self._by_conn[conn] = member
        return member

    def leave(self, conn: Hashable) -> Member | None:
        member = self._by_conn.pop(conn, None)
        if member is not None:
            self._members.get(member.room, {}).pop(conn, None)
        return member

    def member(self, conn: Hashable) -> Member | None:
        return self._by_conn.get(conn)

    def members(self, room: str) -> list[Member]:
        return list(self._members.get(room, {}).values())

    # -- watchers

    def watch(self, conn: Hashable, rooms: Iterable[str], shipment_ids: Iterable[str]) -> None:
        watched_rooms, watched_shipments = self._watching.setdefault(conn, (set(), set()))
        for name in rooms:
            watched_rooms.add(name)
            self._room_watchers.setdefault(name, set()).add(conn)
        for shipment_id in shipment_ids:
            watched_shipments.add(shipment_id)
            self._shipment_watchers.setdefault(shipment_id, set()).add(conn)

    def unwatch(self, conn: Hashable) -> None:
        rooms, shipments = self._watching.pop(conn, ((), ()))
        for index, names in ((self._room_watchers, rooms), (self._shipment_watchers, shipments)):
            for name in names:
                conns = index.get(name)
                if conns is not None:
                    conns.discard(conn)
                    if not conns:
                        del index[name]

    def watchers(self, room: str | None, shipment_id: str | None) -> set[Any]:
        found = set(self._room_watchers.get(room, ())) if room is not None else set()
        if shipment_id is not None:
            found.update(self._shipment_watchers.get(shipment_id, ()))
        return found

    def watched_count(self, conn: Hashable) -> int:
        rooms, shipments = self._watching.get(conn, ((), ()))
        return len(rooms) + len(shipments)

    def watcher_count(self) -> int:
        return len(self._watching)
