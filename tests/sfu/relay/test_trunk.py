"""Trunks on 127.0.0.1: both certificates pinned or the trunk refused before anything of
it is read, the datagram cap that keeps aioquic's queue moving, a dead peer noticed, an
unused trunk closed."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aioquic.quic import events
from aioquic.quic.connection import QuicConnection
from trunks import close_nodes, open_nodes

from sfu.relay import (
    TrunkRefused,
    TrunkServer,
    TrunkSettings,
    TrunkState,
    TrunkTimeout,
    _quic,
    connect_trunk,
)
from sfu.relay.framing import Hello, Subscribe, encode_control
from sfu.relay.trunk import REFUSED


async def test_a_trunk_opens_with_each_certificate_pinned(nodes, certs):
    a, b = nodes.a, nodes.b
    assert a.state is b.state is TrunkState.OPEN
    assert (a.peer_node_id, b.peer_node_id) == ("B", "A")
    assert a.peer_fingerprint == certs["B"].fingerprint
    assert b.peer_fingerprint == certs["A"].fingerprint
    assert nodes.server.trunks == {"B": a}
    assert a.datagram_cap == b.datagram_cap == 1452 - _quic.QUIC_DATAGRAM_OVERHEAD


async def test_a_third_nodes_certificate_is_refused(nodes, certs):
    c = certs["C"]
    with pytest.raises(TrunkRefused, match="not pinned"):
        await connect_trunk("127.0.0.1", nodes.server.port, c.certificate, c.private_key,
                            certs["A"].fingerprint, node_id="C")
    assert nodes.server.refused == 1
    assert set(nodes.server.trunks) == {"B"}


async def test_a_server_whose_certificate_is_not_pinned_is_refused(nodes, certs):
    b = certs["B"]
    with pytest.raises(TrunkRefused, match="not pinned"):
        await connect_trunk("127.0.0.1", nodes.server.port, b.certificate, b.private_key,
                            certs["C"].fingerprint, node_id="B")
    assert nodes.server.trunks == {"B": nodes.a}  # only the first trunk ever opened


async def test_a_hello_naming_another_node_is_refused(nodes, certs):
    b = certs["B"]  # B's certificate, but the hello says "mallory"
    with pytest.raises(TrunkRefused, match="mallory"):
        await connect_trunk("127.0.0.1", nodes.server.port, b.certificate, b.private_key,
                            certs["A"].fingerprint, node_id="mallory")


class RawClient:
    """A QUIC client that writes control frames as soon as TLS is done, pinned or not,
    and keeps whatever comes back."""

    def __init__(self, certificate, frames: bytes) -> None:
        configuration = TrunkSettings().quic(is_client=True, certificate=certificate.certificate,
                                             key=certificate.private_key)
        self.connection = QuicConnection(configuration=configuration)
        self.frames = frames
        self.datagrams: list[bytes] = []
        self.stream = b""
        self.terminated: events.ConnectionTerminated | None = None
        self.done = asyncio.Event()

    def on_event(self, event) -> None:
        if isinstance(event, events.HandshakeCompleted):
            self.connection.send_stream_data(0, self.frames)
            self.protocol.transmit_soon()
        elif isinstance(event, events.DatagramFrameReceived):
            self.datagrams.append(event.data)
        elif isinstance(event, events.StreamDataReceived):
            self.stream += event.data
        elif isinstance(event, events.ConnectionTerminated):
            self.terminated = event
            self.done.set()

    async def run(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        udp, self.protocol = await loop.create_datagram_endpoint(
            lambda: _quic.TrunkProtocol(self.connection, on_event=self.on_event),
            family=socket.AF_INET)
        try:
            self.protocol.connect(("127.0.0.1", port))
            await asyncio.wait_for(self.done.wait(), 10)
        finally:
            udp.close()


async def test_an_unknown_node_gets_nothing_even_if_it_subscribes_at_once(nodes, certs):
    track = object()  # whatever A would serve: it must never be looked up
    nodes.producers["A"]["shop", "TR_cam"] = track
    client = RawClient(certs["C"], encode_control(Hello("C")) + encode_control(Subscribe(2, "shop", "TR_cam")))
    await client.run(nodes.server.port)
    assert client.terminated.error_code == REFUSED
    assert (client.datagrams, client.stream) == ([], b"")
    assert nodes.lookups["A"] == []
    assert set(nodes.server.trunks) == {"B"}


async def test_a_hello_of_another_version_is_refused(nodes, certs):
    client = RawClient(certs["B"], encode_control(Hello("B", version=99)))
    await client.run(nodes.server.port)
    assert client.terminated.error_code == REFUSED
    assert "version 99" in client.terminated.reason_phrase


async def test_the_server_refuses_what_its_lookup_cannot_answer(certs, free_port):
    def broken(fingerprint):
        raise RuntimeError("directory down")

    a, b = certs["A"], certs["B"]
    async with TrunkServer("127.0.0.1", free_port, a.certificate, a.private_key, broken,
                           node_id="A") as server:
        with pytest.raises(TrunkRefused):
            await connect_trunk("127.0.0.1", server.port, b.certificate, b.private_key,
                                a.fingerprint, node_id="B")
        assert server.refused == 1


async def test_nobody_answering_is_a_timeout(certs, free_port):
    b = certs["B"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        with pytest.raises(TrunkTimeout):
            await connect_trunk("127.0.0.1", silent.getsockname()[1], b.certificate, b.private_key,
                                certs["A"].fingerprint, node_id="B",
                                settings=TrunkSettings(answer_timeout=0.5))


# -- the datagram cap, sans-IO: two aioquic connections in memory --------------------------

def handshake(certs, max_datagram_size: int, cid_length: int):
    settings = TrunkSettings(max_datagram_size=max_datagram_size)
    configs = []
    for name, is_client in (("B", True), ("A", False)):
        configuration = settings.quic(is_client=is_client, certificate=certs[name].certificate,
                                      key=certs[name].private_key)
        configuration.connection_id_length = cid_length
        configs.append(configuration)
    client = QuicConnection(configuration=configs[0])
    server = QuicConnection(configuration=configs[1],
                            original_destination_connection_id=client.original_destination_connection_id)
    _quic.request_client_certificate(server)
    now = 0.0
    client.connect(("10.0.0.2", 4433), now=now)
    for _ in range(20):
        now = exchange(client, server, now)
    assert _quic.peer_certificate(server).public_key() == certs["B"].certificate.public_key()
    return client, server, now


def exchange(client, server, now):
    for data, _ in client.datagrams_to_send(now):
        assert len(data) <= client.configuration.max_datagram_size
        server.receive_datagram(data, ("10.0.0.1", 1234), now)
    for data, _ in server.datagrams_to_send(now):
        client.receive_datagram(data, ("10.0.0.2", 4433), now)
    return now + 0.05


@pytest.mark.parametrize("max_datagram_size", [1200, 1452])
def test_a_datagram_at_the_cap_always_leaves_and_one_byte_more_may_never(certs, max_datagram_size):
    # with connection ids of 20 bytes (the most QUIC allows), the cap is tight
    client, server, now = handshake(certs, max_datagram_size, cid_length=20)
    cap = max_datagram_size - _quic.QUIC_DATAGRAM_OVERHEAD
    received = []
    client.send_datagram_frame(b"c" * cap)
    for _ in range(10):
        now = exchange(client, server, now)
        received += [e.data for e in iter(server.next_event, None)
                     if isinstance(e, events.DatagramFrameReceived)]
    assert received == [b"c" * cap]
    client.send_datagram_frame(b"x" * (cap + 1))
    client.send_datagram_frame(b"y" * 10)
    for _ in range(10):
        now = exchange(client, server, now)
    assert len(_quic.pending_datagrams(client)) == 2  # stuck, and the small one behind it
    assert _quic.remote_max_datagram_frame_size(client) == 65535


async def test_an_oversized_datagram_is_dropped_and_counted(nodes):
    b = nodes.b
    assert not b.send_datagram(b"\x00" + b"x" * b.datagram_cap)
    assert b.metrics.dropped_oversized == 1
    assert b.metrics.datagrams_out == 0
    assert b.send_datagram(b"\x00" + b"x" * (b.datagram_cap - 1))
    assert b.metrics.datagrams_out == 1


# -- lifetime ------------------------------------------------------------------------------

@pytest.fixture
def trunk_settings():
    return TrunkSettings(idle_timeout=1.0, keepalive_interval=0.3, unused_timeout=60)


async def test_a_dead_peer_is_noticed_by_the_idle_timeout(relayed):
    assert relayed.b.state is TrunkState.OPEN
    closed = []
    relayed.b.on_close.append(closed.append)
    relayed.relay.cut()  # A is unreachable from now on, and says nothing
    await asyncio.wait_for(relayed.b.wait_closed(), 10)
    assert closed == [relayed.b]
    assert relayed.b.close_reason == "Idle timeout"


async def test_keepalives_hold_a_quiet_trunk_open_past_the_idle_timeout(nodes):
    # no media crosses: only the keepalive PINGs keep the peers from timing out
    async def pinged(times):
        while nodes.b.metrics.pings_sent < times:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(pinged(8), 10)  # 8 x 0.3 s: more than twice the idle timeout
    assert nodes.a.state is nodes.b.state is TrunkState.OPEN


async def test_an_unused_trunk_closes(certs, free_port):
    pair = await open_nodes(certs, free_port, TrunkSettings(unused_timeout=0.2))
    try:
        await asyncio.wait_for(pair.b.wait_closed(), 5)
        assert "unused" in pair.b.close_reason or "unused" in pair.a.close_reason
    finally:
        await close_nodes(pair)


async def test_closing_one_end_closes_the_other(nodes):
    nodes.b.close("bye")
    await asyncio.wait_for(nodes.a.wait_closed(), 5)
    assert nodes.a.closed and nodes.a.close_reason == "bye"
    assert nodes.server.trunks == {}
