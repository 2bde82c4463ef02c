"""dockcast.cluster when the cluster's Redis goes away and comes back.

A real `Cluster` (its directory, trunk server and room-event listener) on a private
``redis-server`` that the tests stop and start again, with a real membership, bus and
message delivery over the shared `RedisRoomLog`; the node around them is a stand-in
holding those (no media: rooms have neither participants nor producers). "Another node"
is the test writing to the same log and channels, as a node would.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from types import SimpleNamespace

from dockcast.config import NodeConfig

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from redis_server import RedisServer

from dockcast.cluster import Cluster, _cancel_all
from sfu.cluster import NodeInfo, RedisDirectory
from signalling.bus import EventBus
from signalling.events import RoomCreated
from signalling.membership import LocalMembership, RoomRecord
from signalling.messages import RedisRoomLog
from signalling.messages.delivery import Messaging

ROOM = "dock-7"


class Conn:
    """A member's connection: records the events it is sent."""

    identity = "seller"
    resume = None
    queued_messages = 0
    closed = False

    def __init__(self) -> None:
        self.data: dict = {}
        self.events: list[dict] = []

    def send_event(self, event: dict) -> bool:
        self.events.append(event)
        return True

    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events if e["type"] == "message"]


async def wait_for(predicate, timeout: float = 10.0) -> None:
    """Until ``predicate()`` (a coroutine function's too) is true; TimeoutError after
    ``timeout`` s."""
    async with asyncio.timeout(timeout):
        while True:
            found = predicate()
            if asyncio.iscoroutine(found):
                found = await found
            if found:
                return
            await asyncio.sleep(0.02)


def _media_room() -> SimpleNamespace:
    """A media room with nobody in it."""
    return SimpleNamespace(participants={}, producers={}, orphans={})


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis(tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def node(redis, tmp_path):
    """A node of the cluster with one member in ``ROOM`` (``node.member``)."""
    membership = LocalMembership()
    bus = EventBus(shipment_of=membership.shipment_of)
    messaging = Messaging(RedisRoomLog(redis.url), membership, bus=bus)
    config = NodeConfig(redis=redis.url, region="us-west", data_dir=str(tmp_path / "node"),
                        host="127.0.0.1", trunk_port=_free_udp_port())
    node = SimpleNamespace(
        config=config, node_id="node-a", membership=membership, bus=bus, messaging=messaging,
        rooms=SimpleNamespace(media={ROOM: _media_room()}),
        media=SimpleNamespace(), server=SimpleNamespace(), registry=CollectorRegistry(),
        admin=SimpleNamespace(), worker=None)
    node.member = Conn()
    membership.open_room(RoomRecord(ROOM))
    membership.join(node.member, ROOM, "PA_1", node.member.identity)
    messaging.joined(node.member, ROOM, await messaging.prepare_join(ROOM, node.member.identity))
    node.cluster = Cluster(node)
    node.cluster.directory = RedisDirectory(redis.url, ttl_s=1.0, timeout_s=0.5)
    await node.cluster.start(0)
    yield node
    async with asyncio.timeout(10):  # (a failed test must not hang the suite)
        await node.cluster.stop()
        await messaging.close()


class OtherNode:
    """What another node does with a message: store it in the log, tell the channel."""

    def __init__(self, url: str) -> None:
        self.log = RedisRoomLog(url)
        self.redis = aioredis.Redis.from_url(url)
        self.count = 0

    async def store(self) -> int:
        self.count += 1
        return (await self.log.append(ROOM, f"m{self.count}", "wms", "scan", {"i": self.count}, 0.0)).seq

    async def tell(self, seq: int) -> None:
        await self.redis.publish(f"dockcast:room-events:{ROOM}", json.dumps({"node": "node-x", "seq": seq}))

    async def close(self) -> None:
        await self.log.close()
        await self.redis.aclose()


@pytest.fixture
async def other(redis):
    other = OtherNode(redis.url)
    yield other
    await other.close()


async def test_messages_of_other_nodes_arrive_again_after_redis_restarted(node, other, redis):
    await other.tell(await other.store())
    await wait_for(lambda: node.member.seqs() == [1])
    await asyncio.to_thread(redis.stop, signal.SIGKILL)  # (the loop sees its connections close)
    await asyncio.to_thread(redis.start)
    # told until this node listens again (what was told before is lost with the
    # subscription: the catch-up or the next message brings it)
    seq = await other.store()
    while node.member.seqs() != [1, 2]:
        await other.tell(seq)
        await asyncio.sleep(0.05)
    seq = await other.store()
    await other.tell(seq)
    await wait_for(lambda: node.member.seqs() == [1, 2, 3])


async def test_messages_stored_while_nobody_listened_are_caught_up_from_the_log(node, other):
    await other.tell(await other.store())
    await wait_for(lambda: node.member.seqs() == [1])
    for _ in range(3):
        await other.store()  # and nothing told: this node was not listening
    await node.cluster._catch_up()
    await wait_for(lambda: node.member.seqs() == [1, 2, 3, 4])


async def test_a_room_opened_while_redis_was_down_is_in_the_directory_once_it_is_back(node, redis):
    directory = RedisDirectory(redis.url)
    try:
        await asyncio.to_thread(redis.stop, signal.SIGKILL)
        node.rooms.media["dock-8"] = _media_room()
        await node.bus.publish(RoomCreated(room="dock-8"))  # its join_room fails
        await asyncio.to_thread(redis.start)

        async def listed() -> bool:
            return "node-a" in await directory.room_nodes("dock-8")

        await wait_for(listed)
    finally:
        await directory.close()


async def test_a_node_the_directory_forgot_registers_again_with_its_rooms(node, redis):
    directory = RedisDirectory(redis.url)
    try:
        assert await directory.room_nodes(ROOM) == []  # joined before the cluster started
        await directory.deregister("node-a")  # as if its registration had expired

        async def back() -> bool:
            return ([n.node_id for n in await directory.nodes()] == ["node-a"]
                    and await directory.room_nodes(ROOM) == ["node-a"])

        await wait_for(back)
    finally:
        await directory.close()


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again():
    swallowed = []

    async def stubborn() -> None:  # as a Redis loop that took a cancellation for a timeout
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    await _cancel_all([task], wait_s=0.2)
    assert task.cancelled() and swallowed == [True]


# -- placement under --workers ---------------------------------------------------------------


def _sibling(node_id: str) -> NodeInfo:
    return NodeInfo(node_id=node_id, region="us-west", public_url=f"ws://127.0.0.1:1/{node_id}",
                    trunk_address="127.0.0.1:2", cert_fingerprint="sha-256 00", load=0.0)


async def test_workers_place_rooms_by_hash_and_keep_a_room_where_it_runs(node):
    from dockcast.workers import WorkerRole, home_worker

    cluster = node.cluster
    node.worker = WorkerRole("dock", 0, 2, 9000, 1)
    cluster.node_id = "dock-w0"
    cluster.nodes = {"dock-w0": _sibling("dock-w0"), "dock-w1": _sibling("dock-w1")}
    claims = lambda room: SimpleNamespace(room=room)  # noqa: E731
    theirs = next(f"r{i}" for i in range(100) if home_worker(f"r{i}", ["dock-w0", "dock-w1"]) == "dock-w1")
    ours = next(f"r{i}" for i in range(100) if home_worker(f"r{i}", ["dock-w0", "dock-w1"]) == "dock-w0")
    assert cluster.placement(claims(theirs), None) == "ws://127.0.0.1:1/dock-w1"
    assert cluster.placement(claims(ours), None) is None
    assert cluster.placement(SimpleNamespace(room=None), None) is None  # an admin stays
    assert cluster.placement(claims(ROOM), None) is None  # open here: it stays here
    # a join seen on the sibling keeps the room there, though it hashes here
    cluster._saw_join(ours, "dock-w1")
    assert cluster.placement(claims(ours), None) == "ws://127.0.0.1:1/dock-w1"
    # a sibling the directory dropped a moment ago keeps its rooms ...
    cluster._node_down("dock-w1")
    assert cluster.placement(claims(theirs), None) == "ws://127.0.0.1:1/dock-w1"
    # ... for PLACEMENT_GRACE_S, then its rooms come here
    when, info = cluster._unlisted["dock-w1"]
    cluster._unlisted["dock-w1"] = (when - 16.0, info)
    assert cluster.placement(claims(theirs), None) is None
