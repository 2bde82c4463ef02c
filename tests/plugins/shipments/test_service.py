"""Shipment rules: validation, events to emit, bindings, errors that change nothing."""

from __future__ import annotations

import pytest

from plugins.shipments.service import ShipmentService
from signalling.events import Alert, ShipmentStatus
from plugins.shipments.store import ShipmentStore
from signalling.errors import BadRequest, Conflict, NotFound


@pytest.fixture
async def service(tmp_path):
    store = ShipmentStore(tmp_path / "shipments.db")
    yield ShipmentService(store)
    await store.close()


async def test_upsert_normalizes_and_clears(service):
    shipment = await service.upsert(
        "SHP-2026/0001",
        {"tracking_no": "SF1234567890", "carrier": "SF", "eta": "2026-05-10T14:00:00Z",
         "unknown_newer_field": "ignored"},
        now=1.0,
    )
    assert shipment.eta == "2026-05-10T14:00:00+00:00"
    shipment = await service.upsert("SHP-2026/0001", {"carrier": "", "eta": 1778421600}, now=2.0)
    assert shipment.carrier is None
    assert shipment.eta == "2026-05-10T14:00:00+00:00"
    shipment = await service.upsert("SHP-2026/0001", {"eta": "2026-05-11", "stage": None}, now=3.0)
    assert (shipment.eta, shipment.tracking_no) == ("2026-05-11", "SF1234567890")


@pytest.mark.parametrize(
    "shipment_id, fields, match",
    [
        ("", {}, "shipment_id must be 1-128"),
        ("has space", {}, "shipment_id must be 1-128"),
        ("x" * 129, {}, "shipment_id must be 1-128"),
        (42, {}, "shipment_id must be 1-128"),
        ("S1", {"carrier": 7}, "carrier must be a string"),
        ("S1", {"tracking_no": "1" * 65}, "tracking_no is longer than 64"),
        ("S1", {"origin": "o" * 257}, "origin is longer than 256"),
        ("S1", {"stage": "line\nhaul"}, "stage must not contain control characters"),
        ("S1", {"eta": "next tuesday"}, "is not ISO-8601"),
        ("S1", {"eta": "2026-05-10T14:00:00"}, "needs a UTC offset"),
        ("S1", {"eta": -5}, "Unix seconds"),
        ("S1", {"eta": float("nan")}, "Unix seconds"),
        ("S1", {"eta": True}, "eta must be a string"),
    ],
)
async def test_bad_upserts_are_refused_and_change_nothing(service, shipment_id, fields, match):
    await service.upsert("S1", {"carrier": "DHL"}, now=1.0)
    with pytest.raises(BadRequest, match=match):
        await service.upsert(shipment_id, fields, now=2.0)
    shipment = (await service.get("S1")).shipment
    assert (shipment.carrier, shipment.updated_at) == ("DHL", 1.0)


async def test_info_event_emits_status_to_the_bound_room(service):
    await service.bind_room("S1", "dock-1", now=1.0)
    outcome = await service.event("S1", "customs_cleared", "released at LAX", now=5.0)
    assert outcome.entry.seq == 1
    assert outcome.emits == (
        ShipmentStatus(shipment_id="S1", status="customs_cleared", detail="released at LAX", ts=5.0,
                       room="dock-1"),
    )
    assert outcome.emits[0].to_wire() == {"type": "shipment_status", "shipment_id": "S1",
                                          "status": "customs_cleared", "detail": "released at LAX",
                                          "ts": 5000}


async def test_warning_event_also_emits_an_alert(service):
    await service.bind_room("S1", "dock-1", now=1.0)
    outcome = await service.event("S1", "import_customs_hold", "x-ray inspection", now=5.0)
    status, alert = outcome.emits
    assert status.type == "shipment_status"
    assert alert == Alert(shipment_id="S1", room="dock-1", severity="warning",
                          text="shipment S1: import customs hold: x-ray inspection", ts=5.0)
    assert alert.to_wire() == {"type": "alert", "shipment_id": "S1", "room": "dock-1",
                               "severity": "warning",
                               "text": "shipment S1: import customs hold: x-ray inspection", "ts": 5000}
    assert outcome.entry.severity == "warning"


async def test_unbound_events_go_to_watchers_only(service):
    await service.upsert("S1", {}, now=1.0)
    outcome = await service.event("S1", "in_transit", {"vessel": "EVER GIVEN"}, "critical", now=2.0)
    assert [(e.type, e.room) for e in outcome.emits] == [("shipment_status", None), ("alert", None)]
    assert "room" not in outcome.emits[1].to_wire()
    assert outcome.emits[1].text == "shipment S1: in transit"


async def test_severity_overrides_and_custom_statuses(service):
    await service.upsert("S1", {}, now=1.0)
    assert (await service.event("S1", "exception", severity="info", now=2.0)).entry.severity == "info"
    outcome = await service.event("S1", "pallet_rewrapped", now=3.0)
    assert (outcome.entry.seq, outcome.entry.severity, len(outcome.emits)) == (2, "info", 1)


@pytest.mark.parametrize(
    "args, error, match",
    [
        (("S1", "Delivered"), BadRequest, "status must match"),
        (("S1", None), BadRequest, "status must match"),
        (("S1", "delivered", None, "urgent"), BadRequest, "severity must be info, warning or critical"),
        (("S1", "delivered", "d" * 2001), BadRequest, "detail is longer than 2000"),
        (("S1", "delivered", {"blob": "x" * 9000}), BadRequest, "detail is larger than 8192 bytes"),
        (("S1", "delivered", ["a", "list"]), BadRequest, "detail must be a string or a map"),
        (("S1", "delivered", {"bad": object()}), BadRequest, "detail cannot be stored"),
        (("bad id", "delivered"), BadRequest, "shipment_id"),
        (("UNKNOWN", "delivered"), NotFound, "shipment 'UNKNOWN' does not exist"),
    ],
)
async def test_bad_events_are_refused_and_change_nothing(service, args, error, match):
    await service.upsert("S1", {}, now=1.0)
    with pytest.raises(error, match=match):
        await service.event(*args, now=2.0)
    details = await service.get("S1")
    assert details.history == () and details.shipment.status is None


async def test_get_unknown_is_not_found(service):
    with pytest.raises(NotFound):
        await service.get("S404")
    with pytest.raises(BadRequest):
        await service.get("")


async def test_bind_rules(service):
    await service.bind_room("NEW", "dock-1", now=1.0)  # unknown: created with its id alone
    assert (await service.for_room("dock-1")).shipment_id == "NEW"
    with pytest.raises(Conflict):
        await service.bind_room("NEW", "dock-2", now=2.0)
    with pytest.raises(BadRequest, match="room"):
        await service.bind_room("NEW", "", now=2.0)
    await service.unbind_room("dock-1", now=3.0, reason="empty")
    assert await service.for_room("dock-1") is None
    await service.bind_room("NEW", "dock-2", now=4.0)
    rooms = (await service.get("NEW")).rooms
    assert [(r.room, r.open, r.close_reason) for r in rooms] == [
        ("dock-1", False, "empty"), ("dock-2", True, None)]


async def test_recordings_of_bound_rooms_are_noted(service):
    await service.bind_room("S1", "dock-1", now=1.0)
    assert await service.recording_changed("other-room", "rec-0", "recording", now=2.0) is None
    await service.recording_changed("dock-1", "rec-1", "recording", now=2.0)
    await service.recording_changed("dock-1", "rec-1", "stopped", now=9.0)
    [recording] = (await service.get("S1")).recordings
    assert (recording.recording_id, recording.state, recording.started_at, recording.stopped_at) == (
        "rec-1", "stopped", 2.0, 9.0)
