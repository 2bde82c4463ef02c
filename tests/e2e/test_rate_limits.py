"""Rate limits through a real node: a client that follows ``retry_after_ms`` loses
nothing and is never closed; the node-wide connection cap refuses at the handshake.

The long version (10,000 messages at the default 50 requests a second, about 200 s) is
``scripts/measure_messages.py --limited``.
"""

from __future__ import annotations

import re

import asyncio
import urllib.request

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from signalling.client import DockcastClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOM = "dock-1"
COUNT = 200
WINDOW = 16  # requests in flight: more than the burst, so the bucket runs dry at once


async def test_a_client_following_retry_after_sends_everything_and_stays_open(node_factory):
    node = node_factory.start(env={"DOCKCAST_REQUEST_RATE": "20", "DOCKCAST_REQUEST_BURST": "5"})
    member = await DockcastClient.connect(node.url, node.token("member", ROOM, ("message",)))
    sender = await DockcastClient.connect(node.url, node.token("sender", ROOM, ("message",)),
                                          subprotocol="msgpack")
    received: list[dict] = []
    all_in = asyncio.Event()

    def on_message(event: dict) -> None:
        received.append(event)
        if len(received) >= COUNT:
            all_in.set()

    member.on("message", on_message)
    sender.on("message", lambda event: None)
    for client in (member, sender):
        client.on("participant_joined", lambda event: None)
    await member.join(ROOM)
    await sender.join(ROOM)
    queue = iter(range(COUNT))
    answered: dict[str, int] = {}

    async def worker() -> None:
        for n in queue:  # as fast as the node lets it: the next as soon as one is answered
            reply = await sender.send("scan", {"n": n}, msg_id=f"m-{n}")
            answered[reply["msg_id"]] = reply["seq"]

    await asyncio.gather(*(worker() for _ in range(WINDOW)))
    await asyncio.wait_for(all_in.wait(), timeout=60)
    assert sorted(answered.values()) == list(range(1, COUNT + 1))
    assert sorted(e["seq"] for e in received) == list(range(1, COUNT + 1))  # each once
    assert {e["msg_id"]: e["seq"] for e in received} == answered
    assert sender.rate_limited_seen >= 1  # the limit was hit, and followed
    assert not sender.closed and not member.closed
    assert (await sender.ping())["type"] == "pong"
    for client in (member, sender):
        await client.close()
    errors = node.metrics()
    assert errors.get('dockcast_signalling_errors_total{code="rate_limited"}', 0) >= 1
    # no abuse close (code 4008) in the log; an ephemeral port such as 40082 is no match
    assert not re.search(r"code=4008\b", node.log()) and "too many bad messages" not in node.log()


async def test_connections_beyond_max_connections_get_503(node_factory):
    node = node_factory.start(env={"DOCKCAST_MAX_CONNECTIONS": "2"})
    first = await DockcastClient.connect(node.url, node.token("a"))
    second = await ws_connect(node.url)  # before hello: it holds its place all the same
    with pytest.raises(InvalidStatus) as info:
        await ws_connect(node.url)
    assert info.value.response.status_code == 503
    assert node.metrics()['dockcast_signalling_refused_total{reason="connections"}'] == 1
    with urllib.request.urlopen(node.http + "/healthz", timeout=5) as r:
        assert r.status == 200  # plain HTTP is not a websocket connection: still served
    assert (await first.ping())["type"] == "pong"
    await second.close()
    await first.close()
