"""The WAN emulator: the sans-IO link, SDP rewriting, and the asyncio relays on loopback."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from bench.wan import (TcpDelayProxy, UdpProxy, UdpRelay, WanLink, WanProfile, held_percentiles,
                       rewrite_candidates, sdp_candidate_address)
from bench.wanrelay import parse_address


def test_profile_parse():
    p = WanProfile.parse("75,5,1")
    assert (p.delay_ms, p.jitter_ms, p.loss_pct, p.rate_kbps) == (75, 5, 1, 0)
    assert p.rtt_ms == 150
    assert WanProfile.parse("10,0,0,2000").rate_kbps == 2000
    assert p.lossless().loss_pct == 0 and p.lossless().delay_ms == 75
    for bad in ("", "a,b", "1,2,3,4,5", "-1,0,0", "1,0,101"):
        with pytest.raises(ValueError):
            WanProfile.parse(bad)


def test_delay_holds_datagrams_until_due():
    link = WanLink(WanProfile(delay_ms=50))
    assert link.get_timer() is None
    assert link.receive(b"a", 10.0)
    assert link.get_timer() == pytest.approx(10.05)
    assert link.datagrams_to_send(10.049) == []
    assert link.datagrams_to_send(10.05) == [b"a"]
    assert link.get_timer() is None
    assert link.stats.delivered == 1


def test_jitter_keeps_order_unless_reordering_is_allowed():
    rng = random.Random(7)
    link = WanLink(WanProfile(delay_ms=20, jitter_ms=15), rng)
    for i in range(200):
        link.receive(bytes([i]), i * 0.001)
    out = link.datagrams_to_send(10.0)
    assert out == [bytes([i]) for i in range(200)]

    reorder = WanLink(WanProfile(delay_ms=20, jitter_ms=15, reorder=True), random.Random(7))
    for i in range(200):
        reorder.receive(bytes([i]), i * 0.001)
    out = reorder.datagrams_to_send(10.0)
    assert sorted(out) == [bytes([i]) for i in range(200)] and out != sorted(out)


def test_jitter_bounds():
    link = WanLink(WanProfile(delay_ms=20, jitter_ms=5, reorder=True), random.Random(1))
    for i in range(500):
        link.receive(b"x", 0.0)
    dues = sorted(p.due for p in link._heap)
    assert 0.015 <= dues[0] and dues[-1] <= 0.025


def test_loss_rate_is_close_to_the_profile():
    link = WanLink(WanProfile(loss_pct=10), random.Random(3))
    kept = sum(link.receive(b"x", 0.0) for _ in range(10000))
    assert 8700 < kept < 9300
    assert link.stats.dropped_loss == 10000 - kept


def test_rate_limit_serialises_and_drops_past_the_queue():
    # 80 kbit/s = 10,000 bytes/s: a 1000-byte datagram takes 100 ms on the wire
    link = WanLink(WanProfile(rate_kbps=80, queue_ms=250))
    # the third waits 200 ms for the wire, the fourth would wait 300 ms: over the queue
    assert [link.receive(bytes(1000), 0.0) for _ in range(4)] == [True, True, True, False]
    assert link.stats.dropped_queue == 1
    assert link.datagrams_to_send(0.1) == [bytes(1000)]
    assert link.datagrams_to_send(0.25) == [bytes(1000)]
    assert len(link.datagrams_to_send(0.31)) == 1
    assert link.receive(bytes(1000), 0.31)  # the queue has drained


OFFER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "m=video 5000 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 127.0.0.1\r\n"
    "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"
    "m=audio 5000 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 127.0.0.1\r\n"
    "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"
)


def test_rewrite_candidates_points_every_section_at_the_relay():
    assert sdp_candidate_address(OFFER) == ("127.0.0.1", 5000)
    out = rewrite_candidates(OFFER, "127.0.0.1", 6001)
    assert sdp_candidate_address(out) == ("127.0.0.1", 6001)
    assert "5000" not in out
    assert out.count("m=video 6001 ") == 1 and out.count("m=audio 6001 ") == 1


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class _Client(asyncio.DatagramProtocol):
    def __init__(self):
        self.got: asyncio.Queue = asyncio.Queue()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.got.put_nowait((data, time.monotonic()))


async def test_udp_relay_adds_the_delay_both_ways():
    loop = asyncio.get_running_loop()
    server, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    relay = await UdpRelay(WanProfile(delay_ms=30), seed=1).start()
    relay.set_server(server.get_extra_info("sockname"))
    client, proto = await loop.create_datagram_endpoint(_Client, local_addr=("127.0.0.1", 0))
    try:
        t0 = time.monotonic()
        client.sendto(b"ping", ("127.0.0.1", relay.client_port))
        data, at = await asyncio.wait_for(proto.got.get(), 2)
        assert data == b"ping"
        assert at - t0 >= 0.058  # 30 ms each way
        stats = relay.stats()
        assert stats["up"]["delivered"] == 1 and stats["down"]["delivered"] == 1
    finally:
        relay.close()
        client.close()
        server.close()


async def test_udp_relay_ignores_strangers_on_the_server_side():
    loop = asyncio.get_running_loop()
    relay = await UdpRelay(WanProfile(), seed=1).start()
    relay.set_server(("127.0.0.1", 9))
    stranger, _ = await loop.create_datagram_endpoint(_Client, local_addr=("127.0.0.1", 0))
    try:
        stranger.sendto(b"x", ("127.0.0.1", relay.server_port))
        await asyncio.sleep(0.05)
        assert relay.down.stats.received == 0
    finally:
        relay.close()
        stranger.close()


class _Recorder(asyncio.DatagramProtocol):
    """A server that answers each datagram with the address it came from."""

    def connection_made(self, transport):
        self.transport = transport
        self.seen = []

    def datagram_received(self, data, addr):
        self.seen.append(addr)
        self.transport.sendto(data + b"|" + repr(addr).encode(), addr)


async def test_udp_proxy_serves_many_clients_each_through_its_own_link():
    loop = asyncio.get_running_loop()
    server, recorder = await loop.create_datagram_endpoint(_Recorder, local_addr=("127.0.0.1", 0))
    proxy = await UdpProxy(server.get_extra_info("sockname"), WanProfile(delay_ms=20), seed=3).start()
    clients = [await loop.create_datagram_endpoint(_Client, local_addr=("127.0.0.1", 0))
               for _ in range(3)]
    try:
        t0 = time.monotonic()
        for i, (transport, _) in enumerate(clients):
            transport.sendto(b"hello-%d" % i, ("127.0.0.1", proxy.port))
        answers = [await asyncio.wait_for(proto.got.get(), 2) for _, proto in clients]
        # each client gets its own answer back, after the delay both ways
        for i, (data, at) in enumerate(answers):
            assert data.startswith(b"hello-%d|" % i)
            assert at - t0 >= 0.038
        # the server saw three distinct sources, none of them a client's own address
        client_addrs = {t.get_extra_info("sockname") for t, _ in clients}
        assert len(set(recorder.seen)) == 3 and not set(recorder.seen) & client_addrs
        assert proxy.clients == 3
        assert proxy.stats()["up"]["delivered"] == 3 and proxy.stats()["down"]["delivered"] == 3
    finally:
        proxy.close()
        for transport, _ in clients:
            transport.close()
        server.close()


async def test_udp_proxy_drops_what_its_profile_loses():
    loop = asyncio.get_running_loop()
    server, recorder = await loop.create_datagram_endpoint(_Recorder, local_addr=("127.0.0.1", 0))
    proxy = await UdpProxy(server.get_extra_info("sockname"), WanProfile(loss_pct=100), seed=3).start()
    client, proto = await loop.create_datagram_endpoint(_Client, local_addr=("127.0.0.1", 0))
    try:
        for _ in range(20):
            client.sendto(b"x", ("127.0.0.1", proxy.port))
        await asyncio.sleep(0.1)
        assert recorder.seen == [] and proto.got.empty()
        assert proxy.stats()["up"] == {"received": 20, "delivered": 0, "dropped_loss": 20,
                                       "dropped_queue": 0}
    finally:
        proxy.close()
        client.close()
        server.close()


async def test_wanrelay_process_relays_and_writes_its_counts(tmp_path):
    import json
    import socket
    import subprocess
    import sys

    loop = asyncio.get_running_loop()
    server, recorder = await loop.create_datagram_endpoint(_Recorder, local_addr=("127.0.0.1", 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = server.get_extra_info("sockname")
    stats = tmp_path / "relay.json"
    proc = subprocess.Popen([sys.executable, "-m", "bench.wanrelay", "--listen", f"127.0.0.1:{port}",
                             "--target", f"{target[0]}:{target[1]}", "--wan", "5,0,0",
                             "--stats", str(stats)], stdout=subprocess.PIPE, text=True)
    client, proto = await loop.create_datagram_endpoint(_Client, local_addr=("127.0.0.1", 0))
    try:
        assert "wanrelay:" in await asyncio.to_thread(proc.stdout.readline)
        client.sendto(b"through", ("127.0.0.1", port))
        data, _ = await asyncio.wait_for(proto.got.get(), 5)
        assert data.startswith(b"through|")
    finally:
        proc.terminate()
        assert await asyncio.to_thread(proc.wait, 10) == 0
        client.close()
        server.close()
    counts = json.loads(stats.read_text())
    assert counts["up"]["delivered"] == 1 and counts["down"]["delivered"] == 1
    assert counts["held_ms"]["down"]["p50"] == 5.0


def test_held_percentiles_say_the_delay_a_datagram_really_got():
    steady = WanLink(WanProfile(delay_ms=75), random.Random(1))
    jittery = WanLink(WanProfile(delay_ms=75, jitter_ms=5), random.Random(1))
    for i in range(2000):  # a datagram a millisecond
        steady.receive(b"x", i / 1000)
        jittery.receive(b"x", i / 1000)
    assert held_percentiles([steady]) == {"p50": 75.0, "p95": 75.0, "p99": 75.0}
    # kept in order, jitter only ever adds: a datagram waits for the one before it
    held = held_percentiles([jittery])
    assert 75 < held["p50"] <= 80 and held["p99"] <= 80
    assert held_percentiles([WanLink(WanProfile())]) is None


def test_wanrelay_addresses():
    assert parse_address("127.0.0.1:9001") == ("127.0.0.1", 9001)
    assert parse_address("[::1]:9001") == ("::1", 9001)
    for bad in ("127.0.0.1", ":80", "host:port", "h:70000", ""):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_address(bad)


async def test_tcp_delay_proxy_round_trip():
    async def echo(reader, writer):
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = await TcpDelayProxy(("127.0.0.1", port), WanProfile(delay_ms=25, loss_pct=50)).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        t0 = time.monotonic()
        writer.write(b"hello")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(5), 2) == b"hello"  # never lost
        assert time.monotonic() - t0 >= 0.048
        writer.close()
    finally:
        await proxy.close()
        server.close()
