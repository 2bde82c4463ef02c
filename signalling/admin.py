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

Scopes of a token (``docs/protocol.md``): a ``room`` claim limits every request to that
room (`require_room`). A ``shipment`` claim limits the token to that shipment: without a
``room`` claim it acts only on the open room bound to it (`room.create` must bind it).
Watching shipments is for tokens without a ``room`` claim only (a shipment's events
follow it to the next room it is bound to, which the token does not admit), and a
``shipment`` claim watches only its shipment, never a room by name. The shipments
plugin checks its own requests (``shipment.*``) against the same claims. A refusal is
``forbidden`` and changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from .errors import BadRequest, Conflict, Forbidden, NotFound
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


def merge_rooms(local: list[dict[str, Any]], remote: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``room`` entries of several nodes as one list by room name: a room open on more
    than one node (its members on each) is one entry with every node's participants,
    its other fields from the first entry (this node's, when it has the room)."""
    merged: dict[str, dict[str, Any]] = {}
    for info in [*local, *remote]:
        name = info.get("room")
        if not isinstance(name, str):
            continue
        if name not in merged:
            merged[name] = {**info, "participants": list(info.get("participants") or [])}
            continue
        seen = {p.get("participant_id") for p in merged[name]["participants"]}
        merged[name]["participants"] += [p for p in info.get("participants") or []
                                         if p.get("participant_id") not in seen]
    return [merged[name] for name in sorted(merged)]


def _claim(conn: Any, name: str) -> str | None:
    """The token's ``room`` or ``shipment`` claim (``None``: not limited by it)."""
    return getattr(getattr(conn, "claims", None), name, None)


def _check_room_name(room: str) -> str:
    if len(room) > MAX_NAME_CHARS:
        raise BadRequest(f"room is longer than {MAX_NAME_CHARS} characters")
    return room


class Admin:
    """The request handlers; ``handlers()`` maps message types to them."""

    def __init__(self, host: RoomHost, membership: Membership) -> None:
        self.host = host
        self.membership = membership
        self.elsewhere: Callable[[str, dict[str, Any]], Awaitable[list[dict[str, Any]]]] | None = None
        """``await elsewhere(op, args)``: the other nodes of a cluster each do ``op``
        (``room.list``, ``room.close``, ``participant.remove``) on their own view with
        `answer` and this is their answers: the cluster sets it."""

    def handlers(self) -> dict[str, Any]:
        return {
            "room.create": self.on_room_create,
            "room.list": self.on_room_list,
            "room.close": self.on_room_close,
            "participant.remove": self.on_participant_remove,
            "events.subscribe": self.on_events_subscribe,
        }

    def _require_room_of_shipment(self, conn: Connection, room: str) -> None:
        """A token with a ``shipment`` claim and no ``room`` claim acts only on the open
        room bound to its shipment (``forbidden`` otherwise, also for a room not open:
        it is told nothing of rooms it may not see)."""
        shipment = _claim(conn, "shipment")
        if shipment is None or _claim(conn, "room") is not None:
            return
        info = self.host.room_info(room)
        if info is None or info.get("shipment_id") != shipment:
            raise Forbidden(f"the token acts for shipment {shipment!r} only")

    def _bound_elsewhere(self, shipment_id: str, room: str) -> bool:
        """Whether an open room other than ``room`` is bound to ``shipment_id``."""
        for name in self.host.room_names():
            info = self.host.room_info(name) if name != room else None
            if info is not None and info.get("shipment_id") == shipment_id:
                return True
        return False

    async def on_room_create(self, conn: Connection, request: Request) -> dict[str, Any]:
        room = _check_room_name(request["room"])
        require_room(conn, room)
        shipment_id = request.get("shipment_id")
        claimed = _claim(conn, "shipment")
        if claimed is not None and shipment_id != claimed and (
            shipment_id is not None or _claim(conn, "room") is None
        ):
            raise Forbidden(f"the token acts for shipment {claimed!r} only")
        async with self.host.lifecycle:
            if self.host.room_info(room) is not None:
                raise Conflict(f"room {room!r} is already open")
            scoped = claimed is not None or _claim(conn, "room") is not None
            if scoped and shipment_id is not None and self._bound_elsewhere(shipment_id, room):
                # The plugin's conflict names the other room, which this token may not see.
                raise Conflict(f"shipment {shipment_id!r} is bound to another open room")
            info = await self.host.create_room(room, request.fields)
        return {"type": "room", **info}

    async def on_room_list(self, conn: Connection, request: Request) -> dict[str, Any]:
        room_claim, shipment = _claim(conn, "room"), _claim(conn, "shipment")
        rooms = [info for info in self._open_rooms() if room_claim in (None, info["room"])]
        if self.elsewhere is not None:
            elsewhere = [r for answer in await self.elsewhere("room.list", {}) for r in answer.get("rooms", [])]
            rooms = merge_rooms(rooms, [r for r in elsewhere if room_claim in (None, r.get("room"))])
        if room_claim is None and shipment is not None:
            rooms = [info for info in rooms if info.get("shipment_id") == shipment]
        return {"type": "rooms", "rooms": rooms}

    async def on_room_close(self, conn: Connection, request: Request) -> dict[str, Any]:
        room = request["room"]
        require_room(conn, room)
        here = self.host.room_info(room) is not None
        if here or self.elsewhere is None:
            self._require_room_of_shipment(conn, room)
        answers = await self._ask_elsewhere("room.close", conn, room)
        async with self.host.lifecycle:
            if self.host.room_info(room) is not None:
                await self.host.close_room(room, "closed")
            elif not any(a.get("done") for a in answers):
                self._require_room_of_shipment(conn, room)
                raise NotFound(f"room {room!r} is not open")
        return {"type": "ok"}

    async def on_participant_remove(self, conn: Connection, request: Request) -> dict[str, Any]:
        room, participant_id = request["room"], request["participant_id"]
        require_room(conn, room)
        if self.host.room_info(room) is not None and self.host.has_participant(room, participant_id):
            self._require_room_of_shipment(conn, room)
            await self.host.remove_participant(room, participant_id)
            return {"type": "ok"}
        answers = await self._ask_elsewhere("participant.remove", conn, room, participant_id=participant_id)
        if any(a.get("done") for a in answers):
            return {"type": "ok"}
        if self.host.room_info(room) is None and not any(a.get("room") for a in answers):
            self._require_room_of_shipment(conn, room)
            raise NotFound(f"room {room!r} is not open")
        raise NotFound(f"participant {participant_id!r} is not in room {room!r}")

    def _open_rooms(self) -> list[dict[str, Any]]:
        """The ``room`` entries of this node's open rooms, by name."""
        return [info for info in map(self.host.room_info, sorted(self.host.room_names())) if info is not None]

    async def _ask_elsewhere(self, op: str, conn: Connection, room: str, **args: Any) -> list[dict[str, Any]]:
        """The other nodes' answers to ``op`` on ``room`` (none outside a cluster), with
        the token's shipment scope for them to check (`answer`)."""
        if self.elsewhere is None:
            return []
        shipment = _claim(conn, "shipment") if _claim(conn, "room") is None else None
        return await self.elsewhere(op, {"room": room, "shipment": shipment, **args})

    async def answer(self, op: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Another node's ``op`` done on this node's view: ``{rooms}`` for ``room.list``;
        else ``{room, done}`` (whether the room is open here, whether it was done), and
        nothing done for a room outside the asker's shipment scope (``args["shipment"]``)."""
        if op == "room.list":
            return {"rooms": self._open_rooms()}
        room = args.get("room")
        info = self.host.room_info(room) if isinstance(room, str) else None
        if info is None:
            return {"room": False, "done": False}
        shipment = args.get("shipment")
        if shipment is not None and info.get("shipment_id") != shipment:
            return {"room": False, "done": False}  # a room that token may not see
        if op == "room.close":
            async with self.host.lifecycle:
                if self.host.room_info(room) is not None:
                    await self.host.close_room(room, "closed")
            return {"room": True, "done": True}
        if op == "participant.remove":
            participant_id = args.get("participant_id")
            if not isinstance(participant_id, str) or not self.host.has_participant(room, participant_id):
                return {"room": True, "done": False}
            await self.host.remove_participant(room, participant_id)
            return {"room": True, "done": True}
        raise BadRequest(f"unknown admin operation {op!r}")

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
        room_claim, shipment = _claim(conn, "room"), _claim(conn, "shipment")
        if shipment_ids and room_claim is not None:
            raise Forbidden(f"a token for room {room_claim!r} watches its room, not shipments")
        if shipment is not None:
            if rooms and room_claim is None:
                raise Forbidden(f"the token acts for shipment {shipment!r}: watch it, not rooms")
            if any(s != shipment for s in shipment_ids):
                raise Forbidden(f"the token acts for shipment {shipment!r} only")
        if self.membership.watched_count(conn) + len(set(rooms)) + len(set(shipment_ids)) > MAX_WATCHED:
            raise BadRequest(f"a connection may watch at most {MAX_WATCHED} rooms and shipments")
        self.membership.watch(conn, rooms, shipment_ids)
        return {"type": "ok"}
