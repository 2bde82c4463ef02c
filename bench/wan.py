"""A userspace WAN emulator: delay, jitter, loss and rate between load clients and a server.

The kernel here has no ``netem``, so delay and jitter are made in userspace. The core,
:class:`WanLink`, is sans-IO (one direction of a path; aioquic's shape): datagrams and
``now`` go in with :meth:`WanLink.receive`, :meth:`WanLink.get_timer` says when the next
one is due, :meth:`WanLink.datagrams_to_send` hands out those that are. It never reads a
clock and never touches a socket, so its tests need neither.

The asyncio adapters are thin:

- :class:`UdpRelay`: one per peer connection, two UDP sockets on loopback. The client
  talks to the ``client_port`` socket as if it were the server; the server sees the
  ``server_port`` socket as the client. ICE works through it unchanged because each side
  is shown the relay's address in the SDP it receives (:func:`rewrite_candidates`):
  the server's candidate becomes ``client_port`` for the client, the client's candidate
  becomes ``server_port`` for the server. Neither side can reach the other directly.
- :class:`TcpDelayProxy`: the signalling websocket through the same delay and rate
  (TCP is never dropped here: it would only retransmit).

A profile's delay is one way and applies in each direction: ``--wan 75,5,1`` is a
150 ms round trip with 5 ms of jitter and 1% loss each way.
"""

from __future__ import annotations

import asyncio
import heapq
import random
from collections import deque
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace

__all__ = ["WanProfile", "WanLink", "LinkStats", "held_percentiles", "DuplexLink", "UdpRelay", "UdpProxy", "TcpDelayProxy",
           "rewrite_candidates", "sdp_candidate_address"]


@dataclass(frozen=True)
class WanProfile:
    """One direction of an emulated path.

    ``delay_ms`` one-way delay; ``jitter_ms`` each datagram's delay varies uniformly by
    up to that much either way; ``loss_pct`` random independent loss; ``rate_kbps`` a
    bottleneck (0: none) with a drop-tail queue of ``queue_ms`` of data; ``reorder``
    lets jitter reorder datagrams (netem does; most real paths mostly do not).
    """

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    rate_kbps: float = 0.0
    queue_ms: float = 200.0
    reorder: bool = False

    def __post_init__(self) -> None:
        for name in ("delay_ms", "jitter_ms", "loss_pct", "rate_kbps", "queue_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"WAN {name} must not be negative")
        if self.loss_pct > 100:
            raise ValueError("WAN loss_pct must be at most 100")

    @classmethod
    def parse(cls, text: str) -> WanProfile:
        """``"delay_ms,jitter_ms,loss_pct[,rate_kbps]"``, e.g. ``"75,5,1"``."""
        parts = [p.strip() for p in text.split(",")]
        if not 1 <= len(parts) <= 4 or not all(parts):
            raise ValueError(f"--wan wants delay_ms,jitter_ms,loss_pct[,rate_kbps], not {text!r}")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"--wan wants numbers, not {text!r}") from None
        names = ("delay_ms", "jitter_ms", "loss_pct", "rate_kbps")
        return cls(**dict(zip(names, values)))

    @property
    def rtt_ms(self) -> float:
        return 2 * self.delay_ms

    def lossless(self) -> WanProfile:
        """The same path for a reliable stream (TCP): delay and rate, no loss."""
        return replace(self, loss_pct=0.0, reorder=False)

    def describe(self) -> str:
        text = f"{self.rtt_ms:g} ms RTT, ±{self.jitter_ms:g} ms jitter, {self.loss_pct:g}% loss each way"
        if self.rate_kbps:
            text += f", {self.rate_kbps:g} kbit/s"
        return text


HELD_KEPT = 20_000
"""Datagrams whose holding time a link keeps, for `held_percentiles`."""


def held_percentiles(links: list[WanLink]) -> dict[str, float] | None:
    """p50/p95/p99 of the time the ``links`` held their latest datagrams, in ms: the
    delay a datagram really got (with jitter kept in order it exceeds the nominal one)."""
    values = sorted(v for link in links for v in link.held)
    if not values:
        return None
    pick = lambda q: round(1000 * values[min(len(values) - 1, int(q * len(values)))], 3)  # noqa: E731
    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99)}


@dataclass
class LinkStats:
    received: int = 0
    delivered: int = 0
    dropped_loss: int = 0
    dropped_queue: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(order=True)
class _Pending:
    due: float
    order: int
    data: bytes = field(compare=False)


class WanLink:
    """One direction of an emulated path (sans-IO). Times are seconds on any clock."""

    def __init__(self, profile: WanProfile, rng: random.Random | None = None) -> None:
        self.profile = profile
        self.stats = LinkStats()
        self._rng = rng or random.Random()
        self._delay = profile.delay_ms / 1000.0
        self._jitter = profile.jitter_ms / 1000.0
        self._loss = profile.loss_pct / 100.0
        self._bytes_per_s = profile.rate_kbps * 125.0  # kbit/s -> bytes/s
        self._queue_s = profile.queue_ms / 1000.0
        self._link_free = float("-inf")  # when the bottleneck finishes its last datagram
        self._last_due = float("-inf")
        self._heap: list[_Pending] = []
        self._order = 0
        self.held: deque[float] = deque(maxlen=HELD_KEPT)
        """How long each of the latest datagrams was held (s): the delay as emulated,
        jitter, the bottleneck's queue and the no-reorder rule included."""

    def receive(self, data: bytes, now: float) -> bool:
        """Offer one datagram to the link at ``now``; False if the link dropped it."""
        self.stats.received += 1
        if self._loss and self._rng.random() < self._loss:
            self.stats.dropped_loss += 1
            return False
        leave = now
        if self._bytes_per_s:
            start = max(now, self._link_free)
            if start - now > self._queue_s:
                self.stats.dropped_queue += 1
                return False
            self._link_free = start + len(data) / self._bytes_per_s
            leave = self._link_free
        due = leave + self._delay
        if self._jitter:
            due = max(leave, due + self._rng.uniform(-self._jitter, self._jitter))
        if not self.profile.reorder:
            due = max(due, self._last_due)
        self._last_due = due
        self.held.append(due - now)
        self._order += 1
        heapq.heappush(self._heap, _Pending(due, self._order, data))
        return True

    def get_timer(self) -> float | None:
        """When the next datagram is due, or None if none is queued."""
        return self._heap[0].due if self._heap else None

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """The datagrams due at ``now``, in the order they leave the link."""
        out = []
        heap = self._heap
        while heap and heap[0].due <= now:
            out.append(heapq.heappop(heap).data)
        self.stats.delivered += len(out)
        return out

    def __len__(self) -> int:
        return len(self._heap)


def rewrite_candidates(sdp: str, host: str, port: int) -> str:
    """Point every ICE candidate (and the m-line ports) of ``sdp`` at ``host:port``.

    Used on each SDP crossing a :class:`UdpRelay`: the receiver then sends only to the
    relay. Only UDP host candidates are expected (load clients and nodes on loopback).
    """
    out = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) >= 6:
                parts[4], parts[5] = host, str(port)
                line = " ".join(parts)
        elif line.startswith("m=") and not line.split()[1] == "0":
            parts = line.split()
            parts[1] = str(port)
            line = " ".join(parts)
        elif line.startswith("c=IN IP4 ") and host.count(".") == 3:
            line = f"c=IN IP4 {host}"
        out.append(line)
    return "\r\n".join(out) + "\r\n"


def sdp_candidate_address(sdp: str) -> tuple[str, int] | None:
    """The address of the first UDP candidate in ``sdp`` (where its sender listens)."""
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) >= 6 and parts[2].lower() == "udp":
                return parts[4], int(parts[5])
    return None


class DuplexLink:
    """Both directions of one emulated path, pumped on the running loop.

    ``send_up`` / ``send_down`` put a datagram on the wire once its link releases it
    (toward the server / toward the client). One timer at a time, armed for the earliest
    datagram due in either direction. Used by `UdpRelay` and by each client of `UdpProxy`.
    """

    def __init__(self, up: WanProfile, down: WanProfile, rng: random.Random,
                 send_up: Callable[[bytes], None], send_down: Callable[[bytes], None]) -> None:
        self.up = WanLink(up, random.Random(rng.random()))
        self.down = WanLink(down, random.Random(rng.random()))
        self.send_up = send_up
        self.send_down = send_down
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.closed = False

    def from_client(self, data: bytes) -> None:
        now = self._loop.time()
        self.up.receive(data, now)
        self._arm(now)

    def from_server(self, data: bytes) -> None:
        now = self._loop.time()
        self.down.receive(data, now)
        self._arm(now)

    def _arm(self, now: float) -> None:
        due = [t for t in (self.up.get_timer(), self.down.get_timer()) if t is not None]
        if not due or self.closed:
            return
        at = min(due)
        if self._timer is not None:
            if self._timer_at is not None and self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = self._timer_at = None
        now = self._loop.time()
        for data in self.up.datagrams_to_send(now):
            self.send_up(data)
        for data in self.down.datagrams_to_send(now):
            self.send_down(data)
        self._arm(now)

    def stats(self) -> dict[str, dict[str, int]]:
        return {"up": self.up.stats.as_dict(), "down": self.down.stats.as_dict()}

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()


class _Datagrams(asyncio.DatagramProtocol):
    """A UDP socket whose datagrams go to ``on_datagram(data, addr)``."""

    def __init__(self, on_datagram: Callable[[bytes, tuple], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.on_datagram(data, addr)


async def _udp_socket(host: str, port: int, on_datagram: Callable[[bytes, tuple], None]) -> _Datagrams:
    loop = asyncio.get_running_loop()
    _, side = await loop.create_datagram_endpoint(lambda: _Datagrams(on_datagram),
                                                  local_addr=(host, port))
    return side


class UdpRelay:
    """A per-peer-connection UDP relay on ``host`` through two :class:`WanLink`\\ s.

    ``client_port``: what the client is shown as the server's address;
    ``server_port``: what the server is shown as the client's. Call
    :meth:`set_server` with the server's address once it is known (from its SDP).
    """

    def __init__(self, up: WanProfile, down: WanProfile | None = None, *,
                 host: str = "127.0.0.1", seed: int | None = None) -> None:
        self.host = host
        self._profiles = (up, down or up)
        self._seed = seed
        self.server_addr: tuple | None = None
        self.client_addr: tuple | None = None
        self._client_side: _Datagrams | None = None
        self._server_side: _Datagrams | None = None
        self.link: DuplexLink | None = None
        self.closed = False

    async def start(self) -> UdpRelay:
        self.link = DuplexLink(*self._profiles, random.Random(self._seed),
                               self._to_server, self._to_client)
        self._client_side = await _udp_socket(self.host, 0, self._from_client)
        self._server_side = await _udp_socket(self.host, 0, self._from_server)
        return self

    @property
    def up(self) -> WanLink:
        return self.link.up

    @property
    def down(self) -> WanLink:
        return self.link.down

    @property
    def client_port(self) -> int:
        return self._client_side.transport.get_extra_info("sockname")[1]

    @property
    def server_port(self) -> int:
        return self._server_side.transport.get_extra_info("sockname")[1]

    def set_server(self, addr: tuple) -> None:
        self.server_addr = (addr[0], int(addr[1]))

    def _from_client(self, data: bytes, addr: tuple) -> None:
        self.client_addr = addr
        self.link.from_client(data)

    def _from_server(self, data: bytes, addr: tuple) -> None:
        if addr == self.server_addr:  # only the server this relay stands for
            self.link.from_server(data)

    def _to_server(self, data: bytes) -> None:
        if self.server_addr is not None:
            self._server_side.transport.sendto(data, self.server_addr)

    def _to_client(self, data: bytes) -> None:
        if self.client_addr is not None:
            self._client_side.transport.sendto(data, self.client_addr)

    def stats(self) -> dict[str, dict[str, int]]:
        return self.link.stats()

    def set_profile(self, up: WanProfile, down: WanProfile | None = None) -> None:
        """Change the path mid-call (a link that degrades, then recovers): datagrams
        already held keep their due times, the next ones get the new profile."""
        self._profiles = (up, down or up)
        for link, profile in zip((self.link.up, self.link.down), self._profiles):
            link.profile = profile
            link._delay, link._jitter = profile.delay_ms / 1000.0, profile.jitter_ms / 1000.0
            link._loss, link._queue_s = profile.loss_pct / 100.0, profile.queue_ms / 1000.0
            link._bytes_per_s = profile.rate_kbps * 125.0

    def close(self) -> None:
        self.closed = True
        if self.link is not None:
            self.link.close()
        for side in (self._client_side, self._server_side):
            if side is not None and side.transport is not None:
                side.transport.close()


class UdpProxy:
    """A standing UDP relay in front of one server, for any number of clients.

    Unlike `UdpRelay` (one peer connection whose addresses are rewritten in its SDP),
    this one stands at a fixed address that the clients are given as the server's:
    ``host``:``port`` (``port`` 0: any free one). Each client address gets its own upstream socket (the
    server sees one distinct address per client, as behind a NAT) and its own
    `DuplexLink`; a client silent for ``idle_s`` is forgotten. Used between cluster
    nodes: a node advertises its proxy as its trunk address (``--trunk-address``).
    """

    def __init__(self, target: tuple[str, int], up: WanProfile, down: WanProfile | None = None, *,
                 host: str = "127.0.0.1", port: int = 0, seed: int | None = None,
                 idle_s: float = 60.0) -> None:
        self.target = (target[0], int(target[1]))
        self.host, self._port = host, port
        self._profiles = (up, down or up)
        self._rng = random.Random(seed)
        self.idle_s = idle_s
        self._listen: _Datagrams | None = None
        self._clients: dict[tuple, tuple[DuplexLink, socket.socket, list[float]]] = {}
        self._retired = {"up": LinkStats(), "down": LinkStats()}
        self._sweeper: asyncio.Task | None = None

    async def start(self) -> UdpProxy:
        self._listen = await _udp_socket(self.host, self._port, self._from_client)
        self._sweeper = asyncio.ensure_future(self._sweep())
        return self

    @property
    def port(self) -> int:
        return self._listen.transport.get_extra_info("sockname")[1]

    @property
    def clients(self) -> int:
        return len(self._clients)

    def _from_client(self, data: bytes, addr: tuple) -> None:
        entry = self._clients.get(addr)
        if entry is None:
            entry = self._clients[addr] = self._open(addr)
        link, _, seen = entry
        seen[0] = asyncio.get_running_loop().time()
        link.from_client(data)

    def _open(self, addr: tuple) -> tuple[DuplexLink, socket.socket, list[float]]:
        """A client's own upstream socket (plain, non-blocking: ready at once, so its
        first datagram is not held back) and its link."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET,
                             socket.SOCK_DGRAM)
        sock.bind((self.host, 0))
        sock.setblocking(False)

        def to_server(data: bytes) -> None:
            try:
                sock.sendto(data, self.target)
            except OSError:
                pass  # a full buffer or a server that is gone: the datagram is lost, as on a WAN

        link = DuplexLink(*self._profiles, random.Random(self._rng.random()), to_server,
                          lambda data: self._listen.transport.sendto(data, addr))

        def readable() -> None:
            while True:
                try:
                    data, source = sock.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return  # e.g. ICMP port unreachable reported on the next read
                if source[:2] == self.target:
                    link.from_server(data)

        loop.add_reader(sock.fileno(), readable)
        return link, sock, [loop.time()]

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(5.0, self.idle_s / 2))
            now = loop.time()
            for addr, (_, _, seen) in list(self._clients.items()):
                if now - seen[0] > self.idle_s:
                    self._forget(addr)

    def _forget(self, addr: tuple) -> None:
        link, sock, _ = self._clients.pop(addr)
        for name, one in (("up", link.up), ("down", link.down)):
            for key, value in one.stats.as_dict().items():
                setattr(self._retired[name], key, getattr(self._retired[name], key) + value)
        link.close()
        asyncio.get_running_loop().remove_reader(sock.fileno())
        sock.close()

    def held_ms(self) -> dict[str, dict[str, float] | None]:
        """How long datagrams were held each way (`held_percentiles`), clients open now."""
        return {name: held_percentiles([getattr(link, name) for link, _, _ in self._clients.values()])
                for name in ("up", "down")}

    def stats(self) -> dict[str, dict[str, int]]:
        """Datagrams offered, delivered and dropped each way, over every client so far."""
        out = {}
        for name in ("up", "down"):
            total = dict(self._retired[name].as_dict())
            for link, _, _ in self._clients.values():
                for key, value in getattr(link, name).stats.as_dict().items():
                    total[key] += value
            out[name] = total
        return out

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for addr in list(self._clients):
            self._forget(addr)
        if self._listen is not None and self._listen.transport is not None:
            self._listen.transport.close()


class TcpDelayProxy:
    """Forward TCP connections from ``host:port`` to ``target`` through lossless links.

    Each chunk read is delivered after the link's delay, in order (a websocket's
    round trips then take the emulated RTT).
    """

    def __init__(self, target: tuple[str, int], profile: WanProfile, *,
                 host: str = "127.0.0.1", seed: int | None = None) -> None:
        self.target = target
        self.profile = profile.lossless()
        self.host = host
        self._rng = random.Random(seed)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> TcpDelayProxy:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        return self

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer)),
            asyncio.ensure_future(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        link = WanLink(self.profile, random.Random(self._rng.random()))
        wake = asyncio.Event()
        eof = False

        async def deliver() -> None:
            while True:
                due = link.get_timer()
                if due is None:
                    if eof:
                        return
                    wake.clear()
                    await wake.wait()
                    continue
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                for chunk in link.datagrams_to_send(loop.time()):
                    writer.write(chunk)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                link.receive(chunk, loop.time())
                wake.set()
        finally:
            eof = True
            wake.set()
            try:
                await sender
                if writer.can_write_eof():
                    writer.write_eof()
            except (OSError, RuntimeError):
                pass  # the other side is gone already
            finally:
                sender.cancel()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
