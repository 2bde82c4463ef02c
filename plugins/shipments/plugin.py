"""`ShipmentsPlugin`: shipment-bound rooms over the node's hooks and routes.

- routes ``shipment.upsert`` / ``shipment.event`` / ``shipment.get`` (admin);
- ``room.create`` with a ``shipment_id`` binds the room (`room_create_check`): one open
  room per shipment, else ``conflict``; an unknown shipment is created with its id;
- ``joined`` carries the bound shipment as ``shipment`` (`join_info`);
- a closed room releases its shipment (`RoomClosed`), and so does a start: rooms that
  were bound when the previous process died are not open any more;
- status events are published as `ShipmentStatus` (and `Alert` at warning/critical):
  the bound room's members, the watchers and the other plugins (webhooks) get them;
- `RecordingStarted`/`RecordingStopped` of a bound room are noted as the shipment's
  recordings;
- every route honours the scopes of the token (``docs/protocol.md``): a ``shipment``
  claim admits that shipment only; a ``room`` claim admits only the shipment bound to
  that room while it is open, and ``shipment.get`` then lists only that room's binding
  and recordings. Anything else is ``forbidden`` (also for a shipment that does not
  exist: a scoped token learns nothing of other shipments) and changes nothing.
  (``room.create`` and ``events.subscribe`` are checked by ``signalling.admin``.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from signalling.errors import Forbidden
from signalling.events import RecordingStarted, RecordingStopped, RoomClosed
from signalling.hooks import Plugin, PluginContext

from .reader import SHIPMENTS_DB
from .service import ShipmentService
from .store import ShipmentStore

__all__ = ["ShipmentsPlugin"]

log = logging.getLogger(__name__)

_RECORDING_STATES = {RecordingStarted: "recording", RecordingStopped: "stopped"}


def _is_admin(conn: Any) -> bool:
    grants = getattr(conn, "grants", None)
    if isinstance(grants, Mapping):
        return bool(grants.get("admin"))
    return bool(getattr(grants, "admin", False))


def _fields(request: Any) -> Mapping[str, Any]:
    return getattr(request, "fields", request)


class ShipmentsPlugin(Plugin):
    name = "shipments"

    def __init__(self, db_path: str | Path | None = None, clock: Callable[[], float] = time.time):
        """``db_path`` defaults to ``<data_dir>/shipments.db``."""
        self.db_path = Path(db_path) if db_path is not None else None
        self.clock = clock
        self.ctx: PluginContext | None = None
        self.service: ShipmentService | None = None

    async def start(self, ctx: PluginContext) -> None:
        self.ctx = ctx
        path = self.db_path or Path(ctx.data_dir) / SHIPMENTS_DB
        self.service = ShipmentService(ShipmentStore(path))
        # Rooms live in the node's memory: after a crash no bound room is open any more,
        # and its shipment must be free to get a new one.
        stale = await self.service.store.unbind_rooms_except(ctx.room_names(), self.clock(),
                                                             "node_restarted")
        if stale:
            log.info("released the rooms of shipments left bound by a previous run",
                     extra={"rooms": [b.room for b in stale]})
        ctx.route("shipment.upsert", self.on_upsert)
        ctx.route("shipment.event", self.on_event)
        ctx.route("shipment.get", self.on_get)
        ctx.events.subscribe(RoomClosed, self.on_room_closed, name=self.name)
        ctx.events.subscribe((RecordingStarted, RecordingStopped), self.on_recording, name=self.name)

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.store.close()

    # -- routes -----------------------------------------------------------------------

    async def on_upsert(self, conn: Any, request: Any) -> dict:
        fields = self._admin_fields(conn, request)
        await self._require_scope(conn, fields)
        shipment = await self.service.upsert(fields.get("shipment_id"), fields, self.clock())
        return {"type": "shipment", **shipment.to_wire()}

    async def on_event(self, conn: Any, request: Any) -> dict:
        fields = self._admin_fields(conn, request)
        await self._require_scope(conn, fields)
        outcome = await self.service.event(
            fields.get("shipment_id"),
            fields.get("status"),
            fields.get("detail"),
            fields.get("severity"),
            now=self.clock(),
        )
        for event in outcome.emits:
            # Stored already: the bus isolates its subscribers, the reply stays ok.
            self.ctx.events.publish(event)
        return {"type": "ok", "seq": outcome.entry.seq}

    async def on_get(self, conn: Any, request: Any) -> dict:
        fields = self._admin_fields(conn, request)
        room = await self._require_scope(conn, fields)
        details = await self.service.get(fields.get("shipment_id"))
        reply = details.to_wire()
        if room is not None:
            # The shipment's earlier (or other) rooms are not this token's to see.
            reply["rooms"] = [r for r in reply["rooms"] if r["room"] == room]
            reply["recordings"] = [r for r in reply["recordings"] if r["room"] == room]
        return {"type": "shipment", **reply}

    @staticmethod
    def _admin_fields(conn: Any, request: Any) -> Mapping[str, Any]:
        # The schema layer checks grants too; a route registered elsewhere must not leak.
        if not _is_admin(conn):
            raise Forbidden("shipment operations need an admin token")
        return _fields(request)

    async def _require_scope(self, conn: Any, fields: Mapping[str, Any]) -> str | None:
        """Refuse (``forbidden``) a shipment outside the token's scope; return the
        token's ``room`` claim (``None``: not limited to a room)."""
        claims = getattr(conn, "claims", None)
        room, claimed = getattr(claims, "room", None), getattr(claims, "shipment", None)
        shipment_id = fields.get("shipment_id")
        if claimed is not None and shipment_id != claimed:
            raise Forbidden(f"the token acts for shipment {claimed!r} only")
        if room is not None:
            binding = await self.service.store.binding_for_room(room)
            if binding is None or binding.shipment_id != shipment_id:
                raise Forbidden(f"a token for room {room!r} acts only on the shipment bound to it")
        return room

    # -- hooks ------------------------------------------------------------------------

    async def room_create_check(self, room: str, fields: Mapping[str, Any]) -> None:
        shipment_id = fields.get("shipment_id")
        if shipment_id is not None:
            await self.service.bind_room(shipment_id, room, self.clock())

    async def join_info(self, room: str) -> dict:
        shipment = await self.service.for_room(room)
        return {} if shipment is None else {"shipment": shipment.to_wire()}

    # -- events -----------------------------------------------------------------------

    async def on_room_closed(self, event: RoomClosed) -> None:
        await self.service.unbind_room(event.room, self.clock(), event.reason)

    async def on_recording(self, event: RecordingStarted | RecordingStopped) -> None:
        await self.service.recording_changed(event.room, event.recording_id,
                                             _RECORDING_STATES[type(event)], self.clock())
