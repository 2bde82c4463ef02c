"""Helpers shared by the room log tests: build a log of any backend, send, fill, and
a model of seq and dedupe that any backend must match."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import strategies as st
from redis_server import unique_prefix

from signalling.messages import (
    AckBeyondEnd,
    MemoryRoomLog,
    RedisRoomLog,
    RetentionPolicy,
    RoomLog,
    SqliteRoomLog,
)

REPO = Path(__file__).resolve().parents[3]
DATA = Path(__file__).resolve().parent / "data"
KINDS = ("memory", "sqlite", "redis")
# The session's redis-server (tests/redis_server.py), set by the ``kind`` fixture the
# first time a test runs on Redis; each log gets a key prefix of its own.
redis_url: str | None = None
NO_RETENTION = RetentionPolicy(max_age_s=None, max_messages=None, max_bytes=None)


def make_log(kind: str, directory: Path, retention: RetentionPolicy | None = None) -> RoomLog:
    if kind == "memory":
        return MemoryRoomLog(retention)
    if kind == "redis":
        assert redis_url is not None, "the kind fixture sets redis_url"
        return RedisRoomLog(redis_url, retention, key_prefix=unique_prefix("roomlog"))
    return SqliteRoomLog(directory / "data" / "messages.db", retention)


async def send(log: RoomLog, room: str, msg_id: str, payload=None, ts: float = 1000.0, sender="alice"):
    return await log.append(room, msg_id, sender, "chat", payload, ts)


async def fill(log: RoomLog, room: str, count: int, *, start_ts: float = 0.0, size: int = 0):
    for i in range(count):
        await send(log, room, f"m{i}", b"x" * size, ts=start_ts + i)


# -- a model of seq, dedupe and cumulative acks ------------------------------------------

operations = st.lists(
    st.one_of(
        # send (room, msg_id number, sender)
        st.tuples(st.just("send"), st.sampled_from("ab"), st.integers(0, 7), st.sampled_from(("alice", "bob"))),
        st.tuples(st.just("ack"), st.sampled_from("ab"), st.integers(0, 12), st.just("")),
        st.tuples(st.just("read"), st.sampled_from("ab"), st.integers(0, 12), st.just("")),
    ),
    max_size=40,
)


async def run_against_model(log: RoomLog, ops) -> None:
    """The model: a msg_id is deduped per (room, sender); each room's seq is gap-free."""
    seq_of: dict[str, dict[tuple[str, int], int]] = {"a": {}, "b": {}}
    stored: dict[str, list[tuple[str, int]]] = {"a": [], "b": []}
    cursor: dict[str, int] = {}
    for op, room, n, sender in ops:
        if op == "send":
            key = (sender, n)
            result = await send(log, room, f"id{n}", n, sender=sender)
            if key in seq_of[room]:
                assert (result.seq, result.duplicate) == (seq_of[room][key], True)
            else:
                seq_of[room][key] = len(stored[room]) + 1
                stored[room].append(key)
                assert (result.seq, result.duplicate) == (seq_of[room][key], False)
            assert (result.message.sender, result.message.payload) == stored[room][result.seq - 1]
        elif op == "ack":
            if n > len(stored[room]):
                with pytest.raises(AckBeyondEnd):
                    await log.ack(room, "m", n)
            else:
                cursor[room] = max(cursor.get(room, 0), n)
                assert await log.ack(room, "m", n) == cursor[room]
        else:
            messages = await log.read(room, after_seq=n)
            assert [(m.sender, m.payload) for m in messages] == stored[room][n:]
            assert [m.seq for m in messages] == list(range(n + 1, len(stored[room]) + 1))
        assert await log.last_seq(room) == len(stored[room])
        assert await log.cursor(room, "m") == cursor.get(room)


class Conn:
    """What the delivery uses of a server Connection, recording what it is sent."""

    def __init__(self, identity: str, resume: dict | None = None) -> None:
        self.identity = identity
        self.resume = resume
        self.data: dict = {}
        self.events: list[dict] = []
        self.queued_messages = 0
        self.closed = False

    def send_event(self, msg: dict) -> bool:
        self.events.append(msg)
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = True

    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events if e["type"] == "message"]


async def join(delivery, conn: Conn, room: str = "dock-1", shipment_id: str | None = None) -> int:
    """``conn`` joins ``room`` the way the node does it: cursor first, then membership
    and delivery with no await between."""
    from signalling.membership import RoomRecord

    logged = await delivery.prepare_join(room, conn.identity)
    delivery.membership.open_room(RoomRecord(room, shipment_id=shipment_id))
    delivery.membership.join(conn, room, "PA_" + conn.identity, conn.identity)
    return delivery.joined(conn, room, logged)

