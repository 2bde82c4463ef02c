"""Shipment records the assistant tests ask about, and asking through the log follower.

Records are made through the shipments plugin's own routes (validated by the real
schema) and each is bound to a room ``room-<shipment_id>``; ``room-free`` is bound to
none. `ask` stores the question in the context's room log like a member's ``send``
and hands it to the assistant's follower, as the node does.
"""

from __future__ import annotations

import itertools
from typing import Any

from signalling.events import Alert, MessageStored

RECORDS: dict[str, dict[str, Any]] = {
    "S-HOLD": {"fields": {"tracking_no": "SF1234567890", "carrier": "SF Express",
                          "origin": "Shenzhen, CN", "destination": "Los Angeles, US",
                          "eta": "2026-05-10T09:00:00-07:00"},
               "events": [("picked_up", None), ("export_customs", None), ("in_transit", None),
                          ("import_customs_hold", "commercial invoice missing")]},
    "S-NOETA": {"fields": {"tracking_no": "1Z999AA10123456784", "carrier": "UPS"},
                "events": [("picked_up", None), ("in_transit", None)]},
    "S-EXC": {"fields": {"carrier": "DHL", "eta": "2026-05-20"},
              "events": [("picked_up", None), ("in_transit", None),
                         ("exception", "parcel damaged in transit")]},
    "S-RET": {"fields": {"carrier": "SF Express"},
              "events": [("delivered", None), ("return_requested", None),
                         ("return_received", "box opened, item inside")]},
    "S-NEW": {"fields": {}, "events": []},
    "S-CLEAR": {"fields": {"carrier": "UPS", "eta": "2026-05-12", "stage": "last mile"},
                "events": [("in_transit", None), ("customs_cleared", None),
                           ("warehouse_received", None)]},
}
UNBOUND_ROOM = "room-free"
_ids = itertools.count(1)


def room_of(shipment_id: str | None) -> str:
    return UNBOUND_ROOM if shipment_id is None else f"room-{shipment_id}"


async def make_records(ctx, hooks) -> None:
    for sid, record in RECORDS.items():
        await ctx.request("shipment.upsert", shipment_id=sid, **record["fields"])
        for status, detail in record["events"]:
            fields = {} if detail is None else {"detail": detail}
            await ctx.request("shipment.event", shipment_id=sid, status=status, **fields)
        await hooks.room_create_check(room_of(sid), {"room": room_of(sid), "shipment_id": sid})


async def ask(ctx, shipment_id: str | None, payload: Any, sender: str = "alice") -> dict:
    """Ask in the room of ``shipment_id``; return the ``assistant.answer`` message
    (``{"seq", "question_seq", "from", "payload"}``)."""
    room = room_of(shipment_id)
    seq = await ctx.send_message(room, "assistant.ask", payload, sender=sender,
                                 msg_id=f"q{next(_ids)}")
    [question] = await ctx.room_log.read(room, seq - 1, 1)
    await ctx.followers["assistant"](MessageStored(room=room, message=question,
                                                   shipment_id=shipment_id))
    answers = [m for m in ctx.messages if m.topic == "assistant.answer" and m.room == room
               and m.payload["in_reply_to"] == seq]
    assert len(answers) == 1, f"expected one answer to seq {seq}, got {answers}"
    [answer] = answers
    return {"seq": answer.seq, "question_seq": seq, "from": answer.sender, "payload": answer.payload}


def assistant_alerts(ctx) -> list[Alert]:
    return [e for e in ctx.published if isinstance(e, Alert) and e.text.startswith("assistant:")]
