"""ShipmentsPlugin through the hook registry, with requests validated by the real schema."""

from __future__ import annotations

import pytest

from plugins.shipments import ShipmentsPlugin
from signalling.errors import BadRequest, Conflict, Forbidden, NotFound
from signalling.events import Alert, RecordingStarted, RecordingStopped, RoomClosed, ShipmentStatus
from signalling.hooks import HookRegistry
from signalling.tokens import Claims, Grants


class ScopedConn:
    """An admin connection whose token carries ``room`` and/or ``shipment`` claims."""

    def __init__(self, room: str | None, shipment: str | None) -> None:
        self.identity = "desk"
        self.grants = Grants(admin=True)
        self.claims = Claims(identity="desk", name=None, room=room, grants=self.grants,
                             shipment=shipment, exp=2e9, nbf=None, issuer="test")

    def __repr__(self) -> str:
        return f"ScopedConn(room={self.claims.room!r}, shipment={self.claims.shipment!r})"


def admin_for(room: str | None = None, shipment: str | None = None) -> ScopedConn:
    return ScopedConn(room, shipment)


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


# -- scopes of a token (issue 8, point 1) ----------------------------------------------


async def _two_bound_rooms(ctx, hooks) -> None:
    """dock-a holds S-A, dock-b holds S-B (bound by an unscoped admin); S-free has none."""
    for room, shipment in (("dock-a", "S-A"), ("dock-b", "S-B")):
        await hooks.room_create_check(room, {"room": room, "shipment_id": shipment})
        await ctx.request("shipment.event", shipment_id=shipment, status="warehouse_received")
    await ctx.request("shipment.upsert", shipment_id="S-free", carrier="DHL")
    ctx.published.clear()


REQUESTS = [
    ("shipment.get", {}),
    ("shipment.event", {"status": "exception", "severity": "critical"}),
    ("shipment.upsert", {"carrier": "FORGED"}),
]


@pytest.mark.parametrize("msg_type, fields", REQUESTS)
@pytest.mark.parametrize("conn, shipment_id", [
    (admin_for(room="dock-a"), "S-B"),          # bound to another room
    (admin_for(room="dock-a"), "S-free"),       # bound to no room
    (admin_for(room="dock-a"), "S-404"),        # unknown: forbidden, not not_found
    (admin_for(shipment="S-A"), "S-B"),         # not the token's shipment
    (admin_for(room="dock-a", shipment="S-A"), "S-B"),
    (admin_for(room="dock-b", shipment="S-A"), "S-A"),  # its shipment, but bound elsewhere
])
async def test_a_scoped_token_is_forbidden_other_shipments_and_changes_nothing(
        ctx, hooks, msg_type, fields, conn, shipment_id):
    await _two_bound_rooms(ctx, hooks)
    before = {s: await ctx.request("shipment.get", shipment_id=s) for s in ("S-A", "S-B", "S-free")}
    with pytest.raises(Forbidden):
        await ctx.request(msg_type, conn=conn, shipment_id=shipment_id, **fields)
    assert {s: await ctx.request("shipment.get", shipment_id=s) for s in before} == before
    with pytest.raises(NotFound):
        await ctx.request("shipment.get", shipment_id="S-404")
    assert ctx.published == []


@pytest.mark.parametrize("conn", [admin_for(room="dock-a"), admin_for(shipment="S-A"),
                                  admin_for(room="dock-a", shipment="S-A"), admin_for()])
async def test_a_scoped_token_works_on_its_own_shipment(ctx, hooks, conn):
    await _two_bound_rooms(ctx, hooks)
    reply = await ctx.request("shipment.event", conn=conn, shipment_id="S-A", status="inspected")
    assert reply == {"type": "ok", "seq": 2}
    assert [(e.room, e.shipment_id) for e in ctx.published] == [("dock-a", "S-A")]
    reply = await ctx.request("shipment.upsert", conn=conn, shipment_id="S-A", stage="dock")
    assert reply["stage"] == "dock"
    reply = await ctx.request("shipment.get", conn=conn, shipment_id="S-A")
    assert [h["status"] for h in reply["history"]] == ["warehouse_received", "inspected"]


async def test_a_room_token_loses_the_shipment_when_its_room_closes(ctx, hooks):
    await _two_bound_rooms(ctx, hooks)
    conn = admin_for(room="dock-a")
    assert (await ctx.request("shipment.get", conn=conn, shipment_id="S-A"))["shipment_id"] == "S-A"
    await ctx.events.publish(RoomClosed(room="dock-a", reason="closed"))
    with pytest.raises(Forbidden):
        await ctx.request("shipment.get", conn=conn, shipment_id="S-A")
    # the shipment's next room is another room's business
    await hooks.room_create_check("dock-c", {"room": "dock-c", "shipment_id": "S-A"})
    with pytest.raises(Forbidden):
        await ctx.request("shipment.event", conn=conn, shipment_id="S-A", status="delivered")


async def test_a_room_token_sees_only_its_rooms_rooms_and_recordings(ctx, hooks):
    """shipment.get for a room token: the shipment's history, but of its rooms and
    recordings only those of the token's room (an earlier room is someone else's)."""
    await hooks.room_create_check("dock-b", {"room": "dock-b", "shipment_id": "S1"})
    await ctx.events.publish(RecordingStarted(room="dock-b", recording_id="rec-b"))
    await ctx.events.publish(RoomClosed(room="dock-b", reason="closed"))
    await hooks.room_create_check("dock-a", {"room": "dock-a", "shipment_id": "S1"})
    await ctx.events.publish(RecordingStarted(room="dock-a", recording_id="rec-a"))
    full = await ctx.request("shipment.get", shipment_id="S1")
    assert [r["room"] for r in full["rooms"]] == ["dock-b", "dock-a"]
    assert {r["recording_id"] for r in full["recordings"]} == {"rec-a", "rec-b"}
    mine = await ctx.request("shipment.get", conn=admin_for(room="dock-a"), shipment_id="S1")
    assert [r["room"] for r in mine["rooms"]] == ["dock-a"]
    assert [r["recording_id"] for r in mine["recordings"]] == ["rec-a"]
    assert mine["history"] == full["history"]
    # a shipment token sees all of its shipment
    assert await ctx.request("shipment.get", conn=admin_for(shipment="S1"), shipment_id="S1") == full
