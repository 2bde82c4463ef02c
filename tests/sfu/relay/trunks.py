"""Helpers of the relay tests: a trunk between node A (serving) and node B (connecting)
on 127.0.0.1, and a UDP relay between them that can lose packets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from sfu.producer import Producer
from sfu.relay import Trunk, TrunkServer, TrunkSettings, connect_trunk


async def until(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    """Wait (bounded) for ``predicate()``; its last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate() and loop.time() < deadline:
        await asyncio.sleep(0.01)
    return predicate()


@dataclass
class Nodes:
    """A's server and both ends of the A-B trunk; ``producers[node][(room, track_id)]``
    is what each node serves, ``lookups[node]`` what the far node asked it for."""

    server: TrunkServer
    a: Trunk
    b: Trunk
    producers: dict[str, dict[tuple[str, str], Producer]] = field(default_factory=dict)
    lookups: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    relay: LossyRelay | None = None


def finder(nodes_producers: dict, lookups: list) -> Callable[[str, str], Producer | None]:
    def find(room: str, track_id: str) -> Producer | None:
        lookups.append((room, track_id))
        return nodes_producers.get((room, track_id))
    return find


async def open_nodes(certs, port: int, settings: TrunkSettings, relay: LossyRelay | None = None
                     ) -> Nodes:
    """A serving on ``port``, B connected to it (through ``relay`` when given)."""
    producers: dict = {"A": {}, "B": {}}
    lookups: dict = {"A": [], "B": []}
    a, b = certs["A"], certs["B"]
    server = await TrunkServer("127.0.0.1", port, a.certificate, a.private_key,
                               {b.fingerprint: "B"}.get, node_id="A",
                               find_producer=finder(producers["A"], lookups["A"]),
                               settings=settings).start()
    if relay is not None:
        await relay.start(("127.0.0.1", server.port))
    trunk_b = await connect_trunk("127.0.0.1", relay.port if relay else server.port,
                                  b.certificate, b.private_key, a.fingerprint, node_id="B",
                                  expected_node_id="A",
                                  find_producer=finder(producers["B"], lookups["B"]),
                                  settings=settings)
    return Nodes(server, server.trunks["B"], trunk_b, producers, lookups, relay)


async def close_nodes(nodes: Nodes) -> None:
    nodes.b.close()
    nodes.server.close()
    await asyncio.wait_for(nodes.b.wait_closed(), 5)


class LossyRelay(asyncio.DatagramProtocol):
    """A UDP relay: what a client sends to `port` goes to the target and back.
    ``drop_back(data)`` says which packets from the target are lost; `cut()` loses
    everything from then on (a dead link)."""

    def __init__(self) -> None:
        self.drop_back: Callable[[bytes], bool] = lambda data: False
        self.dropped = 0
        self.cut_off = False
        self._client: tuple[str, int] | None = None
        self._listen: asyncio.DatagramTransport | None = None
        self._upstream: asyncio.DatagramTransport | None = None

    async def start(self, target: tuple[str, int]) -> LossyRelay:
        loop = asyncio.get_running_loop()
        self._listen, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        relay = self

        class Upstream(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                if relay.cut_off or relay.drop_back(data):
                    relay.dropped += 1
                elif relay._client is not None:
                    relay._listen.sendto(data, relay._client)

        self._upstream, _ = await loop.create_datagram_endpoint(Upstream, remote_addr=target)
        return self

    @property
    def port(self) -> int:
        return self._listen.get_extra_info("sockname")[1]

    def datagram_received(self, data, addr):
        self._client = addr
        if not self.cut_off:
            self._upstream.sendto(data)

    def cut(self) -> None:
        self.cut_off = True

    def close(self) -> None:
        for transport in (self._listen, self._upstream):
            if transport is not None:
                transport.close()
