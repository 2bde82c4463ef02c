"""Bad input on every operation of issue 4, through a real node: the documented error,
and nothing changed (rooms, participants, shipments, the message log, watchers)."""

from __future__ import annotations

import asyncio
import json

import pytest

from signalling.client import DockcastClient, ServerError

pytestmark = [pytest.mark.timeout(120)]

LONG = "x" * 300
# (who asks, request type, fields, the error code PROTOCOL.md documents)
CASES = [
    # room messages
    ("member", "send", {"topic": "t", "payload": 1}, "bad_request"),  # no msg_id
    ("member", "send", {"payload": 1, "msg_id": "a"}, "bad_request"),  # no topic
    ("member", "send", {"topic": "t", "payload": 1, "msg_id": LONG}, "bad_request"),
    ("member", "send", {"topic": "t", "payload": "y" * 70_000, "msg_id": "big"}, "too_large"),
    ("viewer", "send", {"topic": "t", "payload": 1, "msg_id": "v"}, "forbidden"),
    ("outsider", "send", {"topic": "t", "payload": 1, "msg_id": "o"}, "bad_request"),  # not joined
    ("member", "ack", {"seq": 999}, "bad_request"),  # past the last message
    ("member", "ack", {"seq": -1}, "bad_request"),
    ("member", "ack", {"seq": "1"}, "bad_request"),
    # rooms
    ("member", "room.create", {"room": "dock-3"}, "forbidden"),
    ("admin", "room.create", {}, "bad_request"),
    ("admin", "room.create", {"room": LONG}, "bad_request"),
    ("admin", "room.create", {"room": "dock-3", "shipment_id": "bad id!"}, "bad_request"),
    ("admin", "room.create", {"room": "dock-3", "metadata": "not a map"}, "bad_request"),
    ("admin", "room.create", {"room": "dock-3", "record": "yes"}, "bad_request"),
    ("admin", "room.create", {"room": "dock-1"}, "conflict"),  # open already
    ("admin", "room.create", {"room": "dock-3", "shipment_id": "S-1"}, "conflict"),  # S-1 has dock-1
    ("roomadmin", "room.create", {"room": "dock-3"}, "forbidden"),  # token for dock-1 only
    ("member", "room.list", {}, "forbidden"),
    ("member", "room.close", {"room": "dock-1"}, "forbidden"),
    ("admin", "room.close", {}, "bad_request"),
    ("admin", "room.close", {"room": "no-such-room"}, "not_found"),
    ("roomadmin", "room.close", {"room": "dock-2"}, "forbidden"),
    ("member", "participant.remove", {"room": "dock-1", "participant_id": "P"}, "forbidden"),
    ("admin", "participant.remove", {"room": "dock-1"}, "bad_request"),
    ("admin", "participant.remove", {"room": "no-such-room", "participant_id": "P"}, "not_found"),
    ("admin", "participant.remove", {"room": "dock-1", "participant_id": "PA_nobody"}, "not_found"),
    # watchers
    ("member", "events.subscribe", {"rooms": ["dock-1"]}, "forbidden"),
    ("admin", "events.subscribe", {}, "bad_request"),
    ("admin", "events.subscribe", {"rooms": [], "shipment_ids": []}, "bad_request"),
    ("admin", "events.subscribe", {"rooms": "dock-1"}, "bad_request"),
    ("admin", "events.subscribe", {"rooms": [f"r{i}" for i in range(1001)]}, "bad_request"),
    ("roomadmin", "events.subscribe", {"rooms": ["dock-2"]}, "forbidden"),
    # shipments
    ("member", "shipment.event", {"shipment_id": "S-1", "status": "delivered"}, "forbidden"),
    ("admin", "shipment.event", {"shipment_id": "S-404", "status": "delivered"}, "not_found"),
    ("admin", "shipment.event", {"shipment_id": "S-1"}, "bad_request"),
    ("admin", "shipment.event", {"shipment_id": "S-1", "status": "Not A Status"}, "bad_request"),
    ("admin", "shipment.event", {"shipment_id": "S-1", "status": "delivered", "severity": "loud"},
     "bad_request"),
    ("admin", "shipment.event", {"shipment_id": "S-1", "status": "delivered", "detail": "d" * 3000},
     "bad_request"),
    ("member", "shipment.upsert", {"shipment_id": "S-1", "carrier": "DHL"}, "forbidden"),
    ("admin", "shipment.upsert", {"shipment_id": "S-1", "eta": "next tuesday"}, "bad_request"),
    ("admin", "shipment.upsert", {"shipment_id": "S-1", "tracking_no": "1" * 100}, "bad_request"),
    ("admin", "shipment.upsert", {"carrier": "DHL"}, "bad_request"),
    ("member", "shipment.get", {"shipment_id": "S-1"}, "forbidden"),
    ("admin", "shipment.get", {"shipment_id": "S-404"}, "not_found"),
]


async def _state(admin: DockcastClient) -> dict:
    rooms = (await admin.room_list())["rooms"]
    for room in rooms:
        room["participants"] = sorted(p["identity"] for p in room["participants"])
    shipments = {}
    for shipment_id in ("S-1", "S-2"):
        details = await admin.shipment_get(shipment_id)
        shipments[shipment_id] = {k: details[k] for k in ("carrier", "eta", "tracking_no", "status",
                                                          "history", "rooms", "updated_at")}
    return {"rooms": rooms, "shipments": shipments}


async def test_bad_input_gets_the_documented_error_and_changes_nothing(node):
    tokens = {
        "admin": node.token("wms", None, ("admin",)),
        "roomadmin": node.token("dock-1-desk", "dock-1", ("admin",)),
        "member": node.token("alice", "dock-1", ("message",)),
        "viewer": node.token("vera", "dock-1", ("subscribe",)),
        "outsider": node.token("olga", "dock-1", ("message",)),
    }
    admin = await DockcastClient.connect(node.url, tokens["admin"])
    alice = await DockcastClient.connect(node.url, tokens["member"])
    watcher = await DockcastClient.connect(node.url, tokens["admin"])
    try:
        await admin.shipment_upsert("S-1", carrier="UPS", eta="2026-05-10")
        await admin.shipment_upsert("S-2", carrier="DHL")
        await admin.room_create("dock-1", shipment_id="S-1")
        await admin.room_create("dock-2")
        await admin.shipment_event("S-1", "picked_up")
        await alice.join("dock-1")
        assert (await alice.send("chat", "first", "m-1"))["seq"] == 1
        await watcher.events_subscribe(rooms=["dock-1", "dock-2"], shipment_ids=["S-1", "S-2"])
        before = await _state(admin)

        for who, msg_type, fields, code in CASES:
            # a fresh connection per case: a burst of rejections would close one (4008)
            async with await DockcastClient.connect(node.url, tokens[who]) as client:
                if who in ("member", "viewer"):
                    await client.join("dock-1")
                with pytest.raises(ServerError) as refused:
                    await client.request(msg_type, **fields)
                assert refused.value.code == code, (who, msg_type, fields, refused.value)

        # a frame over the limit is refused before it is decoded (no id to answer)
        async with await DockcastClient.connect(node.url, tokens["admin"]) as client:
            huge = {"type": "room.create", "id": 1, "room": "dock-3", "metadata": {"x": "y" * 300_000}}
            await client.send_raw(json.dumps(huge))
            error = await client.next_event("error")
            assert error["code"] == "too_large" and "id" not in error

        after = await _state(admin)
        assert after == before
        # the message log has no gap and no trace of the refused sends
        assert (await alice.send("chat", "second", "m-2"))["seq"] == 2
        # the watcher saw no event from any refused request (only the joins and leaves):
        # message 2 is the last thing that happened, so what came before it is all there
        assert (await watcher.next_event("message"))["seq"] == 2
        kinds = {e["type"] for e in watcher._events}
        assert kinds <= {"participant_joined", "participant_left"}, kinds
    finally:
        for client in (admin, alice, watcher):
            await client.close()
