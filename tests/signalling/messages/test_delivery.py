"""signalling.messages.delivery: send/ack on the room log, live delivery in seq order, resume."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from signalling.errors import BadRequest
from signalling.bus import EventBus
from signalling.events import MessageStored
from signalling.membership import LocalMembership
from signalling.messages import AckBeyondEnd, MemoryRoomLog, RetentionPolicy, SqliteRoomLog
from signalling.messages import delivery as messaging
from signalling.messages.delivery import Messaging
from signalling.schema import validate

from .support import Conn, join

ROOM = "dock-1"
_ids = itertools.count(1)


def send_request(msg_id: str | None = None, payload: Any = "hi", topic: str = "chat"):
    return validate({"type": "send", "id": next(_ids), "topic": topic, "payload": payload,
                     "msg_id": msg_id or f"m{next(_ids)}"})


def service(log, bus: EventBus | None = None) -> Messaging:
    return Messaging(log, LocalMembership(), bus=bus)


def leave(m: Messaging, conn: Conn) -> None:
    m.membership.leave(conn)
    m.left(conn)


def close_room(m: Messaging, room: str = ROOM) -> None:
    m.membership.close_room(room)
    m.room_closed(room)


async def settle(m: Messaging, *conns: Conn) -> None:
    """Wait until no replay of ``conns`` is running."""
    for _ in range(500):
        if not any(m.replaying(c) for c in conns):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("replay did not finish")


class Paced(Conn):
    """A connection whose send queue holds ``backlog`` messages; counts the looks at it."""

    backlog = 0
    looked = 0

    @property
    def queued_messages(self) -> int:
        self.looked += 1
        return self.backlog

    @queued_messages.setter
    def queued_messages(self, value: int) -> None:
        self.backlog = value


class YieldingLog(MemoryRoomLog):
    """The memory log, but reads and appends let other tasks run, as a real store does:
    live sends then interleave with a replay."""

    async def _read(self, room, after_seq, limit):
        await asyncio.sleep(0.001)
        return await super()._read(room, after_seq, limit)

    async def _append(self, *args):
        await asyncio.sleep(0)
        return await super()._append(*args)


async def sender_with(m: Messaging, count: int) -> Conn:
    """alice, in the room, after sending ``count`` messages."""
    alice = Conn("alice")
    await join(m, alice)
    for _ in range(count):
        await m.on_send(alice, send_request())
    return alice


@pytest.fixture
def stored() -> list:
    return []


@pytest.fixture
async def m(stored):
    bus = EventBus()
    bus.subscribe(MessageStored, lambda event: stored.append(event.message.seq), inline=True)
    delivery = service(YieldingLog(), bus)
    yield delivery
    await delivery.close()


async def test_concurrent_senders_every_member_gets_every_seq_in_order(tmp_path):
    delivery = service(SqliteRoomLog(tmp_path / "messages.db"))
    members = [Conn(f"member-{i}") for i in range(3)]
    try:
        for conn in members:
            assert await join(delivery, conn) == 0
        replies = await asyncio.gather(*(delivery.on_send(members[i % 3], send_request(f"x{i}"))
                                         for i in range(300)))
        assert sorted(r["seq"] for r in replies) == list(range(1, 301))
        for conn in members:  # the sender too
            assert conn.seqs() == list(range(1, 301))
            assert {e["msg_id"] for e in conn.events} == {f"x{i}" for i in range(300)}
        assert replies[7] == {"type": "sent", "seq": replies[7]["seq"], "msg_id": "x7"}
    finally:
        await delivery.close()


async def test_same_msg_id_is_stored_and_delivered_once(m, stored):
    alice, bob = Conn("alice"), Conn("bob")
    await join(m, alice)
    await join(m, bob)
    first = await m.on_send(alice, send_request("retry-1", {"n": 1}))
    again = await m.on_send(alice, send_request("retry-1", {"n": 1}))
    assert first["seq"] == again["seq"] == 1
    assert bob.seqs() == [1] and alice.seqs() == [1]
    assert stored == [1]
    assert (m.stored, m.duplicates) == (1, 1)  # what /metrics reports
    event = bob.events[0]
    assert (event["from"], event["topic"], event["payload"], event["room"]) == ("alice", "chat", {"n": 1}, ROOM)


async def test_same_msg_id_from_another_sender_is_its_own_message(m, stored):
    alice, bob = Conn("alice"), Conn("bob")
    await join(m, alice)
    await join(m, bob)
    first = await m.on_send(alice, send_request("scan-1", {"by": "alice"}))
    theirs = await m.on_send(bob, send_request("scan-1", {"by": "bob"}))
    assert (first["seq"], theirs["seq"]) == (1, 2)
    assert alice.seqs() == bob.seqs() == [1, 2]
    assert [(e["from"], e["payload"]) for e in alice.events] == [("alice", {"by": "alice"}),
                                                                  ("bob", {"by": "bob"})]
    assert stored == [1, 2]
    assert (m.stored, m.duplicates) == (2, 0)


async def test_join_reports_last_seq_and_delivers_only_newer(m):
    alice = await sender_with(m, 5)
    late = Conn("late")
    assert await join(m, late) == 5
    await m.on_send(alice, send_request())
    assert late.seqs() == [6]


async def test_resume_replays_after_last_seq_before_live_messages(m, monkeypatch):
    monkeypatch.setattr(messaging, "REPLAY_PAGE", 4)
    alice = await sender_with(m, 10)
    back = Conn("bob", resume={"session_id": "old", "last_seq": 3})
    assert await join(m, back) == 10
    # live messages while the replay runs: none twice, none skipped, all in order
    sends = [asyncio.ensure_future(m.on_send(alice, send_request())) for _ in range(10)]
    await asyncio.gather(*sends)
    await settle(m, back)
    await m.on_send(alice, send_request())
    assert back.seqs() == list(range(4, 22))


async def test_resume_only_on_the_first_join(m):
    alice = await sender_with(m, 3)
    bob = Conn("bob", resume={"session_id": "s", "last_seq": 1})
    await join(m, bob)
    await settle(m, bob)
    assert bob.seqs() == [2, 3]
    leave(m, bob)
    await join(m, bob)
    await settle(m, bob)
    assert bob.seqs() == [2, 3]  # not replayed again


async def test_resume_past_the_end_is_clipped(m):
    alice = await sender_with(m, 1)
    bob = Conn("bob", resume={"session_id": "s", "last_seq": 50})
    assert await join(m, bob) == 1
    await m.on_send(alice, send_request())
    assert bob.seqs() == [2]


async def test_replay_paces_itself_on_the_send_queue(m, monkeypatch):
    monkeypatch.setattr(messaging, "REPLAY_PAGE", 5)
    alice = await sender_with(m, 20)
    slow = Paced("slow", resume={"session_id": "s", "last_seq": 0})
    slow.backlog = messaging.REPLAY_QUEUE_LOW + 1
    await join(m, slow)
    # the replay sent one page, then keeps looking at the send queue instead of going on
    for _ in range(500):
        if slow.looked >= 5:
            break
        await asyncio.sleep(0.005)
    assert slow.seqs() == [1, 2, 3, 4, 5] and m.replaying(slow)
    slow.backlog = 0
    await settle(m, slow)
    assert slow.seqs() == list(range(1, 21))


async def test_replay_skips_what_retention_dropped(tmp_path):
    log = MemoryRoomLog(RetentionPolicy(max_age_s=None, max_messages=3, max_bytes=None,
                                        drop_unacked=True))
    delivery = service(log)
    alice = await sender_with(delivery, 10)
    await delivery.prune(0.0)
    back = Conn("bob", resume={"session_id": "s", "last_seq": 0})
    await join(delivery, back)
    await settle(delivery, back)
    assert back.seqs() == [8, 9, 10]
    await delivery.on_send(alice, send_request())
    assert back.seqs() == [8, 9, 10, 11]
    await delivery.close()


async def test_replay_ends_when_everything_after_last_seq_was_dropped():
    log = YieldingLog(RetentionPolicy(max_age_s=None, max_messages=0, max_bytes=None,
                                      drop_unacked=True))
    delivery = service(log)
    alice = await sender_with(delivery, 10)
    assert await delivery.prune(0.0) == {ROOM: 10}
    back = Conn("bob", resume={"session_id": "s", "last_seq": 2})
    await join(delivery, back)
    await settle(delivery, back)
    await delivery.on_send(alice, send_request())
    assert back.seqs() == [11]
    await delivery.close()


async def test_a_gap_in_live_delivery_is_filled_from_the_log(m):
    alice, bob = Conn("alice"), Conn("bob")
    await join(m, alice)
    await join(m, bob)
    # a message stored behind Messaging's back (as another node would), then a live one
    await m.log.append(ROOM, "elsewhere", "carol", "chat", "x", 0.0)
    result = await m.log.append(ROOM, "live", "carol", "chat", "y", 0.0)
    m._deliver(result.message)
    await settle(m, bob)
    assert bob.seqs() == [1, 2]


async def test_left_and_closed_rooms_get_nothing(m):
    alice, bob = Conn("alice"), Conn("bob")
    await join(m, alice)
    await join(m, bob)
    leave(m, bob)
    await m.on_send(alice, send_request())
    assert bob.seqs() == []
    close_room(m)
    with pytest.raises(BadRequest):
        await m.on_send(alice, send_request())
    assert await m.log.last_seq(ROOM) == 1


async def test_ack_moves_the_cursor_and_refuses_past_the_end(m):
    alice = await sender_with(m, 3)
    assert await m.on_ack(alice, validate({"type": "ack", "seq": 2})) is None
    with pytest.raises(AckBeyondEnd) as refused:
        await m.on_ack(alice, validate({"type": "ack", "seq": 9}))
    assert refused.value.code == "bad_request"
    assert await m.log.cursor(ROOM, "alice") == 2
    await m.remove_member(ROOM, "alice")
    assert await m.log.cursor(ROOM, "alice") is None


async def test_a_failed_replay_closes_the_connection(m):
    class Broken(MemoryRoomLog):
        async def _read(self, room, after_seq, limit):
            raise OSError("disk gone")

    delivery = service(Broken())
    await sender_with(delivery, 1)
    bob = Conn("bob", resume={"session_id": "s", "last_seq": 0})
    await join(delivery, bob)
    for _ in range(100):
        if bob.closed:
            break
        await asyncio.sleep(0.005)
    assert bob.closed  # it resumes again rather than stalling


async def test_a_plugin_message_is_stored_and_delivered_like_a_members(m, stored):
    alice = Conn("alice")
    await join(m, alice)
    await m.on_send(alice, send_request("q-1", {"text": "where is it?"}, "assistant.ask"))
    answer = await m.send(ROOM, "assistant", "assistant.answer", {"text": "here"}, "answer-1")
    again = await m.send(ROOM, "assistant", "assistant.answer", {"text": "here"}, "answer-1")
    assert (answer.seq, answer.sender, answer.topic) == (2, "assistant", "assistant.answer")
    assert again == answer  # a retried plugin send is stored and delivered once
    assert alice.seqs() == [1, 2] and stored == [1, 2]
    assert (alice.events[1]["from"], alice.events[1]["payload"]) == ("assistant", {"text": "here"})
    assert (m.stored, m.duplicates) == (2, 1)
