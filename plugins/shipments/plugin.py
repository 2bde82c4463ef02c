"""`ShipmentsPlugin`: shipment-bound rooms over the node's hooks and routes.

- routes ``shipment.upsert`` / ``shipment.event`` / ``shipment.get`` (admin);
- ``room.create`` with a ``shipment_id`` binds the room (`room_create_check`): one open
  room per shipment, else ``conflict``; an unknown shipment is created with its id;
- ``joined`` carries the bound shipment as ``shipment`` (`join_info`);
- a closed room releases its shipment (`room_closed`), and so does a start: rooms that
  were bound when the previous process died are not open any more;
- status events go to the bound room's members (``shipment_status``, and ``alert`` at
  warning/critical) and to watchers and webhooks (``publish_event``);
- ``recording_started``/``recording_stopped`` events of a bound room are noted as the
  shipment's recordings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dockcast.hooks import Plugin, PluginContext
from signalling.errors import Forbidden

from .service import ShipmentService
from .store import ShipmentStore

__all__ = ["ShipmentsPlugin"]

log = logging.getLogger(__name__)

_RECORDING_STATES = {"recording_started": "recording", "recording_stopped": "stopped"}


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
        path = self.db_path or Path(ctx.data_dir) / "shipments.db"
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

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.store.close()

    # -- routes -----------------------------------------------------------------------

    async def on_upsert(self, conn: Any, request: Any) -> dict:
        fields = self._admin_fields(conn, request)
        shipment = await self.service.upsert(fields.get("shipment_id"), fields, self.clock())
        return {"type": "shipment", **shipment.to_wire()}

    async def on_event(self, conn: Any, request: Any) -> dict:
        fields = self._admin_fields(conn, request)
        outcome = await self.service.event(
            fields.get("shipment_id"),
            fields.get("status"),
            fields.get("detail"),
            fields.get("severity"),
            now=self.clock(),
        )
        await self._deliver(outcome.emits)
        return {"type": "ok", "seq": outcome.entry.seq}

    async def _deliver(self, emits) -> None:
        # The event is stored: a failed push must not turn the reply into an error.
        for emit in emits:
            pushes = [self.ctx.publish_event(emit.msg, room=emit.room, shipment_id=emit.shipment_id)]
            if emit.room is not None:
                pushes.insert(0, self.ctx.broadcast(emit.room, emit.msg))
            for push in pushes:
                try:
                    await push
                except Exception:  # noqa: BLE001
                    log.exception("could not push %s of shipment %s", emit.msg["type"],
                                  emit.shipment_id, extra={"room": emit.room})

    async def on_get(self, conn: Any, request: Any) -> dict:
        fields = self._admin_fields(conn, request)
        details = await self.service.get(fields.get("shipment_id"))
        return {"type": "shipment", **details.to_wire()}

    @staticmethod
    def _admin_fields(conn: Any, request: Any) -> Mapping[str, Any]:
        # The schema layer checks grants too; a route registered elsewhere must not leak.
        if not _is_admin(conn):
            raise Forbidden("shipment operations need an admin token")
        return _fields(request)

    # -- hooks ------------------------------------------------------------------------

    async def room_create_check(self, room: str, fields: Mapping[str, Any]) -> None:
        shipment_id = fields.get("shipment_id")
        if shipment_id is not None:
            await self.service.bind_room(shipment_id, room, self.clock())

    async def room_closed(self, room: str, reason: str) -> None:
        await self.service.unbind_room(room, self.clock(), reason)

    async def join_info(self, room: str) -> dict:
        shipment = await self.service.for_room(room)
        return {} if shipment is None else {"shipment": shipment.to_wire()}

    async def event_published(self, msg: dict, room: str | None, shipment_id: str | None) -> None:
        state = _RECORDING_STATES.get(msg.get("type"))
        if state is not None and room is not None:
            await self.service.recording_changed(room, msg.get("recording_id"), state, self.clock())
