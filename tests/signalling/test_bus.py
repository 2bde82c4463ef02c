"""signalling.bus: the one registry that dispatches typed events."""

from __future__ import annotations

import asyncio
import logging

import pytest

from signalling.bus import EventBus
from signalling.events import (
    Event,
    MessageStored,
    ParticipantLeft,
    RoomClosed,
    RoomCreated,
    RoomCreateFailed,
)
from signalling.messages import StoredMessage


async def test_inline_subscribers_run_inside_publish_in_order():
    bus = EventBus()
    seen: list = []
    bus.subscribe(Event, lambda e: seen.append(("first", type(e).__name__)), inline=True)
    bus.subscribe(RoomClosed, lambda e: seen.append(("second", e.room)), inline=True)
    bus.publish(RoomCreated(room="dock"))
    bus.publish(RoomClosed(room="dock", reason="x"))
    assert seen == [("first", "RoomCreated"), ("first", "RoomClosed"), ("second", "dock")]


async def test_base_types_catch_subclasses_and_exclude_leaves_some_out():
    bus = EventBus()
    seen: list = []
    bus.subscribe(RoomClosed, lambda e: seen.append(("closed", e.reason)), inline=True)
    bus.subscribe(Event, lambda e: seen.append(("all", type(e).__name__)), inline=True,
                  exclude=(MessageStored, RoomCreateFailed))
    bus.publish(RoomCreateFailed(room="dock"))
    bus.publish(MessageStored(room="dock", message=StoredMessage("dock", 1, "m", "s", "t", None, 0.0)))
    bus.publish(RoomCreated(room="dock"))
    assert seen == [("closed", "create_failed"), ("all", "RoomCreated")]
    assert bus.wants(RoomClosed) and not EventBus().wants(RoomClosed)
    with pytest.raises(TypeError):
        bus.subscribe(dict, lambda e: None)  # type: ignore[arg-type]


async def test_queued_subscribers_see_a_rooms_events_in_order_and_publish_tells_when():
    bus = EventBus()
    seen: list = []

    async def slow(event):
        await asyncio.sleep(0.01)
        seen.append(event.reason)

    bus.subscribe(RoomClosed, slow)
    futures = [bus.publish(RoomClosed(room="dock", reason=str(i))) for i in range(5)]
    assert seen == []  # nothing ran inside publish
    await futures[2]
    assert seen == ["0", "1", "2"]
    await bus.drain()
    assert seen == ["0", "1", "2", "3", "4"] and bus.pending == 0


async def test_a_stuck_subscriber_in_one_room_does_not_delay_another_room():
    bus = EventBus(timeout_s=None)
    release = asyncio.Event()
    seen: list = []

    async def handler(event):
        if event.room == "stuck":
            await release.wait()
        seen.append(event.room)

    bus.subscribe(RoomClosed, handler)
    stuck = bus.publish(RoomClosed(room="stuck", reason="x"))
    await asyncio.wait_for(bus.publish(RoomClosed(room="free", reason="x")), 1.0)
    assert seen == ["free"] and not stuck.done()
    release.set()
    await stuck
    assert seen == ["free", "stuck"]


async def test_failing_and_timed_out_subscribers_are_logged_counted_and_skipped(caplog):
    failures: list = []
    bus = EventBus(timeout_s=0.05, on_error=lambda name, event: failures.append((name, type(event).__name__)))
    seen: list = []

    async def boom(event):
        raise RuntimeError("boom")

    async def hang(event):
        await asyncio.sleep(3600)

    def inline_boom(event):
        raise ValueError("inline boom")

    bus.subscribe(RoomClosed, boom, name="boom")
    bus.subscribe(RoomClosed, hang, name="hang")
    bus.subscribe(RoomClosed, lambda e: seen.append(e.room), name="after")
    bus.subscribe(RoomClosed, inline_boom, name="inline", inline=True)
    with caplog.at_level(logging.ERROR, logger="signalling.events"):
        await bus.publish(RoomClosed(room="dock", reason="x"))
    assert seen == ["dock"]
    assert failures == [("inline", "RoomClosed"), ("boom", "RoomClosed"), ("hang", "RoomClosed")]
    assert bus.errors == 3 and "timed out" in caplog.text and "boom" in caplog.text


async def test_lanes_end_with_their_queue():
    bus = EventBus()

    async def handler(event):
        await asyncio.sleep(0)

    bus.subscribe(Event, handler)
    before = len(asyncio.all_tasks())
    for room in ("a", "b", "c"):
        bus.publish(RoomCreated(room=room))
    assert len(asyncio.all_tasks()) == before + 3
    await bus.drain()
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before and bus._lanes == {}


async def test_room_events_get_the_rooms_shipment():
    bus = EventBus(shipment_of={"dock": "S1"}.get)
    seen: list = []
    bus.subscribe(Event, lambda e: seen.append(e.shipment_id), inline=True)
    bus.publish(ParticipantLeft(room="dock", participant_id="p"))
    bus.publish(ParticipantLeft(room="other", participant_id="p"))
    bus.publish(RoomClosed(room="dock", reason="x", shipment_id="S9"))  # given: kept
    assert seen == ["S1", None, "S9"]
