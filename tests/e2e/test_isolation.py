"""Rooms are isolated through shipments, through a real node (issue 8, point 1).

An admin token scoped to room A must neither see nor change room B's shipment: not by
``events.subscribe {shipment_ids}`` (whose events follow the shipment into room B), nor
by ``shipment.get/event/upsert``, nor by ``room.create``. A token with a ``shipment``
claim acts for that shipment only. Each refusal is ``forbidden`` and changes nothing.
"""

from __future__ import annotations

import pytest

from signalling.client import DockcastClient, ServerError
from signalling.tokens import mint_token

from .conftest import API_KEY, API_SECRET

pytestmark = [pytest.mark.timeout(90)]


def _admin_token(identity: str, room: str | None = None, shipment: str | None = None) -> str:
    return mint_token(API_KEY, API_SECRET, identity, room=room, grants=("admin",), ttl=600,
                      shipment=shipment)


async def _refused(call, code: str = "forbidden") -> ServerError:
    with pytest.raises(ServerError) as refused:
        await call
    assert refused.value.code == code, refused.value
    return refused.value


async def _events_until(client: DockcastClient, predicate) -> list[dict]:
    """Every event ``client`` got up to and including the first that ``predicate`` holds
    for. Events of one connection leave in the order the node published them, so the
    events published before it are all in the list when it arrives."""
    seen = []
    while True:
        event = await client.next_event(timeout=15)
        seen.append(event)
        if predicate(event):
            return seen


def _without_id(reply: dict) -> dict:
    return {k: v for k, v in reply.items() if k != "id"}


def _is_status_of(shipment_id: str, status: str):
    return lambda e: (e["type"], e.get("shipment_id"), e.get("status")) == \
        ("shipment_status", shipment_id, status)


async def test_a_room_token_cannot_see_or_change_another_rooms_shipment(node):
    wms = await DockcastClient.connect(node.url, _admin_token("wms"))
    desk_a = await DockcastClient.connect(node.url, _admin_token("desk-a", room="dock-a"))
    bob = await DockcastClient.connect(node.url, node.token("bob", "dock-b"))
    try:
        for shipment, room in (("S-A", "dock-a"), ("S-B", "dock-b")):
            await wms.shipment_upsert(shipment, carrier="SF")
            await wms.room_create(room, shipment_id=shipment)
            await wms.shipment_event(shipment, "warehouse_received")
        before = await wms.shipment_get("S-B")

        # watching shipments: B's, and even its own (S-A may be bound to B next)
        await _refused(desk_a.events_subscribe(shipment_ids=["S-B"]))
        await _refused(desk_a.events_subscribe(shipment_ids=["S-A"]))
        await _refused(desk_a.events_subscribe(rooms=["dock-a"], shipment_ids=["S-B"]))
        await _refused(desk_a.events_subscribe(rooms=["dock-b"]))
        # B's shipment: neither read nor written, nor told whether a shipment exists
        await _refused(desk_a.shipment_get("S-B"))
        await _refused(desk_a.shipment_event("S-B", "exception", "forged", "critical"))
        await _refused(desk_a.shipment_upsert("S-B", carrier="FORGED"))
        await _refused(desk_a.shipment_get("S-404"))
        await _refused(desk_a.shipment_upsert("S-new", carrier="DHL"))
        await _refused(desk_a.room_create("dock-b2", shipment_id="S-B"))
        # binding B's shipment to its own room: conflict, without naming room B
        await wms.room_close("dock-a")
        refused = await _refused(desk_a.room_create("dock-a", shipment_id="S-B"), "conflict")
        assert "dock-b" not in refused.message
        assert _without_id(await wms.shipment_get("S-B")) == _without_id(before)

        # its own room and the shipment bound to it: allowed
        await desk_a.room_create("dock-a", shipment_id="S-A")
        assert (await desk_a.events_subscribe(rooms=["dock-a"]))["type"] == "ok"
        mine = await desk_a.shipment_get("S-A")
        # its room's bindings only (the first dock-a, closed above, was dock-a too)
        assert [(r["room"], r["open"]) for r in mine["rooms"]] == [("dock-a", False), ("dock-a", True)]
        assert (await desk_a.shipment_event("S-A", "inspected"))["type"] == "ok"
        assert (await desk_a.shipment_upsert("S-A", stage="dock"))["stage"] == "dock"

        # room B lives on: a member's message, an alert of its shipment ...
        await bob.join("dock-b")
        await bob.send("chat", "pallet 7 damaged", msg_id="b-1")
        await wms.shipment_event("S-B", "import_customs_hold", "x-ray", "warning")
        # ... then an event of A's shipment; nothing of B reaches room A's watcher
        await wms.shipment_event("S-A", "put_away")
        seen = await _events_until(desk_a, _is_status_of("S-A", "put_away"))
        assert [e for e in seen if e.get("room") == "dock-b" or e.get("shipment_id") == "S-B"] == []
        assert any(_is_status_of("S-A", "inspected")(e) for e in seen)

        after = await wms.shipment_get("S-B")
        assert (after["carrier"], [h["status"] for h in after["history"]]) == \
            ("SF", ["warehouse_received", "import_customs_hold"])
        assert [r["room"] for r in after["rooms"]] == ["dock-b"]
    finally:
        for client in (wms, desk_a, bob):
            await client.close()


async def test_a_shipment_token_acts_for_its_shipment_only(node):
    wms = await DockcastClient.connect(node.url, _admin_token("wms"))
    agent = await DockcastClient.connect(node.url, _admin_token("broker", shipment="S-A"))
    bob = await DockcastClient.connect(node.url, node.token("bob", "dock-b"))
    try:
        for shipment, room in (("S-A", "dock-a"), ("S-B", "dock-b")):
            await wms.room_create(room, shipment_id=shipment)
        await _refused(agent.events_subscribe(shipment_ids=["S-B"]))
        await _refused(agent.events_subscribe(shipment_ids=["S-A", "S-B"]))
        await _refused(agent.events_subscribe(rooms=["dock-b"]))
        await _refused(agent.shipment_get("S-B"))
        await _refused(agent.shipment_event("S-B", "delivered"))
        await _refused(agent.room_close("dock-b"))
        await _refused(agent.room_create("dock-c", shipment_id="S-B"))
        await _refused(agent.room_create("dock-c"))
        assert [r["room"] for r in (await agent.room_list())["rooms"]] == ["dock-a"]
        assert [r["room"] for r in (await wms.room_list())["rooms"]] == ["dock-a", "dock-b"]

        assert (await agent.events_subscribe(shipment_ids=["S-A"]))["type"] == "ok"
        await bob.join("dock-b")
        await bob.send("chat", "for dock-b only", msg_id="b-1")
        await wms.shipment_event("S-B", "exception", "seal broken", "critical")
        assert (await agent.shipment_event("S-A", "customs_cleared"))["type"] == "ok"
        seen = await _events_until(agent, _is_status_of("S-A", "customs_cleared"))
        assert [e for e in seen if e.get("room") == "dock-b" or e.get("shipment_id") == "S-B"] == []
        assert [h["status"] for h in (await wms.shipment_get("S-B"))["history"]] == ["exception"]
    finally:
        for client in (wms, agent, bob):
            await client.close()
