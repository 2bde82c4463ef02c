"""ShipmentsPlugin through the hook registry, with requests validated by the real schema."""

from __future__ import annotations

import pytest

from plugins.shipments import ShipmentsPlugin
from signalling.errors import BadRequest, Conflict, Forbidden, NotFound
from signalling.events import Alert, RecordingStarted, RecordingStopped, RoomClosed, ShipmentStatus
from signalling.hooks import HookRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
async def hooks(ctx):
    registry = HookRegistry([ShipmentsPlugin(clock=Clock())])
    await registry.start(ctx)
    yield registry
    await registry.stop()


async def test_start_routes_the_shipment_requests(ctx, hooks):
    assert sorted(ctx.routes) == ["shipment.event", "shipment.get", "shipment.upsert"]
    assert (ctx.data_dir / "shipments.db").exists()


async def test_upsert_reply(ctx, hooks):
    reply = await ctx.request(
        "shipment.upsert", shipment_id="S1", carrier="SF", eta="2026-05-10T09:00:00+08:00")
    assert reply == {
        "type": "shipment", "shipment_id": "S1", "tracking_no": None, "carrier": "SF",
        "origin": None, "destination": None, "stage": None, "eta": "2026-05-10T09:00:00+08:00",
        "status": None, "created_at": reply["created_at"], "updated_at": reply["created_at"],
    }


async def test_shipment_bound_room_sees_status_and_alert(ctx, hooks):
    await hooks.room_create_check("dock-1", {"room": "dock-1", "shipment_id": "S1"})
    await ctx.request("shipment.upsert", shipment_id="S1", tracking_no="SF1234567890")
    reply = await ctx.request(
        "shipment.event", shipment_id="S1", status="import_customs_hold", detail="x-ray", severity="warning"
    )
    assert reply == {"type": "ok", "seq": 1}
    status, alert = ctx.published
    assert isinstance(status, ShipmentStatus) and isinstance(alert, Alert)
    assert (status.room, status.shipment_id, alert.room, alert.shipment_id) == ("dock-1", "S1", "dock-1", "S1")
    assert status.to_wire() == {"type": "shipment_status", "shipment_id": "S1",
                                "status": "import_customs_hold", "detail": "x-ray",
                                "ts": status.to_wire()["ts"]}
    assert (alert.to_wire()["type"], alert.to_wire()["room"], alert.severity) == ("alert", "dock-1", "warning")


async def test_joined_carries_the_shipment_until_the_room_closes(ctx, hooks):
    assert await hooks.join_info("dock-1") == {}
    await hooks.room_create_check("dock-1", {"shipment_id": "S1"})
    await ctx.request("shipment.event", shipment_id="S1", status="warehouse_received")
    info = await hooks.join_info("dock-1")
    assert (info["shipment"]["shipment_id"], info["shipment"]["status"]) == ("S1", "warehouse_received")
    with pytest.raises(Conflict, match="bound to open room 'dock-1'"):
        await hooks.room_create_check("dock-2", {"shipment_id": "S1"})
    await ctx.events.publish(RoomClosed(room="dock-1", reason="closed_by_admin"))
    assert await hooks.join_info("dock-1") == {}
    await hooks.room_create_check("dock-2", {"shipment_id": "S1"})
    reply = await ctx.request("shipment.get", shipment_id="S1")
    assert [(r["room"], r["open"]) for r in reply["rooms"]] == [("dock-1", False), ("dock-2", True)]


async def test_room_without_shipment_is_left_alone(ctx, hooks):
    await hooks.room_create_check("plain", {"room": "plain"})
    await ctx.events.publish(RoomClosed(room="plain", reason="empty"))
    assert await hooks.join_info("plain") == {}


async def test_get_has_history_rooms_and_recordings(ctx, hooks):
    await hooks.room_create_check("dock-1", {"shipment_id": "S1"})
    for status in ("return_requested", "return_received", "inspected"):
        await ctx.request("shipment.event", shipment_id="S1", status=status)
    await ctx.events.publish(RecordingStarted(room="dock-1", recording_id="rec-1"))
    await ctx.events.publish(RecordingStopped(room="dock-1", recording_id="rec-1"))
    reply = await ctx.request("shipment.get", shipment_id="S1")
    assert reply["type"] == "shipment"
    assert [(h["seq"], h["status"], h["severity"]) for h in reply["history"]] == [
        (1, "return_requested", "warning"), (2, "return_received", "info"), (3, "inspected", "info")]
    assert [(r["recording_id"], r["state"]) for r in reply["recordings"]] == [("rec-1", "stopped")]
    assert reply["status"] == "inspected"


@pytest.mark.parametrize(
    "msg_type, fields, error, match",
    [
        ("shipment.event", {"shipment_id": "S404", "status": "delivered"}, NotFound, "S404"),
        ("shipment.get", {"shipment_id": "S404"}, NotFound, "S404"),
        ("shipment.event", {"shipment_id": "S1"}, BadRequest, "missing field 'status'"),
        ("shipment.upsert", {}, BadRequest, "missing field 'shipment_id'"),
        ("shipment.get", {}, BadRequest, "missing field 'shipment_id'"),
        ("shipment.upsert", {"shipment_id": "S1", "origin": "o" * 300}, BadRequest, "longer than 256"),
        ("shipment.event", {"shipment_id": "S1", "status": "delivered", "detail": "d" * 5000},
         BadRequest, "longer than 2000"),
        ("shipment.event", {"shipment_id": "S1", "status": "Delivered!"}, BadRequest, "status must match"),
    ],
)
async def test_bad_requests_get_the_documented_error_and_change_nothing(
    ctx, hooks, msg_type, fields, error, match
):
    await ctx.request("shipment.upsert", shipment_id="S1", carrier="DHL")
    before = await ctx.request("shipment.get", shipment_id="S1")
    with pytest.raises(error, match=match):
        await ctx.request(msg_type, **fields)
    assert await ctx.request("shipment.get", shipment_id="S1") == before
    assert ctx.published == []


@pytest.mark.parametrize("msg_type", ["shipment.upsert", "shipment.event", "shipment.get"])
async def test_non_admin_is_forbidden(ctx, hooks, member, msg_type):
    await ctx.request("shipment.upsert", shipment_id="S1")
    with pytest.raises(Forbidden):
        await ctx.request(msg_type, conn=member, shipment_id="S1", status="delivered")
    reply = await ctx.request("shipment.get", shipment_id="S1")
    assert reply["history"] == [] and reply["updated_at"] == reply["created_at"]


async def test_a_failed_push_does_not_fail_the_stored_event(ctx, hooks, caplog):
    await hooks.room_create_check("dock-1", {"shipment_id": "S1"})

    def broken_delivery(event):
        raise ConnectionResetError("member went away")

    ctx.events.subscribe(ShipmentStatus, broken_delivery, inline=True, name="members")
    reply = await ctx.request("shipment.event", shipment_id="S1", status="exception")
    assert reply == {"type": "ok", "seq": 1}
    assert "members failed on ShipmentStatus" in caplog.text
    assert [type(e).__name__ for e in ctx.published] == ["ShipmentStatus", "Alert"]  # others still get them


async def test_a_restart_frees_the_shipments_of_rooms_no_longer_open(ctx):
    first = HookRegistry([ShipmentsPlugin(clock=Clock())])
    await first.start(ctx)
    await first.room_create_check("dock-1", {"shipment_id": "S1"})
    await first.room_create_check("dock-2", {"shipment_id": "S2"})
    await first.stop()  # as if the node died: no room_closed
    ctx.rooms = {"dock-2": {"room": "dock-2"}}  # what the new node has open at start
    ctx.routes.clear()
    again = HookRegistry([ShipmentsPlugin(clock=Clock())])
    await again.start(ctx)
    try:
        await again.room_create_check("dock-9", {"shipment_id": "S1"})
        with pytest.raises(Conflict):
            await again.room_create_check("dock-8", {"shipment_id": "S2"})
        reply = await ctx.request("shipment.get", shipment_id="S1")
        assert [(r["room"], r["open"], r["close_reason"]) for r in reply["rooms"]] == \
            [("dock-1", False, "node_restarted"), ("dock-9", True, None)]
    finally:
        await again.stop()
