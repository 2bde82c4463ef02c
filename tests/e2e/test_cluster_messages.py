"""Room messages across the nodes of a cluster, and Redis going away under it (issue 12).

Real processes: a ``redis-server`` on a free port (AOF ``always``), two or three
``dockcast serve --redis`` nodes (``cluster_nodes.start_nodes``). The members are those
of the one-node run (``test_messages.Member``: a window of sends, cut at random moments,
resuming with ``hello.resume {session_id, last_seq}`` and sending again with the same
``msg_id`` what was not answered ``sent``), each connected to a node of its own:

- 10,000 messages from members on three nodes: each member sees seq 1..10,000 once, in
  order, and every ``sent`` names the seq every member received;
- the same with one node SIGKILLed mid-run: its member resumes on a node that is left
  (the log is shared, so any node replays it) and nothing answered ``sent`` is lost or
  delivered twice;
- Redis SIGKILLed and restarted on the same port and directory: ``send`` is answered
  ``unavailable`` while it is down, the nodes keep serving, and the cluster comes back by
  itself (next seqs, messages crossing nodes, both nodes listed, A's tracks seen on B).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import urllib.request
from dataclasses import dataclass

import pytest
from redis_server import RedisServer

from sfu.cluster import RedisDirectory
from signalling.client import DockcastClient, ServerError

from .cluster_nodes import start_nodes
from .peer import Participant
from .test_messages import (
    FAST,
    ROOM,
    TOTAL,
    _check,
    answered_once,
    cutting,
    make_members,
)
from .waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

RUN_TIMEOUT_S = 120.0
OUTAGE_S = 7.0
"""Redis stays down longer than the directory's TTL (5 s): the nodes' registrations
expire and each must register again (the `UnknownNode` path)."""


@pytest.fixture
def redis(tmp_path):
    """Set up before ``node_factory``, so torn down after the nodes stopped cleanly."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


@dataclass
class Route:
    """Where a member (re)connects: its node, until that node dies."""

    url: str


async def _run(nodes: list, kill: int | None = None, kill_at: float = 0.4) -> dict[str, int]:
    """``MEMBERS`` send 10,000 messages and receive them all, member i on node i; with
    ``kill``, node ``kill`` is SIGKILLed once ``kill_at`` of the messages were answered
    and its members go to the next node. Returns the messages answered before the kill
    (msg_id -> seq)."""
    members = make_members(lambda identity: nodes[0].token(identity, ROOM, ("message",)))
    routes = [Route(nodes[i % len(nodes)].url) for i in range(len(members))]
    for member, route in zip(members, routes):  # everyone is in the room before the first message
        await member.connect(route.url)
    before_kill: dict[str, int] = {}
    killed_at = None
    started = time.monotonic()
    async with cutting(members, random.Random(12)), asyncio.timeout(RUN_TIMEOUT_S):
        runs = asyncio.gather(*(m.run(route) for m, route in zip(members, routes)))
        if kill is not None:
            before_kill = await answered_once(members, kill_at)
            for route in routes:
                if route.url == nodes[kill].url:
                    route.url = nodes[(kill + 1) % len(nodes)].url
            await asyncio.to_thread(nodes[kill].kill)
            killed_at = time.monotonic() - started
        await runs
    elapsed = time.monotonic() - started
    print(f"\n{TOTAL} messages from {len(members)} members on {len(nodes)} nodes in {elapsed:.1f} s "
          f"({TOTAL / elapsed:.0f}/s), cuts {[m.drops for m in members]}, "
          f"connects {[m.connects for m in members]}, "
          f"node killed at {killed_at and round(killed_at, 1)} s with {len(before_kill)} answered")
    _check(members, None)
    # every message answered `sent` before the SIGKILL is there, under the same seq
    by_seq = {e["seq"]: e["msg_id"] for e in members[0].received}
    assert all(by_seq[seq] == msg_id for msg_id, seq in before_kill.items())
    return before_kill


async def test_ten_thousand_messages_with_members_on_three_nodes(redis, node_factory):
    nodes = list(start_nodes(node_factory, redis.url, "abc", env=FAST).values())
    await _run(nodes)
    # a member who joins now, on any node, finds the whole log
    async with await DockcastClient.connect(nodes[2].url, nodes[2].token("auditor", ROOM)) as late:
        assert (await late.join(ROOM))["last_seq"] == TOTAL


async def test_a_node_killed_mid_run_loses_nothing_answered_sent(redis, node_factory):
    nodes = list(start_nodes(node_factory, redis.url, "abc", env=FAST).values())
    before_kill = await _run(nodes, kill=0, kill_at=0.4)
    assert len(before_kill) >= 0.4 * TOTAL
    # sends stored but not answered before a cut or the kill came again, and dedupe
    # answered them (with their first seq, which `_run` checked)
    duplicates = sum(node.metrics()["dockcast_message_duplicates_total"] for node in nodes[1:])
    print(f"re-sends answered as duplicates by the nodes left: {duplicates:.0f}")
    assert duplicates > 0


def _healthy(node) -> bool:
    with urllib.request.urlopen(node.http + "/healthz", timeout=2) as reply:
        return reply.status == 200


async def _send_until_stored(client: DockcastClient, msg_id: str, timeout: float = 30.0) -> tuple[dict, list[str]]:
    """``send`` again with the same ``msg_id`` until it is answered ``sent``; the reply
    and the error codes met on the way."""
    codes = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await client.send("status", {"msg_id": msg_id}, msg_id), codes
        except ServerError as exc:
            codes.append(exc.code)
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _messages(client: DockcastClient, count: int) -> list[int]:
    return [(await client.next_event("message", timeout=10))["seq"] for _ in range(count)]


async def test_redis_restarted_under_a_running_cluster_recovers_by_itself(redis, node_factory):
    nodes = start_nodes(node_factory, redis.url, "ab")
    a, b = nodes["a"], nodes["b"]
    pub = Participant(a.url, a.token("warehouse-cam"))
    here = await DockcastClient.connect(a.url, a.token("wms-a"))
    there = await DockcastClient.connect(b.url, b.token("seller-b"))
    watcher = Participant(b.url, b.token("seller-watching"))
    viewer = Participant(b.url, b.token("seller-late"))
    directory = RedisDirectory(redis.url)
    try:
        await pub.connect()
        await pub.join()
        track_ids = sorted(t["track_id"] for t in (await pub.publish(audio=False))["tracks"])
        await watcher.connect()
        await watcher.join()
        await watcher.request("subscribe", track_ids=track_ids)
        assert await wait_until(lambda: watcher.video() and watcher.video()[0].frames > 10)
        await here.join("dock-1")
        await there.join("dock-1")
        seqs = [(await here.send("status", {"i": i}))["seq"] for i in range(3)]
        seqs += [(await there.send("status", {"i": i}))["seq"] for i in range(3, 6)]
        assert seqs == list(range(1, 7))
        assert await _messages(here, 6) == seqs and await _messages(there, 6) == seqs

        redis.stop(signal.SIGKILL)
        stopped = time.monotonic()
        frames = watcher.video()[0].frames
        # while it is down: a clear `unavailable`, answered (not a hang), again and again
        answers = []
        while time.monotonic() - stopped < OUTAGE_S:
            asked = time.monotonic()
            for client in (here, there):
                with pytest.raises(ServerError) as refused:
                    await client.send("status", {"during": True}, "during-outage")
                assert refused.value.code == "unavailable", refused.value
                assert "redis" in refused.value.message
            answers.append(time.monotonic() - asked)
            assert _healthy(a) and _healthy(b)
            assert not here.closed and not there.closed
            await asyncio.sleep(0.5)
        print(f"\nwhile Redis was down: {len(answers)} rounds of sends, slowest answered "
              f"`unavailable` in {max(answers) * 1000:.0f} ms")
        assert watcher.video()[0].frames > frames + 30  # media needs no Redis: it went on

        redis.start()  # same port, same directory: the AOF has every answered message
        restarted = time.monotonic()
        sent, codes = await _send_until_stored(here, "during-outage")
        print(f"`unavailable` {time.monotonic() - restarted:.2f} s after the restart "
              f"({len(codes)} more refusals: {sorted(set(codes))})")
        assert set(codes) <= {"unavailable"}
        assert sent["seq"] == 7  # the next one: nothing answered before the stop was lost
        assert (await there.send("status", {"after": True}))["seq"] == 8
        # messages cross nodes again, both ways, in order
        assert await _messages(there, 2) == [7, 8]
        assert await _messages(here, 2) == [7, 8]

        # both nodes listed again (their registrations expired during the outage: each
        # was told `UnknownNode` by a heartbeat and registered again)
        async def both_listed() -> bool:
            return {n.node_id for n in await directory.nodes()} == {"node-a", "node-b"}

        while not await both_listed():
            assert time.monotonic() - restarted < 20, "the nodes did not register again"
            await asyncio.sleep(0.1)
        print(f"both nodes listed {time.monotonic() - restarted:.2f} s after the restart")
        for node in (a, b):
            assert "registering again" in node.log()

        # and video still reaches B's subscriber: its trunk was closed when each node
        # took the other for dead, and A's track was taken back (docs/cluster.md)
        frames = watcher.video()[0].frames
        assert await wait_until(lambda: watcher.video()[0].frames > frames + 30)
        # a new client of B sees A's track, and decodes it across the trunk
        await viewer.connect()
        joined = await viewer.join()
        assert sorted(t["track_id"] for t in joined["tracks"]) == track_ids
        await viewer.request("subscribe", track_ids=track_ids)
        assert await wait_until(lambda: viewer.video() and viewer.video()[0].frames > 10)
    finally:
        await directory.close()
        for client in (here, there):
            await client.close()
        for participant in (viewer, watcher, pub):
            await participant.close()
    # B's subscribers gone, the flow from A is given back: A can stop without leaving
    # consumers on B waiting for its track
    assert await wait_until(lambda: b.metrics().get('dockcast_trunk_flows{peer="node-a"}', 0) == 0)
    for node in (b, a):
        assert node.stop() == 0
        log = node.log_path.read_text()
        assert "Traceback" not in log, log[-3000:]  # an outage is told in one line, not a stack
