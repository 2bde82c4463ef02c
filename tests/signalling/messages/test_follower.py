"""signalling.messages.follower: slow consumers follow the log from their own cursor."""

from __future__ import annotations

import asyncio

import pytest

from signalling.bus import EventBus
from signalling.events import MessageStored
from signalling.membership import LocalMembership
from signalling.messages import MemoryRoomLog, SqliteRoomLog
from signalling.messages.delivery import Messaging
from signalling.messages.follower import LogFollower
from signalling.schema import validate

from .support import Conn, join


def send(n: int):
    return validate({"type": "send", "id": n, "topic": "chat", "payload": n, "msg_id": f"m{n}"})


async def test_a_stuck_follower_never_delays_sent_nor_the_members():
    log = MemoryRoomLog()
    release = asyncio.Event()
    handled: list[tuple[str, int]] = []

    async def handler(event: MessageStored) -> None:
        await release.wait()
        handled.append((event.room, event.message.seq))

    membership = LocalMembership()
    follower = LogFollower(log, "webhooks", handler, shipment_of=membership.shipment_of)
    delivery = Messaging(log, membership, followers=[follower])
    alice = Conn("alice")
    await join(delivery, alice)
    replies = [await asyncio.wait_for(delivery.on_send(alice, send(i)), 1.0) for i in range(1, 6)]
    assert [r["seq"] for r in replies] == [1, 2, 3, 4, 5]
    assert [e["seq"] for e in alice.events] == [1, 2, 3, 4, 5]
    assert handled == [] and follower.busy
    release.set()
    await follower.wait_idle()
    assert handled == [("dock-1", s) for s in range(1, 6)]
    assert (await log.follower_cursors("webhooks")) == {"dock-1": (5, 5)}
    await follower.stop()


async def test_a_bus_subscriber_that_hangs_never_delays_sent():
    log = MemoryRoomLog()
    bus = EventBus(timeout_s=None)
    hang = asyncio.Event()

    async def stuck(event):
        await hang.wait()

    bus.subscribe(MessageStored, stuck, name="stuck")
    delivery = Messaging(log, LocalMembership(), bus=bus)
    alice = Conn("alice")
    await join(delivery, alice)
    reply = await asyncio.wait_for(delivery.on_send(alice, send(1)), 1.0)
    assert reply["seq"] == 1 and bus.pending == 0  # the one handled is in flight
    hang.set()
    await bus.drain()


async def test_one_stuck_room_does_not_hold_back_another():
    log = MemoryRoomLog()
    seen: list[str] = []
    release = asyncio.Event()

    async def handler(event: MessageStored) -> None:
        if event.room == "stuck":
            await release.wait()
        seen.append(event.room)

    follower = LogFollower(log, "audit", handler)
    delivery = Messaging(log, LocalMembership(), followers=[follower])
    a, b = Conn("a"), Conn("b")
    await join(delivery, a, "stuck")
    await join(delivery, b, "free")
    await delivery.on_send(a, send(1))
    await delivery.on_send(b, send(2))
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.005)
    assert seen == ["free"]
    release.set()
    await follower.wait_idle()
    assert seen == ["free", "stuck"]


async def test_a_failing_handler_is_retried_until_it_succeeds_and_nothing_is_skipped():
    log = MemoryRoomLog()
    attempts: list[int] = []

    async def flaky(event: MessageStored) -> None:
        attempts.append(event.message.seq)
        if len(attempts) < 3:
            raise OSError("receiver store down")

    follower = LogFollower(log, "webhooks", flaky, retry_s=0.01)
    delivery = Messaging(log, LocalMembership(), followers=[follower])
    alice = Conn("alice")
    await join(delivery, alice)
    await delivery.on_send(alice, send(1))
    await delivery.on_send(alice, send(2))
    await asyncio.wait_for(follower.wait_idle(), 2.0)
    assert attempts == [1, 1, 1, 2] and follower.failures == 2 and follower.handled == 2


async def test_what_was_not_handled_before_a_stop_is_handed_over_at_the_next_start(tmp_path):
    path = tmp_path / "messages.db"
    log = SqliteRoomLog(path)
    first: list[int] = []

    async def slow(event: MessageStored) -> None:
        await asyncio.sleep(3600)

    follower = LogFollower(log, "webhooks", slow)
    delivery = Messaging(log, LocalMembership(), followers=[follower])
    alice = Conn("alice")
    await join(delivery, alice)
    for i in range(1, 4):
        await delivery.on_send(alice, send(i))
    await follower.stop()  # as a node stops (or dies) with the handler stuck
    await delivery.close()

    log = SqliteRoomLog(path)
    again: list[tuple[int, str | None]] = []

    async def record(event: MessageStored) -> None:
        again.append((event.message.seq, event.shipment_id))

    follower = LogFollower(log, "webhooks", record, shipment_of={"dock-1": "S1"}.get)
    await follower.start()
    await asyncio.wait_for(follower.wait_idle(), 2.0)
    assert first == [] and again == [(1, "S1"), (2, "S1"), (3, "S1")]
    await log.close()


async def test_a_new_follower_starts_at_the_rooms_end():
    log = MemoryRoomLog()
    await log.append("dock-1", "old", "alice", "chat", "before", 0.0)
    seen: list[int] = []

    async def handler(event):
        seen.append(event.message.seq)

    follower = LogFollower(log, "late", handler)
    await follower.track("dock-1")
    await follower.start()
    await log.append("dock-1", "new", "alice", "chat", "after", 0.0)
    follower.notify("dock-1")
    await follower.wait_idle()
    assert seen == [2]


@pytest.mark.parametrize("page", [1, 2, 256])
async def test_pages_are_handled_in_seq_order(page):
    log = MemoryRoomLog()
    seen: list[int] = []

    async def handler(event):
        seen.append(event.message.seq)

    follower = LogFollower(log, "f", handler, page=page)
    await follower.track("dock-1")
    for i in range(5):
        await log.append("dock-1", f"m{i}", "alice", "chat", i, 0.0)
        follower.notify("dock-1")
    await follower.wait_idle()
    assert seen == [1, 2, 3, 4, 5]
