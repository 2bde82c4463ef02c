"""Room messages through a real node: none lost, none duplicated, in order.

Three members send 10,000 messages in all, concurrently, in bounded windows, while their
websockets are cut at random moments (``transport.abort()``: no close frame, no
``leave``). A cut member reconnects with ``hello.resume {session_id, last_seq}`` and
sends again, with the same ``msg_id``, whatever was not answered ``sent``. Then the same
with the node SIGKILLed and restarted mid-run (same port, same data directory).

Each member must end with seq 1..10,000, each once, in order, payloads intact; every
``sent`` answer must name the seq under which every member received that message.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable

import pytest
from websockets.exceptions import ConnectionClosed, InvalidMessage

from signalling.client import DockcastClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOM = "dock-messages"
TOTAL = 10_000
MEMBERS = (("m0", "json"), ("m1", "msgpack"), ("m2", "msgpack"))
WINDOW = 32
ACK_EVERY = 500
# The default of 50 requests a second per connection is for untrusted clients; this run
# is about durability, so the node lets these members go as fast as it can store.
FAST = {"DOCKCAST_REQUEST_RATE": "100000", "DOCKCAST_REQUEST_BURST": "100000"}
# What a cut connection raises, and what a node being restarted answers.
# a connection cut, refused or timed out; or one the node, SIGKILLed, closed in the
# middle of the opening handshake (InvalidMessage: seen once in CI)
LOST = (ConnectionClosed, InvalidMessage, OSError, TimeoutError)


def payload_for(identity: str, i: int) -> dict:
    return {"i": i, "from": identity, "text": f"pallet {i} scanned at dock 7 ✓",
            "dims": [i % 120, i % 80, 1.5], "fragile": i % 3 == 0, "note": None}


class Member:
    """One member: sends its share, receives everything, resumes after every cut."""

    def __init__(self, identity: str, subprotocol: str, count: int, token: str) -> None:
        self.identity = identity
        self.subprotocol = subprotocol
        self.token = token
        self.to_send = {f"{identity}-{i}": payload_for(identity, i) for i in range(count)}
        self.answered: dict[str, int] = {}
        self.received: list[dict] = []
        self.errors: list[str] = []
        self.client: DockcastClient | None = None
        self.session_id: str | None = None
        self.connects = 0
        self.drops = 0

    @property
    def last_seq(self) -> int:
        return len(self.received)

    def on_message(self, event: dict) -> None:
        if event["seq"] != self.last_seq + 1:
            self.errors.append(f"{self.identity}: seq {event['seq']} after {self.last_seq}")
            return
        self.received.append(event)
        if event["seq"] % ACK_EVERY == 0 and self.client is not None:
            asyncio.ensure_future(self._ack(self.client, event["seq"]))

    @staticmethod
    async def _ack(client: DockcastClient, seq: int) -> None:
        with contextlib.suppress(*LOST):
            await client.ack(seq)

    def on_error(self, event: dict) -> None:
        self.errors.append(f"{self.identity}: unexpected error event {event}")

    async def connect(self, url: str) -> None:
        resume = None
        if self.session_id is not None:
            resume = {"session_id": self.session_id, "last_seq": self.last_seq}
        client = await DockcastClient.connect(url, self.token, subprotocol=self.subprotocol,
                                              resume=resume, timeout=10)
        client.on("message", self.on_message)
        client.on("error", self.on_error)
        for other in ("participant_joined", "participant_left"):
            client.on(other, lambda event: None)
        try:
            joined = await client.join(ROOM)
        except BaseException:
            await client.close()
            raise
        if resume is None and joined["last_seq"] != 0:
            self.errors.append(f"{self.identity}: first join saw last_seq {joined['last_seq']}")
        self.session_id = client.session_id
        self.client = client
        self.connects += 1

    async def send_all(self) -> None:
        """Send every message not answered yet, ``WINDOW`` at a time."""
        client = self.client
        queue = collections.deque(m for m in self.to_send if m not in self.answered)

        async def worker() -> None:
            while queue:
                msg_id = queue.popleft()
                try:
                    reply = await client.send("scan", self.to_send[msg_id], msg_id)
                except BaseException:
                    queue.appendleft(msg_id)
                    raise
                first = self.answered.setdefault(msg_id, reply["seq"])
                if first != reply["seq"]:
                    self.errors.append(f"{msg_id} answered seq {first}, then {reply['seq']}")

        async with asyncio.TaskGroup() as group:
            for _ in range(WINDOW):
                group.create_task(worker())

    async def run(self, cluster: Cluster) -> None:
        while True:
            try:
                if self.client is None or self.client.closed:
                    await self.connect(cluster.url)
                await self.send_all()
                while self.last_seq < TOTAL:
                    if self.errors:  # a gap or a duplicate: no point waiting
                        raise AssertionError(f"{self.identity}: {self.errors[:5]}")
                    if self.client.closed:
                        raise ConnectionError("cut while receiving")
                    await asyncio.sleep(0.02)
                return
            except* LOST:
                await asyncio.sleep(random.uniform(0.05, 0.2))

    def cut(self) -> bool:
        client = self.client
        if client is None or client.closed:
            return False
        client.ws.transport.abort()
        self.drops += 1
        return True


class Cluster:
    """The node under test, killed and restarted on request."""

    def __init__(self, factory, proc) -> None:
        self.factory = factory
        self.proc = proc
        self.url = proc.url
        self.kills = 0

    def kill_and_restart(self) -> None:
        self.proc.kill()
        self.kills += 1
        self.proc = self.factory.restart(self.proc)


async def _chaos(members: list[Member], finished: asyncio.Event, rng: random.Random) -> None:
    while not finished.is_set():
        await asyncio.sleep(rng.uniform(0.15, 0.6))
        rng.choice(members).cut()


def make_members(token: Callable[[str], str]) -> list[Member]:
    """``MEMBERS``, with the ``TOTAL`` messages shared among them; ``token(identity)``."""
    shares = [TOTAL // len(MEMBERS) + (1 if i < TOTAL % len(MEMBERS) else 0) for i in range(len(MEMBERS))]
    return [Member(identity, sub, share, token(identity)) for (identity, sub), share in zip(MEMBERS, shares)]


@contextlib.asynccontextmanager
async def cutting(members: list[Member], rng: random.Random) -> AsyncIterator[None]:
    """Members cut at random moments while the block runs; their clients closed after."""
    finished = asyncio.Event()
    chaos = asyncio.create_task(_chaos(members, finished, rng))
    try:
        yield
    finally:
        finished.set()
        await chaos
        for member in members:
            if member.client is not None:
                await member.client.close()


async def answered_once(members: list[Member], fraction: float) -> dict[str, int]:
    """Once ``fraction`` of the ``TOTAL`` messages were answered ``sent``: those
    (msg_id -> seq)."""
    while sum(len(m.answered) for m in members) < fraction * TOTAL:
        await asyncio.sleep(0.01)
    return {msg_id: seq for member in members for msg_id, seq in member.answered.items()}


async def _run(node_factory, kill_at: float | None) -> tuple[list[Member], Cluster, dict]:
    proc = node_factory.start(env=FAST)
    cluster = Cluster(node_factory, proc)
    members = make_members(lambda identity: proc.token(identity, ROOM, ("message",)))
    for member in members:  # everyone is in the room before the first message
        await member.connect(cluster.url)
    before_kill: dict[str, int] = {}
    started = time.monotonic()
    async with cutting(members, random.Random(4)):
        runs = asyncio.gather(*(m.run(cluster) for m in members))
        if kill_at is not None:
            before_kill = await answered_once(members, kill_at)
            await asyncio.to_thread(cluster.kill_and_restart)
        async with asyncio.timeout(120):
            await runs
    print(f"\n{TOTAL} messages in {time.monotonic() - started:.1f}s, "
          f"cuts {[m.drops for m in members]}, connects {[m.connects for m in members]}, "
          f"kills {cluster.kills}, answered before the kill {len(before_kill)}")
    return members, cluster, before_kill


def _check(members: list[Member], cluster: Cluster) -> None:
    for member in members:
        assert member.errors == [], member.errors[:10]
    reference = members[0].received
    assert [e["seq"] for e in reference] == list(range(1, TOTAL + 1))
    msg_ids = [e["msg_id"] for e in reference]
    assert len(set(msg_ids)) == TOTAL, "a message was stored twice"
    everything = {m: p for member in members for m, p in member.to_send.items()}
    assert set(msg_ids) == set(everything), "a message was lost"
    for event in reference:
        assert event["payload"] == everything[event["msg_id"]], event
        assert event["from"] == event["payload"]["from"] and event["room"] == ROOM
    for member in members[1:]:
        assert [(e["seq"], e["msg_id"], e["payload"]) for e in member.received] == \
            [(e["seq"], e["msg_id"], e["payload"]) for e in reference]
    for member in members:
        assert len(member.answered) == len(member.to_send)
        for msg_id, seq in member.answered.items():
            assert reference[seq - 1]["msg_id"] == msg_id
    assert sum(m.drops for m in members) >= 5, "the run was too short to cut anyone"


async def _fresh_join_sees(cluster: Cluster) -> int:
    token = cluster.proc.token("auditor", ROOM, ("message",))
    async with await DockcastClient.connect(cluster.url, token) as client:
        return (await client.join(ROOM))["last_seq"]


async def test_ten_thousand_messages_with_members_cut_and_resuming(node_factory):
    members, cluster, _ = await _run(node_factory, kill_at=None)
    _check(members, cluster)
    assert await _fresh_join_sees(cluster) == TOTAL


async def test_node_killed_mid_run_loses_nothing_answered_sent(node_factory):
    members, cluster, before_kill = await _run(node_factory, kill_at=0.4)
    assert cluster.kills == 1 and len(before_kill) >= 0.4 * TOTAL
    _check(members, cluster)
    # every message answered `sent` before the SIGKILL is there, under the same seq
    by_seq = {e["seq"]: e["msg_id"] for e in members[0].received}
    assert all(by_seq[seq] == msg_id for msg_id, seq in before_kill.items())
    assert await _fresh_join_sees(cluster) == TOTAL
