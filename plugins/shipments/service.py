"""Shipment logic: validate requests, change the store, say which events to send.

The service never sends anything: `ShipmentService.event` returns the history entry
and the typed events to publish (`ShipmentStatus` always, `Alert` when the severity is
warning or critical, one of each per bound room); the plugin publishes them. Time is passed in (``now``). Every argument is
checked before anything is written: bad input raises ``BadRequest`` and changes
nothing; an unknown shipment is ``NotFound``; a second open room is ``Conflict``.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from signalling.errors import BadRequest, NotFound
from signalling.events import Alert, Event, ShipmentStatus

from .store import (
    SHIPMENT_FIELDS,
    HistoryEntry,
    Recording,
    RoomBinding,
    Shipment,
    ShipmentDetails,
    ShipmentStore,
)
from .vocabulary import STATUS_PATTERN, Severity, default_severity, is_valid_status

__all__ = ["ShipmentService", "EventOutcome", "LIMITS", "SHIPMENT_ID_PATTERN"]

SHIPMENT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/#-]{0,127}")

#: Longest accepted value, in characters (``detail`` maps: msgpack-encoded bytes).
LIMITS: Mapping[str, int] = {
    "tracking_no": 64,
    "carrier": 64,
    "stage": 64,
    "origin": 256,
    "destination": 256,
    "eta": 64,
    "detail": 2000,
    "detail_map_bytes": 8192,
    "room": 256,
    "reason": 128,
}


@dataclass(frozen=True, slots=True)
class EventOutcome:
    """The stored history entry and the events to publish: each reaches the members of
    its ``room`` (if any) and the watchers of its room and shipment."""

    entry: HistoryEntry
    emits: tuple[Event, ...]


def check_shipment_id(value: Any) -> str:
    if not isinstance(value, str) or not SHIPMENT_ID_PATTERN.fullmatch(value):
        raise BadRequest(
            "shipment_id must be 1-128 characters: letters, digits and . _ : / # -,"
            " starting with a letter or digit"
        )
    return value


def _check_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    if len(value) > LIMITS[name]:
        raise BadRequest(f"{name} is longer than {LIMITS[name]} characters")
    if not value.isprintable():
        raise BadRequest(f"{name} must not contain control characters")
    return value


def normalize_eta(value: Any) -> str:
    """An ISO-8601 date, or date and time with a UTC offset, or Unix seconds; returned
    as ISO-8601 text (Unix seconds become UTC)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or not 0 <= value < 253402300800:  # year 10000
            raise BadRequest("eta as a number must be Unix seconds")
        return datetime.datetime.fromtimestamp(value, datetime.timezone.utc).isoformat()
    text = _check_text("eta", value)
    try:
        if len(text) == 10:
            return datetime.date.fromisoformat(text).isoformat()
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"eta {text!r} is not ISO-8601 (e.g. 2026-05-10 or 2026-05-10T14:00:00+08:00)"
        ) from None
    if parsed.tzinfo is None:
        raise BadRequest(f"eta {text!r} needs a UTC offset (e.g. +08:00 or Z): the border has two")
    return parsed.isoformat()


def _check_detail(detail: Any) -> Any:
    if detail is None or isinstance(detail, str):
        return None if detail is None else _check_text("detail", detail)
    if isinstance(detail, dict):
        try:
            size = len(msgpack.packb(detail, use_bin_type=True))
        except (TypeError, ValueError, OverflowError) as exc:
            raise BadRequest(f"detail cannot be stored: {exc}") from None
        if size > LIMITS["detail_map_bytes"]:
            raise BadRequest(f"detail is larger than {LIMITS['detail_map_bytes']} bytes")
        return detail
    raise BadRequest("detail must be a string or a map")


def _check_room(room: Any) -> str:
    if not isinstance(room, str) or not room:
        raise BadRequest("room must be a non-empty string")
    if len(room) > LIMITS["room"]:
        raise BadRequest(f"room is longer than {LIMITS['room']} characters")
    return room


def alert_text(shipment: str, status: str, detail: Any) -> str:
    text = f"shipment {shipment}: {status.replace('_', ' ')}"
    if isinstance(detail, str) and detail:
        text += f": {detail}"
    return text


class ShipmentService:
    def __init__(self, store: ShipmentStore) -> None:
        self.store = store

    async def upsert(self, shipment_id: Any, fields: Mapping[str, Any], now: float) -> Shipment:
        """Create or update a shipment. Absent or ``None`` fields stay as they are; an
        empty string clears one. Fields other than `SHIPMENT_FIELDS` are ignored."""
        check_shipment_id(shipment_id)
        changes: dict[str, str | None] = {}
        for name in SHIPMENT_FIELDS:
            value = fields.get(name)
            if value is None:
                continue
            if value == "":
                changes[name] = None
            elif name == "eta":
                changes[name] = normalize_eta(value)
            else:
                changes[name] = _check_text(name, value)
        return await self.store.upsert(shipment_id, changes, now)

    async def event(
        self,
        shipment_id: Any,
        status: Any,
        detail: Any = None,
        severity: Any = None,
        *,
        now: float,
    ) -> EventOutcome:
        """Record a status event; return the history entry and the events to send."""
        check_shipment_id(shipment_id)
        if not is_valid_status(status):
            raise BadRequest(f"status must match {STATUS_PATTERN.pattern} (e.g. customs_cleared)")
        if severity is None:
            level = default_severity(status)
        else:
            try:
                level = Severity(severity)
            except ValueError:
                raise BadRequest("severity must be info, warning or critical") from None
        detail = _check_detail(detail)
        added = await self.store.add_event(shipment_id, status, level.value, detail, now)
        if added is None:
            raise NotFound(f"shipment {shipment_id!r} does not exist")
        entry, rooms = added
        targets = rooms or [None]
        emits: list[Event] = [ShipmentStatus(shipment_id=shipment_id, status=status, detail=detail,
                                             ts=now, room=room) for room in targets]
        if level.alerts:
            text = alert_text(shipment_id, status, detail)
            emits += [Alert(shipment_id=shipment_id, room=room, severity=level.value, text=text, ts=now)
                      for room in targets]
        return EventOutcome(entry, tuple(emits))

    async def get(self, shipment_id: Any) -> ShipmentDetails:
        check_shipment_id(shipment_id)
        details = await self.store.details(shipment_id)
        if details is None:
            raise NotFound(f"shipment {shipment_id!r} does not exist")
        return details

    async def bind_room(self, shipment_id: Any, room: Any, now: float) -> RoomBinding:
        """Bind a room being created to a shipment (created with its id alone if new)."""
        check_shipment_id(shipment_id)
        return await self.store.bind_room(shipment_id, _check_room(room), now)

    async def unbind_room(self, room: str, now: float, reason: str) -> RoomBinding | None:
        """The room closed: its shipment may open another one."""
        return await self.store.unbind_room(room, now, reason[: LIMITS["reason"]])

    async def for_room(self, room: str) -> Shipment | None:
        """The shipment bound to an open room, if any."""
        binding = await self.store.binding_for_room(room)
        return None if binding is None else await self.store.get(binding.shipment_id)

    async def recording_changed(
        self, room: str, recording_id: Any, state: str, now: float
    ) -> Recording | None:
        """Note a recording of a bound room (started/stopped); ``None`` if unbound."""
        if not isinstance(recording_id, str) or not recording_id:
            return None
        binding = await self.store.binding_for_room(room)
        if binding is None:
            return None
        started, stopped = (now, None) if state == "recording" else (None, now)
        return await self.store.put_recording(
            recording_id, binding.shipment_id, room, state, started, stopped
        )
