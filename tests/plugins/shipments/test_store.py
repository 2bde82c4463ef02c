"""The shipments store on a real SQLite file."""

from __future__ import annotations

import asyncio
import stat

import pytest

from plugins.shipments.store import ShipmentStore
from signalling.errors import Conflict


@pytest.fixture
async def store(tmp_path):
    shipments = ShipmentStore(tmp_path / "data" / "shipments.db")
    yield shipments
    await shipments.close()


async def test_upsert_creates_then_updates_only_given_fields(store):
    created = await store.upsert("S1", {"carrier": "SF Express", "origin": "Shenzhen"}, now=10.0)
    assert (created.carrier, created.origin, created.destination) == ("SF Express", "Shenzhen", None)
    assert created.created_at == created.updated_at == 10.0
    updated = await store.upsert("S1", {"destination": "Los Angeles", "carrier": None}, now=20.0)
    assert (updated.carrier, updated.origin, updated.destination) == (None, "Shenzhen", "Los Angeles")
    assert (updated.created_at, updated.updated_at) == (10.0, 20.0)
    with pytest.raises(ValueError, match="colour"):
        await store.upsert("S1", {"colour": "red"}, now=30.0)


async def test_history_is_numbered_per_shipment(store):
    await store.upsert("S1", {}, now=1.0)
    await store.upsert("S2", {}, now=1.0)
    entries = await asyncio.gather(
        *(store.add_event("S1", "in_transit", "info", {"leg": i}, float(i)) for i in range(20))
    )
    assert sorted(entry.seq for entry, _ in entries) == list(range(1, 21))
    entry, rooms = await store.add_event("S2", "picked_up", "info", None, 5.0)
    assert (entry.seq, rooms) == (1, [])
    assert await store.add_event("nope", "picked_up", "info", None, 5.0) is None
    assert await store.get("nope") is None
    details = await store.details("S1")
    assert [h.seq for h in details.history] == list(range(1, 21))
    assert details.shipment.status == "in_transit"


async def test_one_open_room_per_shipment_and_one_shipment_per_room(store):
    await store.bind_room("S1", "dock-1", now=1.0)
    assert (await store.bind_room("S1", "dock-1", now=2.0)).opened_at == 1.0  # idempotent
    with pytest.raises(Conflict, match="bound to open room 'dock-1'"):
        await store.bind_room("S1", "dock-2", now=3.0)
    with pytest.raises(Conflict, match="bound to shipment 'S1'"):
        await store.bind_room("S2", "dock-1", now=3.0)
    assert await store.get("S2") is None  # the refused bind created nothing
    closed = await store.unbind_room("dock-1", now=4.0, reason="closed_by_admin")
    assert (closed.open, closed.close_reason) == (False, "closed_by_admin")
    assert await store.unbind_room("dock-1", now=5.0, reason="again") is None
    await store.bind_room("S1", "dock-2", now=6.0)
    rooms = (await store.details("S1")).rooms
    assert [(r.room, r.open) for r in rooms] == [("dock-1", False), ("dock-2", True)]


async def test_concurrent_binds_have_one_winner(store):
    results = await asyncio.gather(
        *(store.bind_room("S1", f"dock-{i}", now=1.0) for i in range(10)), return_exceptions=True
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, Exception))


async def test_bind_creates_an_unknown_shipment_with_its_id_alone(store):
    await store.bind_room("NEW-1", "dock-9", now=7.0)
    shipment = await store.get("NEW-1")
    assert shipment.to_wire() == {
        "shipment_id": "NEW-1", "tracking_no": None, "carrier": None, "origin": None,
        "destination": None, "stage": None, "eta": None, "status": None,
        "created_at": 7.0, "updated_at": 7.0,
    }


async def test_recordings_by_shipment(store):
    await store.bind_room("S1", "dock-1", now=1.0)
    await store.put_recording("rec-1", "S1", "dock-1", "recording", started_at=10.0)
    stopped = await store.put_recording("rec-1", "S1", "dock-1", "stopped", stopped_at=70.0)
    assert (stopped.state, stopped.started_at, stopped.stopped_at) == ("stopped", 10.0, 70.0)
    await store.put_recording("rec-2", "S1", "dock-1", "recording", started_at=80.0)
    details = await store.details("S1")
    assert [(r.recording_id, r.state) for r in details.recordings] == [
        ("rec-1", "stopped"), ("rec-2", "recording")]


async def test_everything_survives_a_restart(tmp_path):
    path = tmp_path / "shipments.db"
    store = ShipmentStore(path)
    await store.upsert("S1", {"tracking_no": "1Z999"}, now=1.0)
    await store.add_event("S1", "customs_cleared", "info", "ok", 2.0)
    await store.bind_room("S1", "dock-1", now=3.0)
    before = await store.details("S1")
    await store.close()
    store = ShipmentStore(path)
    assert await store.details("S1") == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    await store.close()
