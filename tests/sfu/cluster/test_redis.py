"""RedisDirectory specifics (the shared suite runs on it too): a dead node noticed in
time, the keys a dead node leaves (none), Redis stopped, frozen and restarted under a
watcher, the client it is given."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis_server import RedisServer, unique_prefix

from sfu.cluster import DirectoryUnavailable, NodeDown, NodeInfo, NodeUp, RedisDirectory

from .test_directory import BOUND_S, node_info, registered

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def own_server(tmp_path):
    """A redis-server of this test alone, which it may stop, freeze and restart."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


async def test_a_dead_node_is_noticed_once_its_ttl_is_over(redis_server):
    """A node that stops heartbeating is reported down to every watcher (and reaped).
    How soon (docs/cluster.md: ttl + at most a second) is a figure for the benchmark;
    here the wait is only bounded, generously, so a loaded machine does not fail it."""
    prefix = unique_prefix()
    szx = RedisDirectory(redis_server.url, key_prefix=prefix, ttl_s=1.0)
    lax = RedisDirectory(redis_server.url, key_prefix=prefix, ttl_s=1.0)
    watch = lax.watch()
    keep_lax_alive = None
    try:
        await registered(lax, "lax")
        assert isinstance(await asyncio.wait_for(anext(watch), BOUND_S), NodeUp)
        [info] = await registered(szx, "szx")
        assert await asyncio.wait_for(anext(watch), BOUND_S) == NodeUp(info)
        last_heartbeat = time.monotonic()
        await szx.heartbeat("szx", 0.5)
        keep_lax_alive = asyncio.ensure_future(heartbeats(lax, "lax"))
        event = await asyncio.wait_for(anext(watch), last_heartbeat + 1.0 + BOUND_S - time.monotonic())
        assert isinstance(event, NodeDown)
        assert (event.node.node_id, event.node.incarnation) == ("szx", info.incarnation)
    finally:
        if keep_lax_alive is not None:
            keep_lax_alive.cancel()
        await watch.aclose()
        await szx.close()
        await lax.close()


async def heartbeats(directory: RedisDirectory, node_id: str) -> None:
    while True:
        await directory.heartbeat(node_id, 0.0)
        await asyncio.sleep(directory.ttl_s / 4)


async def test_a_dead_node_leaves_no_key_behind(redis_server):
    prefix = unique_prefix()
    d = RedisDirectory(redis_server.url, key_prefix=prefix, ttl_s=0.5)
    raw = aioredis.Redis.from_url(redis_server.url)

    async def keys() -> set[str]:
        return {key.decode().removeprefix(prefix + "dir:") async for key in raw.scan_iter(f"{prefix}*")}

    try:
        await registered(d, "szx", "lax")
        for node_id in ("szx", "lax"):
            await d.join_room("dock-1", node_id)
            await d.publish("dock-1", f"TR_{node_id}", node_id, {"kind": "video"})
        await d.claim_room("dock-1", "szx")
        await d.claim_room("dock-2", "szx")
        await d.join_room("dock-2", "szx")
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:  # szx misses its heartbeats, lax does not
            await d.heartbeat("lax", 0.0)
            await asyncio.sleep(0.1)
        assert await d.reap() == ["szx"]
        assert await keys() == {"nodes", "incarnations", "node:lax", "node-rooms:lax",
                                "node-tracks:lax", "room-nodes:dock-1", "room-tracks:dock-1",
                                "track:TR_lax"}
        await d.deregister("lax")
        assert await keys() == {"incarnations"}
    finally:
        await raw.aclose()
        await d.close()


async def test_redis_stopped_is_unavailable_and_the_watch_carries_on_when_it_is_back(own_server):
    d = RedisDirectory(own_server.url, key_prefix="t:", ttl_s=30.0, timeout_s=0.5)
    watch = d.watch(poll_s=0.05)
    try:
        [szx] = await registered(d, "szx")
        assert await asyncio.wait_for(anext(watch), BOUND_S) == NodeUp(szx)
        pending = asyncio.ensure_future(anext(watch))  # the watcher goes on polling
        own_server.stop()
        for call in (lambda: d.heartbeat("szx", 0.0), lambda: d.nodes(),
                     lambda: d.claim_room("dock-1", "szx"), lambda: d.reap()):
            with pytest.raises(DirectoryUnavailable, match=f"127.0.0.1:{own_server.port}") as info:
                await asyncio.wait_for(call(), BOUND_S)
            assert info.value.code == "unavailable"
        assert not pending.done()
        own_server.start()  # the AOF kept szx
        await d.heartbeat("szx", 0.1)
        [lax] = await registered(d, "lax")
        assert await asyncio.wait_for(pending, BOUND_S) == NodeUp(lax)
        assert [n.node_id for n in await d.nodes()] == ["lax", "szx"]
    finally:
        await watch.aclose()
        await d.close()


async def test_a_frozen_redis_times_out_as_unavailable(own_server):
    d = RedisDirectory(own_server.url, key_prefix="t:", timeout_s=0.3)
    await registered(d, "szx")
    os.kill(own_server.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(DirectoryUnavailable, match="[Tt]imeout|timed out"):
            await asyncio.wait_for(d.heartbeat("szx", 0.0), BOUND_S)
    finally:
        os.kill(own_server.process.pid, signal.SIGCONT)
    await d.heartbeat("szx", 0.0)
    await d.close()


async def test_a_given_client_is_used_and_left_open(redis_server):
    client = aioredis.Redis.from_url(redis_server.url)
    d = RedisDirectory(client, key_prefix=unique_prefix())
    assert (await d.register(node_info("szx"))).incarnation == 1
    assert isinstance(await d.node("szx"), NodeInfo)
    await d.close()
    assert await client.ping() is True
    await client.aclose()
    with pytest.raises(ValueError, match="decode_responses"):
        RedisDirectory(aioredis.Redis.from_url(redis_server.url, decode_responses=True))


def test_importing_the_package_does_not_import_redis():
    code = "import sys, sfu.cluster; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO)
    assert out.stdout.strip() == "False"
