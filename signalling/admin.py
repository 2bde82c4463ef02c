"""Administration requests of a node: ``room.*``, ``participant.remove``, ``events.subscribe``.

`Admin` checks each request (grants come checked by the session layer; the token's
``room`` claim, names, existence and limits are checked here) and asks the node, a
`RoomHost`, to do it. Bad input raises a ``signalling.errors`` error before anything
changes. ``events.subscribe`` adds to the connection's watched rooms and shipments in
the `Membership`; `signalling.fanout` sends them the events.

    room.create {room, shipment_id?, metadata?, record?}  -> room {..}
        conflict: the room is open already (or a plugin refuses: a shipment bound to
        another open room). The room stays open with no participant until someone
        joined and everyone left, or room.close.
    room.list {}                                          -> rooms {rooms: [room {..}]}
    room.close {room}                                     -> ok {}    not_found
    participant.remove {room, participant_id}             -> ok {}    not_found
    events.subscribe {rooms?, shipment_ids?}              -> ok {}    bad_request
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from .errors import BadRequest, Conflict, NotFound
from .membership import Membership
from .messages.log import MAX_NAME_CHARS
from .schema import Request
from .server import Connection
from .session import require_room

__all__ = ["Admin", "RoomHost", "MAX_WATCHED"]

MAX_WATCHED = 1000
"""Rooms plus shipments one connection may watch."""


class RoomHost(Protocol):
    """What `Admin` needs from the node."""

    lifecycle: asyncio.Lock
    """Held while a room opens or closes, so that a room's plugins see them in order."""

    def room_info(self, room: str) -> dict[str, Any] | None:
        """The ``room`` reply fields of an open room; ``None`` when it is not open."""

    def room_names(self) -> list[str]:
        """The open rooms."""

    async def create_room(self, room: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Run the plugins' checks, then open ``room`` with no participants (held open
        until a participant joined and left); return its ``room`` fields. Called with
        ``lifecycle`` held and the room not open."""

    async def close_room(self, room: str, reason: str) -> None:
        """Close an open room: ``room_closed`` to its members, peers closed, plugins told.
        Called with ``lifecycle`` held."""

    def has_participant(self, room: str, participant_id: str) -> bool:
        """Whether the participant is in the open room."""

    async def remove_participant(self, room: str, participant_id: str) -> None:
        """Make the participant leave the room (its connection is told first)."""


def _check_room_name(room: str) -> str:
    if len(room) > MAX_NAME_CHARS:
        raise BadRequest(f"room is longer than {MAX_NAME_CHARS} characters")
    return room


class Admin:
    """The request handlers; ``handlers()`` maps message types to them."""

    def __init__(self, host: RoomHost, membership: Membership) -> None:
        self.host = host
        self.membership = membership

    def handlers(self) -> dict[str, Any]:
        return {
            "room.create": self.on_room_create,
            "room.list": self.on_room_list,
            "room.close": self.on_room_close,
            "participant.remove": self.on_participant_remove,
            "events.subscribe": self.on_events_subscribe,
        }

    async def on_room_create(self, conn: Connection, request: Request) -> dict[str, Any]:
        room = _check_room_name(request["room"])
        require_room(conn, room)
        async with self.host.lifecycle:
            if self.host.room_info(room) is not None:
                raise Conflict(f"room {room!r} is already open")
            info = await self.host.create_room(room, request.fields)
        return {"type": "room", **info}

    async def on_room_list(self, conn: Connection, request: Request) -> dict[str, Any]:
        names = sorted(self.host.room_names())
        if conn.claims is not None and conn.claims.room is not None:
            names = [n for n in names if n == conn.claims.room]
        rooms = [info for info in map(self.host.room_info, names) if info is not None]
        return {"type": "rooms", "rooms": rooms}

    async def on_room_close(self, conn: Connection, request: Request) -> dict[str, Any]:
        room = request["room"]
        require_room(conn, room)
        async with self.host.lifecycle:
            if self.host.room_info(room) is None:
                raise NotFound(f"room {room!r} is not open")
            await self.host.close_room(room, "closed")
        return {"type": "ok"}

    async def on_participant_remove(self, conn: Connection, request: Request) -> dict[str, Any]:
        room, participant_id = request["room"], request["participant_id"]
        require_room(conn, room)
        if self.host.room_info(room) is None:
            raise NotFound(f"room {room!r} is not open")
        if not self.host.has_participant(room, participant_id):
            raise NotFound(f"participant {participant_id!r} is not in room {room!r}")
        await self.host.remove_participant(room, participant_id)
        return {"type": "ok"}

    async def on_events_subscribe(self, conn: Connection, request: Request) -> dict[str, Any]:
        rooms = list(request.get("rooms", []))
        shipment_ids = list(request.get("shipment_ids", []))
        if not rooms and not shipment_ids:
            raise BadRequest("events.subscribe needs rooms or shipment_ids (not both empty)")
        for name in rooms:
            _check_room_name(name)
            require_room(conn, name)
        for shipment_id in shipment_ids:
            if len(shipment_id) > MAX_NAME_CHARS:
                raise BadRequest(f"shipment_id is longer than {MAX_NAME_CHARS} characters")
        if self.membership.watched_count(conn) + len(set(rooms)) + len(set(shipment_ids)) > MAX_WATCHED:
            raise BadRequest(f"a connection may watch at most {MAX_WATCHED} rooms and shipments")
        self.membership.watch(conn, rooms, shipment_ids)
        return {"type": "ok"}
