"""The room message log: one suite for both backends, plus SQLite durability."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalling.roomlog import (
    AckBeyondEnd,
    InvalidMessage,
    MemoryRoomLog,
    RetentionPolicy,
    RoomLog,
    SqliteRoomLog,
    StoreClosed,
    StoredMessage,
)

REPO = Path(__file__).resolve().parents[2]
NO_RETENTION = RetentionPolicy(max_age_s=None, max_messages=None, max_bytes=None)


def make_log(kind: str, directory: Path, retention: RetentionPolicy | None = None) -> RoomLog:
    if kind == "memory":
        return MemoryRoomLog(retention)
    return SqliteRoomLog(directory / "data" / "messages.db", retention)


@pytest.fixture(params=["memory", "sqlite"])
def kind(request) -> str:
    return request.param


@pytest.fixture
async def log(kind, tmp_path):
    room_log = make_log(kind, tmp_path)
    yield room_log
    await room_log.close()


async def send(log: RoomLog, room: str, msg_id: str, payload=None, ts: float = 1000.0, sender="alice"):
    return await log.append(room, msg_id, sender, "chat", payload, ts)


# -- append, read, dedupe -------------------------------------------------------------


async def test_seq_is_gap_free_per_room(log):
    seqs_a = [(await send(log, "a", f"m{i}")).seq for i in range(5)]
    seqs_b = [(await send(log, "b", f"m{i}")).seq for i in range(3)]
    assert seqs_a == [1, 2, 3, 4, 5]
    assert seqs_b == [1, 2, 3]
    assert await log.last_seq("a") == 5
    assert await log.last_seq("b") == 3
    assert await log.last_seq("never") == 0
    assert await log.first_seq("never") == 1


async def test_message_event_matches_protocol(log):
    result = await log.append("dock-7", "m-1", "alice", "note", {"pallet": 4}, 1700000000.5)
    assert result.duplicate is False
    assert result.message.to_event() == {
        "type": "message",
        "room": "dock-7",
        "seq": 1,
        "msg_id": "m-1",
        "from": "alice",
        "topic": "note",
        "payload": {"pallet": 4},
        "ts": 1700000000500,  # milliseconds on the wire
    }
    assert (await log.read("dock-7")) == [result.message]


@pytest.mark.parametrize(
    "payload",
    [None, True, 0, -(2**63), 2**64 - 1, 1.5, "", "清关 ✓", b"\x00\xffraw", [1, [2, {"a": b"x"}]],
     {"nested": {"deep": [None, 3.25]}, "bin": b"\x01"}, {1: "int keys survive msgpack"}],
)
async def test_payload_round_trips(log, payload):
    result = await send(log, "r", "m", payload)
    assert result.message.payload == payload
    [stored] = await log.read("r")
    assert stored.payload == payload


async def test_tuple_payload_reads_back_as_list(log):
    assert (await send(log, "r", "m", (1, 2))).message.payload == [1, 2]


@pytest.mark.parametrize("payload", [object(), {1.5j}, 2**64, {"s": {1, 2}}])
async def test_unstorable_payload_is_refused_and_changes_nothing(log, payload):
    await send(log, "r", "first")
    with pytest.raises(InvalidMessage, match="payload"):
        await send(log, "r", "bad", payload)
    assert await log.last_seq("r") == 1
    assert (await send(log, "r", "bad", "fixed")).seq == 2


@pytest.mark.parametrize(
    "args, match",
    [
        (("", "m", "s", "t", 1, 1.0), "room must not be empty"),
        ((7, "m", "s", "t", 1, 1.0), "room must be a string"),
        (("r", "", "s", "t", 1, 1.0), "msg_id must not be empty"),
        (("r", b"m", "s", "t", 1, 1.0), "msg_id must be a string"),
        (("r", "m" * 257, "s", "t", 1, 1.0), "msg_id is longer than 256"),
        (("r", "m", None, "t", 1, 1.0), "sender must be a string"),
        (("r", "m", "s", 3, 1, 1.0), "topic must be a string"),
        (("r", "m", "s", "t", 1, float("nan")), "ts must be a finite number"),
        (("r", "m", "s", "t", 1, "now"), "ts must be a finite number"),
    ],
)
async def test_bad_append_arguments(log, args, match):
    with pytest.raises(InvalidMessage, match=match):
        await log.append(*args)
    assert await log.last_seq("r") == 0


async def test_same_msg_id_is_stored_once_and_answers_first_seq(log):
    first = await send(log, "r", "dup", {"v": 1})
    await send(log, "r", "other")
    again = await send(log, "r", "dup", {"v": "changed"})
    assert again.duplicate is True
    assert again.seq == first.seq == 1
    assert again.message == first.message
    assert [m.msg_id for m in await log.read("r")] == ["dup", "other"]
    assert await log.last_seq("r") == 2


async def test_msg_id_dedupe_is_per_room(log):
    assert (await send(log, "a", "same")).duplicate is False
    other = await send(log, "b", "same")
    assert (other.seq, other.duplicate) == (1, False)


async def test_read_after_seq_and_limit(log):
    for i in range(10):
        await send(log, "r", f"m{i}")
    assert [m.seq for m in await log.read("r", after_seq=7)] == [8, 9, 10]
    assert [m.seq for m in await log.read("r", after_seq=2, limit=3)] == [3, 4, 5]
    assert await log.read("r", after_seq=10) == []
    assert await log.read("r", after_seq=99) == []
    for bad in ({"limit": 0}, {"limit": 10_001}, {"after_seq": -1}, {"after_seq": 1.5}):
        with pytest.raises(InvalidMessage):
            await log.read("r", **bad)


# -- members and acks ------------------------------------------------------------------


async def test_ack_is_cumulative_and_never_moves_back(log):
    for i in range(5):
        await send(log, "r", f"m{i}")
    assert await log.cursor("r", "bob") is None
    assert await log.ack("r", "bob", 3) == 3
    assert await log.ack("r", "bob", 1) == 3
    assert await log.cursor("r", "bob") == 3
    assert await log.ack("r", "bob", 5) == 5
    assert await log.members("r") == {"bob": 5}


async def test_ack_beyond_last_seq_is_refused_and_changes_nothing(log):
    await send(log, "r", "m")
    await log.ack("r", "bob", 1)
    with pytest.raises(AckBeyondEnd, match="past the last message") as info:
        await log.ack("r", "bob", 2)
    assert isinstance(info.value, ValueError)
    with pytest.raises(AckBeyondEnd):
        await log.ack("empty-room", "carol", 1)
    assert await log.cursor("r", "bob") == 1
    assert await log.members("empty-room") == {}
    with pytest.raises(InvalidMessage):
        await log.ack("r", "bob", -1)


async def test_add_member_starts_at_last_seq_once(log):
    await send(log, "r", "m1")
    await send(log, "r", "m2")
    assert await log.add_member("r", "bob") == 2
    await send(log, "r", "m3")
    assert await log.add_member("r", "bob") == 2  # a rejoin keeps the old cursor
    assert await log.add_member("r", "carol") == 3
    await log.remove_member("r", "bob")
    assert await log.members("r") == {"carol": 3}
    await log.remove_member("r", "nobody")


# -- concurrency ----------------------------------------------------------------------


async def test_concurrent_appenders_get_unique_gap_free_seqs(log):
    tasks, per_task = 40, 25

    async def sender(k: int) -> list[int]:
        return [(await send(log, "r", f"{k}-{i}", {"k": k, "i": i})).seq for i in range(per_task)]

    results = await asyncio.gather(*(sender(k) for k in range(tasks)))
    seqs = sorted(seq for result in results for seq in result)
    assert seqs == list(range(1, tasks * per_task + 1))
    for result in results:
        assert result == sorted(result)  # one sender's messages stay in its order
    stored = await log.read("r", limit=10_000)
    assert [m.seq for m in stored] == seqs
    by_id = {m.msg_id: m for m in stored}
    for k, result in enumerate(results):
        for i, seq in enumerate(result):
            assert by_id[f"{k}-{i}"].seq == seq
            assert by_id[f"{k}-{i}"].payload == {"k": k, "i": i}


async def test_concurrent_duplicates_are_stored_once(log):
    results = await asyncio.gather(*(send(log, "r", "retry") for _ in range(30)))
    assert {r.seq for r in results} == {1}
    assert sum(not r.duplicate for r in results) == 1
    assert await log.last_seq("r") == 1


# -- retention -------------------------------------------------------------------------


async def fill(log: RoomLog, room: str, count: int, *, start_ts: float = 0.0, size: int = 0):
    for i in range(count):
        await send(log, room, f"m{i}", b"x" * size, ts=start_ts + i)


async def test_prune_by_age(kind, tmp_path):
    log = make_log(kind, tmp_path, RetentionPolicy(max_age_s=100, max_messages=None, max_bytes=None))
    await fill(log, "r", 10, start_ts=1000)  # ts 1000..1009
    assert await log.prune(now=1105.5) == {"r": 6}  # ts < 1005.5 go
    assert [m.seq for m in await log.read("r")] == [7, 8, 9, 10]
    assert await log.first_seq("r") == 7
    assert await log.prune(now=1105.5) == {}
    await log.close()


async def test_prune_by_count(kind, tmp_path):
    log = make_log(kind, tmp_path, RetentionPolicy(max_age_s=None, max_messages=3, max_bytes=None))
    await fill(log, "a", 10)
    await fill(log, "b", 2)
    assert await log.prune(now=0) == {"a": 7}
    assert [m.seq for m in await log.read("a")] == [8, 9, 10]
    assert len(await log.read("b")) == 2
    await log.close()


async def test_prune_by_bytes(kind, tmp_path):
    # Each payload is bin 8 of 100 bytes: 102 bytes once encoded.
    log = make_log(kind, tmp_path, RetentionPolicy(max_age_s=None, max_messages=None, max_bytes=350))
    await fill(log, "r", 6, size=100)
    assert await log.prune(now=0) == {"r": 3}
    assert [m.seq for m in await log.read("r")] == [4, 5, 6]
    await log.close()


async def test_prune_keeps_what_a_member_has_not_acked(kind, tmp_path):
    log = make_log(kind, tmp_path, RetentionPolicy(max_age_s=0, max_messages=0, max_bytes=0))
    await fill(log, "r", 10)
    await log.ack("r", "fast", 9)
    await log.ack("r", "slow", 4)
    assert await log.prune(now=10**9) == {"r": 4}
    assert [m.seq for m in await log.read("r")] == [5, 6, 7, 8, 9, 10]
    await log.remove_member("r", "slow")
    assert await log.prune(now=10**9) == {"r": 5}
    await log.remove_member("r", "fast")
    assert await log.prune(now=10**9) == {"r": 1}
    assert await log.read("r") == []
    # The room keeps counting after everything went.
    assert await log.last_seq("r") == 10
    assert await log.first_seq("r") == 11
    assert (await send(log, "r", "after")).seq == 11
    await log.close()


async def test_new_member_does_not_hold_back_old_messages(kind, tmp_path):
    log = make_log(kind, tmp_path, RetentionPolicy(max_age_s=None, max_messages=0, max_bytes=None))
    await fill(log, "r", 5)
    await log.add_member("r", "late")
    assert await log.prune(now=0) == {"r": 5}
    await log.close()


async def test_drop_unacked_ignores_cursors(kind, tmp_path):
    policy = RetentionPolicy(max_age_s=None, max_messages=2, max_bytes=None, drop_unacked=True)
    log = make_log(kind, tmp_path, policy)
    await fill(log, "r", 5)
    await log.ack("r", "slow", 1)
    assert await log.prune(now=0) == {"r": 3}
    await log.close()


async def test_pruned_msg_id_is_forgotten(kind, tmp_path):
    log = make_log(kind, tmp_path, RetentionPolicy(max_age_s=None, max_messages=1, max_bytes=None))
    await send(log, "r", "old")
    await send(log, "r", "new")
    await log.prune(now=0)
    assert (await send(log, "r", "new")).duplicate is True
    assert (await send(log, "r", "old")).seq == 3  # dedupe lasts as long as retention
    await log.close()


@pytest.mark.parametrize("bad", [{"max_age_s": -1}, {"max_messages": -5}, {"max_bytes": True}])
def test_retention_policy_refuses_bad_limits(bad):
    with pytest.raises(ValueError):
        RetentionPolicy(**bad)


async def test_prune_refuses_bad_now(log):
    with pytest.raises(InvalidMessage):
        await log.prune(float("inf"))


async def test_closed_log_refuses_work(kind, tmp_path):
    log = make_log(kind, tmp_path)
    await log.close()
    await log.close()
    with pytest.raises(StoreClosed):
        await send(log, "r", "m")


# -- SQLite durability -----------------------------------------------------------------


async def test_sqlite_survives_close_and_reopen(tmp_path):
    path = tmp_path / "data" / "messages.db"
    log = SqliteRoomLog(path)
    for i in range(20):
        await send(log, "r", f"m{i}", {"i": i})
    await log.ack("r", "bob", 12)
    await log.close()

    log = SqliteRoomLog(path)
    assert await log.last_seq("r") == 20
    assert [m.payload for m in await log.read("r")] == [{"i": i} for i in range(20)]
    assert await log.cursor("r", "bob") == 12
    assert (await send(log, "r", "m3")).duplicate is True
    assert (await send(log, "r", "m20")).seq == 21
    await log.close()


async def test_sqlite_files_are_private(tmp_path):
    path = tmp_path / "new-dir" / "messages.db"
    log = SqliteRoomLog(path)
    await send(log, "r", "m")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for file in path.parent.iterdir():  # the database, its WAL and shared memory
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    await log.close()


CHILD = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from signalling.roomlog import SqliteRoomLog

    async def main(path):
        log = SqliteRoomLog(path)

        async def sender(k):
            i = 0
            while True:
                result = await log.append("dock", f"{k}-{i}", "child", "t", {"k": k, "i": i}, time.time())
                os.write(1, f"{result.seq} {k}-{i}\\n".encode())
                i += 1

        await asyncio.gather(*(sender(k) for k in range(16)))

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_sqlite_answered_seqs_survive_sigkill(tmp_path):
    path = tmp_path / "crash" / "messages.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    answered: dict[int, str] = {}
    buffer = b""
    try:
        while len(answered) < 2000:
            chunk = await asyncio.to_thread(os.read, child.stdout.fileno(), 65536)
            assert chunk, "the child died before answering enough appends"
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                seq, msg_id = line.decode().split()
                answered[int(seq)] = msg_id
    finally:
        child.send_signal(signal.SIGKILL)
        rest = await asyncio.to_thread(child.stdout.read)
        child.wait()
    for line in (buffer + rest).split(b"\n")[:-1]:  # answered before it died
        seq, msg_id = line.decode().split()
        answered[int(seq)] = msg_id

    log = SqliteRoomLog(path)
    stored = await log.read("dock", limit=10_000)
    last = await log.last_seq("dock")
    assert [m.seq for m in stored] == list(range(1, last + 1))
    by_seq = {m.seq: m for m in stored}
    for seq, msg_id in answered.items():
        assert by_seq[seq].msg_id == msg_id
        k, i = map(int, msg_id.split("-"))
        assert by_seq[seq].payload == {"k": k, "i": i}
    assert len({m.msg_id for m in stored}) == len(stored)
    await log.close()


# -- property: seq and dedupe against a model ---------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.sampled_from("ab"), st.integers(0, 7)),
        st.tuples(st.just("ack"), st.sampled_from("ab"), st.integers(0, 12)),
        st.tuples(st.just("read"), st.sampled_from("ab"), st.integers(0, 12)),
    ),
    max_size=40,
)


async def run_against_model(log: RoomLog, ops) -> None:
    seq_of: dict[str, dict[int, int]] = {"a": {}, "b": {}}
    stored: dict[str, list[int]] = {"a": [], "b": []}
    cursor: dict[str, int] = {}
    for op, room, n in ops:
        if op == "send":
            result = await send(log, room, f"id{n}", n)
            if n in seq_of[room]:
                assert (result.seq, result.duplicate) == (seq_of[room][n], True)
            else:
                seq_of[room][n] = len(stored[room]) + 1
                stored[room].append(n)
                assert (result.seq, result.duplicate) == (seq_of[room][n], False)
            assert result.message.payload == stored[room][result.seq - 1]
        elif op == "ack":
            if n > len(stored[room]):
                with pytest.raises(AckBeyondEnd):
                    await log.ack(room, "m", n)
            else:
                cursor[room] = max(cursor.get(room, 0), n)
                assert await log.ack(room, "m", n) == cursor[room]
        else:
            messages = await log.read(room, after_seq=n)
            assert [m.payload for m in messages] == stored[room][n:]
            assert [m.seq for m in messages] == list(range(n + 1, len(stored[room]) + 1))
        assert await log.last_seq(room) == len(stored[room])
        assert await log.cursor(room, "m") == cursor.get(room)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_memory_log_matches_model(ops):
    async def main():
        log = MemoryRoomLog(NO_RETENTION)
        await run_against_model(log, ops)
        await log.close()

    uvloop.run(main())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_sqlite_log_matches_model(ops):
    async def main(directory):
        log = SqliteRoomLog(Path(directory) / "messages.db", NO_RETENTION)
        await run_against_model(log, ops)
        await log.close()
        reopened = SqliteRoomLog(Path(directory) / "messages.db", NO_RETENTION)
        for room in "ab":
            assert [m.seq for m in await reopened.read(room)] == list(
                range(1, await reopened.last_seq(room) + 1)
            )
        await reopened.close()

    with tempfile.TemporaryDirectory() as directory:
        uvloop.run(main(directory))


def test_stored_message_is_frozen():
    message = StoredMessage("r", 1, "m", "s", "t", None, 0.0)
    with pytest.raises(AttributeError):
        message.seq = 2  # type: ignore[misc]
