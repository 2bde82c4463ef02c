"""RedisRoomLog specifics (the shared suite runs on it too, as kind "redis"): several
nodes appending to one room, Redis stopped, frozen, killed and restarted, the model and
the memory backend matched, the keys it leaves, its configuration check."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest
import redis.asyncio as aioredis
import uvloop
from hypothesis import HealthCheck, given, settings
from redis_server import RedisServer, unique_prefix

from signalling.messages import (
    MemoryRoomLog,
    RedisRoomLog,
    RetentionPolicy,
    StoreUnavailable,
)

from .support import NO_RETENTION, REPO, fill, operations, run_against_model, send
from .test_retention import apply, policies, state, steps

# Every wait below is bounded: a call to Redis that hangs fails the test.
BOUND_S = 10.0


@pytest.fixture
def url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def own_server(tmp_path):
    """A redis-server of this test alone, which it may stop, freeze and restart."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


# -- several nodes, one room ------------------------------------------------------------


async def test_two_nodes_appending_to_one_room_get_gap_free_deduped_seqs(url):
    prefix = unique_prefix()
    nodes = [RedisRoomLog(url, NO_RETENTION, key_prefix=prefix) for _ in range(2)]
    try:
        # Each message is sent to both nodes at once, as a client retrying on another
        # node after a lost answer would; and two senders reuse the same msg_ids.
        sends = [
            send(node, "dock", f"m{i}", {"i": i, "by": sender}, sender=sender)
            for i in range(60) for sender in ("alice", "bob") for node in nodes
        ]
        results = await asyncio.wait_for(asyncio.gather(*sends), BOUND_S)
        first: dict[tuple[str, str], int] = {}
        for result in results:
            key = (result.message.sender, result.message.msg_id)
            assert first.setdefault(key, result.seq) == result.seq
        assert sum(not r.duplicate for r in results) == 120
        assert sorted(first.values()) == list(range(1, 121))
        for node in nodes:
            stored = await node.read("dock")
            assert [m.seq for m in stored] == list(range(1, 121))
            assert {(m.sender, m.msg_id): m.seq for m in stored} == first
            assert all(m.payload == {"i": int(m.msg_id[1:]), "by": m.sender} for m in stored)
        # acks from both nodes: the cursor is the highest, never moved back
        await asyncio.gather(*(nodes[i % 2].ack("dock", "carol", i) for i in range(121)))
        assert await nodes[0].cursor("dock", "carol") == 120
    finally:
        for node in nodes:
            await node.close()


async def test_logs_with_other_prefixes_or_rooms_named_like_keys_never_meet(url):
    a = RedisRoomLog(url, key_prefix=unique_prefix())
    b = RedisRoomLog(url, key_prefix=unique_prefix())
    try:
        for room in ("r", "meta:r", "stream:r", "r:meta"):
            assert (await send(a, room, "m")).seq == 1
        assert (await send(a, "r", "n")).seq == 2
        assert await a.last_seq("meta:r") == 1
        assert await b.last_seq("r") == 0
        assert (await send(b, "r", "m")).duplicate is False
    finally:
        await a.close()
        await b.close()


# -- Redis away -----------------------------------------------------------------------------


async def test_redis_stopped_is_unavailable_and_restarted_works_again(own_server):
    log = RedisRoomLog(own_server.url, timeout_s=1.0, key_prefix="t:")
    try:
        await send(log, "r", "before")
        await log.ack("r", "bob", 1)
        own_server.stop()
        for call in (lambda: send(log, "r", "during"), lambda: log.read("r"),
                     lambda: log.ack("r", "bob", 1), lambda: log.prune(0)):
            with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{own_server.port}") as info:
                await asyncio.wait_for(call(), BOUND_S)
            assert info.value.code == "unavailable"
        own_server.start()  # same port and directory: the AOF brings back what was answered
        assert [m.msg_id for m in await log.read("r")] == ["before"]
        assert await log.cursor("r", "bob") == 1
        assert (await send(log, "r", "after")).seq == 2
        assert (await send(log, "r", "before")).duplicate is True
    finally:
        await log.close()


async def test_a_frozen_redis_times_out_as_unavailable(own_server):
    log = RedisRoomLog(own_server.url, timeout_s=0.5, key_prefix="t:")
    await send(log, "r", "m")
    os.kill(own_server.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(StoreUnavailable, match="[Tt]imeout|timed out"):
            await asyncio.wait_for(send(log, "r", "n"), BOUND_S)
    finally:
        os.kill(own_server.process.pid, signal.SIGCONT)
    assert await log.last_seq("r") in (1, 2)  # the frozen append ran, or not at all
    assert [m.seq for m in await log.read("r")] == list(range(1, await log.last_seq("r") + 1))
    await log.close()


async def test_every_answered_append_survives_redis_sigkill(own_server):
    """appendfsync always: an append Redis answered is on disk, whatever kills Redis."""
    log = RedisRoomLog(own_server.url, NO_RETENTION, timeout_s=2.0, key_prefix="t:")
    answered: dict[int, str] = {}
    enough = asyncio.Event()

    async def sender(k: int) -> None:
        for i in range(10**6):
            try:
                result = await send(log, "dock", f"{k}-{i}", {"k": k, "i": i})
            except StoreUnavailable:
                return
            answered[result.seq] = result.message.msg_id
            if len(answered) >= 500:
                enough.set()

    tasks = [asyncio.ensure_future(sender(k)) for k in range(8)]
    await asyncio.wait_for(enough.wait(), BOUND_S * 3)
    own_server.stop(signal.SIGKILL)
    await asyncio.wait_for(asyncio.gather(*tasks), BOUND_S)
    own_server.start()
    last = await log.last_seq("dock")
    stored = await log.read("dock", limit=10_000)
    assert [m.seq for m in stored] == list(range(1, last + 1))
    by_seq = {m.seq: m for m in stored}
    for seq, msg_id in answered.items():
        assert by_seq[seq].msg_id == msg_id
    await log.close()


# -- the model, and the same retention as memory -----------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_redis_log_matches_model(redis_server, ops):
    async def main():
        log = RedisRoomLog(redis_server.url, NO_RETENTION, key_prefix=unique_prefix())
        await run_against_model(log, ops)
        await log.close()

    uvloop.run(main())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(policy=policies, steps=steps)
def test_memory_and_redis_keep_the_same_messages(redis_server, policy, steps):
    async def main():
        memory = MemoryRoomLog(policy)
        shared = RedisRoomLog(redis_server.url, policy, key_prefix=unique_prefix())
        try:
            for step in steps:
                assert await apply(memory, step) == await apply(shared, step), step
                assert await state(memory) == await state(shared), step
        finally:
            await memory.close()
            await shared.close()

    uvloop.run(main())


async def test_prune_forgets_the_dedupe_of_every_message_it_drops(url):
    prefix = unique_prefix()
    log = RedisRoomLog(url, RetentionPolicy(max_age_s=None, max_messages=2, max_bytes=None),
                       key_prefix=prefix)
    raw = aioredis.Redis.from_url(url)
    try:
        for i in range(700):  # more than one batch of the trim script
            await send(log, "r", f"m{i}", sender=("alice", "bob:x")[i % 2])
        assert await log.prune(now=0) == {"r": 698}
        dedupe = await raw.hgetall(f"{prefix}log:dedupe:r")
        assert dedupe == {b"5:alicem698": b"699", b"5:bob:xm699": b"700"}
        assert await raw.xlen(f"{prefix}log:stream:r") == 2
        assert (await send(log, "r", "m0", sender="alice")).seq == 701
    finally:
        await raw.aclose()
        await log.close()


async def test_a_cursor_that_appears_while_pruning_holds_its_messages_back(url):
    """Another node acks for a member without a cursor between prune's reading of the
    facts and its trim: the trim sees the new cursor and the room is measured again."""
    prefix = unique_prefix()
    log = RedisRoomLog(url, RetentionPolicy(max_age_s=None, max_messages=0, max_bytes=None),
                       key_prefix=prefix)
    other_node = RedisRoomLog(url, key_prefix=prefix)
    await fill(log, "r", 5)
    measure, measured = log._measure_script, []

    async def measure_then_ack_elsewhere(*args, **kwargs):
        facts = await measure(*args, **kwargs)
        if not measured:
            await other_node.ack("r", "late", 2)
        measured.append(facts)
        return facts

    log._measure_script = measure_then_ack_elsewhere
    assert await log.prune(now=0) == {"r": 2}
    assert len(measured) == 2
    assert [m.seq for m in await other_node.read("r")] == [3, 4, 5]
    await log.close()
    await other_node.close()


@pytest.mark.parametrize(
    "limits, now, first_kept",
    [
        ({"max_bytes": 5000}, 0, None),  # sizes vary: whatever memory keeps
        ({"max_bytes": 10 * 102}, 0, 991),  # the newest ten fill it exactly: they stay
        ({"max_bytes": 10 * 102 - 1}, 0, 992),
        ({"max_age_s": 100}, 2190, 991),  # seq 991 (ts 2090) is exactly the oldest kept
        ({"max_age_s": 100}, 2190.5, 992),
    ],
)
async def test_limits_at_their_boundaries_on_a_long_room(url, limits, now, first_kept):
    """The byte limit is a binary search in Redis and the age limit a scan; memory sums
    and scans: they agree, to the byte and to the second."""
    policy = RetentionPolicy(**{"max_age_s": None, "max_messages": None, "max_bytes": None, **limits})
    memory, shared = MemoryRoomLog(policy), RedisRoomLog(url, policy, key_prefix=unique_prefix())
    sized = first_kept is None
    for log in (memory, shared):
        for i in range(1000):  # ts 1100..2099; payloads of 102 bytes, or of 2 to 38 bytes
            await send(log, "r", f"m{i}", b"x" * (i % 37 if sized else 100), ts=1100.0 + i)
    assert await shared.prune(now=now) == await memory.prune(now=now)
    kept = await memory.first_seq("r")
    assert await shared.first_seq("r") == kept > 1
    if first_kept is not None:
        assert kept == first_kept
    await memory.close()
    await shared.close()


# -- configuration, clients, imports -----------------------------------------------------------


async def test_config_problems_name_what_breaks_durability(url, tmp_path):
    log = RedisRoomLog(url)
    assert await log.config_problems() == []
    await log.close()
    with RedisServer(tmp_path / "lax", "--appendfsync", "everysec", "--maxmemory-policy",
                     "allkeys-lru") as lax:
        log = RedisRoomLog(lax.url)
        assert await log.config_problems() == [
            "appendfsync is everysec, must be always",
            "maxmemory-policy is allkeys-lru, must be noeviction",
        ]
        await log.close()


async def test_a_given_client_is_used_and_left_open(url):
    client = aioredis.Redis.from_url(url)
    log = RedisRoomLog(client, key_prefix=unique_prefix())
    assert (await send(log, "r", "m")).seq == 1
    await log.close()
    assert await client.ping() is True
    await client.aclose()
    with pytest.raises(ValueError, match="decode_responses"):
        RedisRoomLog(aioredis.Redis.from_url(url, decode_responses=True))


def test_importing_the_package_does_not_import_redis():
    code = "import sys, signalling.messages; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO)
    assert out.stdout.strip() == "False"
