"""plugins.webhooks.plugin: events from the bus and messages from a log follower, delivered."""

from __future__ import annotations

import json

import pytest

from plugins.webhooks import (
    WebhookError,
    WebhooksPlugin,
    message_event_id,
    verify_signature,
)
from signalling.events import Alert, MessageStored, ParticipantJoined, RoomCreated
from signalling.hooks import HookRegistry
from signalling.messages import StoredMessage

from .support import SECRET


async def test_plugin_delivers_published_events(ctx, receiver):
    plugin = WebhooksPlugin(
        endpoints=[{"url": receiver.url, "secret": SECRET, "events": ["alert", "shipment_status"]}],
        retry={"initial_delay_s": 0.01},
    )
    hooks = HookRegistry([plugin])
    await hooks.start(ctx)
    await ctx.events.publish(RoomCreated(room="dock-1"))  # plugins-only: never a webhook
    await ctx.events.publish(ParticipantJoined(room="dock-1", participant={}))  # filtered out
    await ctx.events.publish(Alert(room="dock-1", shipment_id="S1", severity="warning",
                                   text="shipment S1: import customs hold", ts=1.0))
    headers, body, _ = await receiver.next()
    assert headers["Dockcast-Event-Type"] == "alert"
    verify_signature(SECRET, headers["Dockcast-Signature"], body)
    envelope = json.loads(body)
    assert (envelope["room"], envelope["shipment_id"], envelope["event"]["text"]) == (
        "dock-1", "S1", "shipment S1: import customs hold")
    assert (ctx.data_dir / "webhooks.db").exists()
    await hooks.stop()
    assert receiver.requests.empty()


async def test_plugin_follows_room_messages_and_a_second_handover_is_one_event(ctx, receiver):
    plugin = WebhooksPlugin(endpoints=[{"url": receiver.url, "secret": SECRET}],
                            retry={"initial_delay_s": 0.01})
    hooks = HookRegistry([plugin])
    await hooks.start(ctx)
    follow = ctx.followers["webhooks"]
    event = MessageStored(room="dock-1", shipment_id="S1",
                          message=StoredMessage("dock-1", 7, "m-7", "alice", "chat", {"n": 1}, 2.0))
    await follow(event)
    await follow(event)  # handed over again after a crash: same id, logged once
    headers, body, _ = await receiver.next()
    assert headers["Dockcast-Event-Type"] == "message"
    assert headers["Dockcast-Event-Id"] == message_event_id(event)
    envelope = json.loads(body)
    assert (envelope["event"]["seq"], envelope["event"]["payload"], envelope["shipment_id"]) == (7, {"n": 1}, "S1")
    assert len(await plugin.dispatcher.deliveries()) == 1
    await hooks.stop()


async def test_plugin_without_endpoints_does_nothing(ctx):
    hooks = HookRegistry([WebhooksPlugin()])
    await hooks.start(ctx)
    await ctx.events.publish(Alert(room="dock-1", severity="warning", text="x"))
    await hooks.stop()
    assert not (ctx.data_dir / "webhooks.db").exists() and ctx.followers == {}


def test_plugin_refuses_bad_retry_options():
    with pytest.raises(WebhookError, match="bad retry settings"):
        WebhooksPlugin(retry={"tries": 3})
