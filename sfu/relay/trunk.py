"""A trunk: the one QUIC connection between two nodes that carries every track one of
them takes from the other.

`sfu.relay.endpoints.TrunkServer` listens for other nodes, `connect_trunk` opens a trunk
to one; both give a `Trunk` once the TLS handshake and the ``hello`` exchange are done. Each node presents
its own self-signed certificate (`sfu.relay.certs`) and pins the other's by its SHA-256
fingerprint: the client by ``expected_fingerprint``, the server through ``accept_peer``
(fingerprint -> node id, or ``None``: refused). A refused trunk is closed before a single
control message or datagram of it is read.

On an open trunk, ``await trunk.subscribe(room, track_id)`` gives a `RemoteProducer` (an
ordinary `sfu.Producer` fed from the trunk), and the far node's subscriptions are
served from ``find_producer(room, track_id)`` by `ProducerExport`. Media rides in QUIC
DATAGRAM frames (`sfu.relay.framing`), each checked against `Trunk.datagram_cap` before
it is queued: aioquic queues an oversized datagram forever and everything behind it.

A silent peer is dead after ``idle_timeout`` (keepalive PINGs keep a quiet trunk
alive); a trunk with no flow closes after ``unused_timeout``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from cryptography import x509

from ..clock import Clock, Scheduler
from ..producer import Producer
from . import _quic, congestion
from .certs import fingerprint
from .errors import MalformedFrame, RelayError, TrunkClosed, TrunkRefused, TrunkTimeout
from .export import ExportTable
from .framing import (
    VERSION,
    ControlMessage,
    ControlReader,
    ErrorMessage,
    Hello,
    decode_varint,
    encode_control,
)
from .remote import ImportTable, RemoteProducer

__all__ = ["Trunk", "TrunkSettings", "TrunkMetrics", "TrunkState", "FindProducer", "ALPN",
           "REFUSED"]

logger = logging.getLogger(__name__)

ALPN = "dockcast-trunk/1"
REFUSED = 0x101
"""The QUIC application error code a node closes a trunk with when it refuses the other
(certificate not pinned, wrong node id or version)."""

FindProducer = Callable[[str, str], Producer | None]


@dataclass(frozen=True)
class TrunkSettings:
    """How a trunk behaves; both nodes should agree on ``max_datagram_size``."""

    max_datagram_size: int = 1452
    """UDP payload of a QUIC packet. 1452 fits a 1500-byte Ethernet MTU over IPv6; 1200
    (QUIC's minimum) is safe on any path."""
    idle_timeout: float = 3.0
    """A peer silent this long is dead: the trunk closes and its flows with it."""
    keepalive_interval: float = 1.0
    """PING this often, so a quiet live trunk never reaches ``idle_timeout``."""
    unused_timeout: float = 30.0
    """Close a trunk that has had no flow either way for this long."""
    answer_timeout: float = 5.0
    """How long to wait for ``hello`` and for the answer to a ``subscribe``."""
    max_queued_datagrams: int = 512
    """Datagrams held back by QUIC's congestion control before more are dropped."""
    early_datagrams: int = 256
    """Datagrams of a flow kept while its ``subscribed`` is on its way (DATAGRAM frames
    go out ahead of stream data, so the first media often arrives first)."""
    ack_delay: float = 0.02
    """Acknowledge packets this long after the first unacknowledged one (aioquic's own
    1 ms made an ACK per media packet; at most 25 ms)."""
    congestion_control: str = "trunk"
    """``trunk``: `congestion.TrunkCongestionControl` (a window for ``max_bitrate``,
    not cut by random loss); or one of aioquic's, ``reno`` / ``cubic``."""
    max_bitrate: int = congestion.DEFAULT_MAX_BITRATE
    """With the ``trunk`` controller: the most bits per second the trunk sends."""

    def __post_init__(self) -> None:
        if self.max_datagram_size < 1200:
            raise ValueError(f"max_datagram_size is at least 1200 (QUIC), not {self.max_datagram_size}")
        if not 0 < self.keepalive_interval < self.idle_timeout:
            raise ValueError("keepalive_interval must be positive and under idle_timeout")
        if self.congestion_control not in ("trunk", "reno", "cubic"):
            raise ValueError(f"congestion_control is trunk, reno or cubic, not {self.congestion_control!r}")
        if self.max_bitrate < 100_000:
            raise ValueError(f"max_bitrate is at least 100 kbit/s, not {self.max_bitrate}")
        if not 0 < self.ack_delay <= _quic.MAX_ACK_DELAY:
            raise ValueError(f"ack_delay is over 0 and at most {_quic.MAX_ACK_DELAY} s")

    def quic(self, *, is_client: bool, certificate: x509.Certificate, key: Any) -> QuicConfiguration:
        configuration = QuicConfiguration(
            is_client=is_client, alpn_protocols=[ALPN], certificate=certificate, private_key=key,
            max_datagram_size=self.max_datagram_size, max_datagram_frame_size=65535,
            idle_timeout=self.idle_timeout,
            congestion_control_algorithm=(congestion.register(self.max_bitrate)
                                          if self.congestion_control == "trunk"
                                          else self.congestion_control))
        configuration.verify_mode = ssl.CERT_NONE  # no CA: the certificate is pinned instead
        return configuration


@dataclass
class TrunkMetrics:
    """Counters of one trunk (``flows`` is `Trunk.flows`)."""

    datagrams_in: int = 0
    datagrams_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped_oversized: int = 0
    dropped_congested: int = 0
    malformed: int = 0
    pings_sent: int = 0
    nacked: int = 0              # packets asked again of the origin (lost on the way in)
    retransmitted: int = 0       # packets sent again to the far node, answering its NACKs
    keyframe_requests: int = 0   # keyframes the far node asked of this node's publishers

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class TrunkState(enum.Enum):
    HANDSHAKE = "handshake"   # TLS under way
    HELLO = "hello"           # the peer's certificate is pinned; waiting for its hello
    OPEN = "open"
    CLOSED = "closed"


class Trunk:
    """One trunk between this node (``node_id``) and ``peer_node_id``.

    ``on_close`` callbacks are told ``(trunk)`` once it closed (by either side, or lost).
    """

    def __init__(self, protocol: _quic.TrunkProtocol, *, node_id: str, is_client: bool,
                 settings: TrunkSettings, check_peer: Callable[[str], str | None],
                 find_producer: FindProducer | None = None) -> None:
        self.node_id = node_id
        self.is_client = is_client
        self.settings = settings
        self.state = TrunkState.HANDSHAKE
        self.peer_node_id: str | None = None
        self.peer_fingerprint: str | None = None
        self.close_reason: str | None = None
        self.refused = False
        self.metrics = TrunkMetrics()
        self.datagram_cap = settings.max_datagram_size - _quic.QUIC_DATAGRAM_OVERHEAD
        self.on_close: list[Callable[[Trunk], None]] = []
        self._protocol = protocol
        self._quic = protocol.quic
        self._queued = _quic.pending_datagrams(self._quic)
        _quic.set_ack_delay(self._quic, settings.ack_delay)
        self._check_peer = check_peer
        self._expected_node: str | None = None
        self._reader = ControlReader()
        self._control_stream: int | None = None
        self._loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = self._loop.create_future()
        """Done once the trunk is open, or with the error that ended it before."""
        self._closed = asyncio.Event()
        self._keepalive: asyncio.TimerHandle | None = None
        self._unused: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = self._loop.call_later(
            settings.answer_timeout, self._open_too_late)
        self._udp: asyncio.BaseTransport | None = None  # the client's own socket
        self.exports = ExportTable(self, find_producer)
        self.imports = ImportTable(self, flow_base=0 if is_client else 2)
        self._handlers: dict[type[ControlMessage], Callable[[Any], None]] = {
            **self.exports.handlers(), **self.imports.handlers()}
        protocol.on_event = self._on_event

    # -- public ----------------------------------------------------------------------

    @property
    def flows(self) -> int:
        """Subscriptions on this trunk, both ways (pending ones included)."""
        return len(self.exports) + len(self.imports)

    async def subscribe(self, room: str, track_id: str, *, clock: Clock | None = None,
                        scheduler: Scheduler | None = None) -> RemoteProducer:
        """The far node's track ``track_id`` of ``room``, as a producer of this node (the
        same one for every call while it is open: one flow per track). Raises
        `SubscribeRefused` (``not_found``, ...), `TrunkClosed` or `TrunkTimeout`."""
        self._check_open()
        return await self.imports.subscribe(room, track_id, clock=clock, scheduler=scheduler)

    def unsubscribe(self, flow: int) -> None:
        """End our subscription ``flow``: the far node stops sending, the producer closes."""
        self.imports.unsubscribe(flow)

    def close(self, reason: str = "closed") -> None:
        """Close the trunk (idempotent): every flow ends, the far node is told."""
        self._close(0, reason)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self.state is TrunkState.CLOSED

    def stats(self) -> dict[str, Any]:
        return {"peer": self.peer_node_id, "state": self.state.value, "flows": self.flows,
                **self.metrics.as_dict()}

    # -- sending (for exports and imports) -------------------------------------------

    def send_datagram(self, data: bytes) -> bool:
        """Queue one datagram; ``False`` (and counted) when it is over `datagram_cap`,
        congestion holds back too many already, or the trunk is not open. Runs on the
        packet path: no await, one transmit per loop turn."""
        if len(data) > self.datagram_cap:
            self.metrics.dropped_oversized += 1
            return False
        if self.state is not TrunkState.OPEN:
            return False
        if len(self._queued) >= self.settings.max_queued_datagrams:
            self.metrics.dropped_congested += 1
            return False
        self._quic.send_datagram_frame(data)
        self.metrics.datagrams_out += 1
        self.metrics.bytes_out += len(data)
        self._protocol.transmit_soon()
        return True

    def send_control(self, message: ControlMessage) -> None:
        if self._control_stream is None or self.state is TrunkState.CLOSED:
            return
        self._quic.send_stream_data(self._control_stream, encode_control(message))
        self._protocol.transmit_soon()

    def flows_changed(self) -> None:
        """Start or stop the countdown that closes an unused trunk."""
        if self.flows or self.state is not TrunkState.OPEN:
            if self._unused is not None:
                self._unused.cancel()
                self._unused = None
        elif self._unused is None:
            self._unused = self._loop.call_later(self.settings.unused_timeout, self._unused_due)

    # -- QUIC events -----------------------------------------------------------------

    def _on_event(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.DatagramFrameReceived):
            if self.state is TrunkState.OPEN:
                self._datagram(event.data)
        elif isinstance(event, events.StreamDataReceived):
            self._stream_data(event)
        elif isinstance(event, events.HandshakeCompleted):
            self._handshake_completed()
        elif isinstance(event, events.ConnectionTerminated):
            self._terminated(event)

    def _datagram(self, data: bytes) -> None:
        metrics = self.metrics
        metrics.datagrams_in += 1
        metrics.bytes_in += len(data)
        first = data[0] if data else 0xFF
        if first < 0x40:  # a one-byte flow id: the first 16 flows, the usual case
            flow, start = first, 1
        else:
            try:
                flow, start = decode_varint(data)
            except MalformedFrame:
                metrics.malformed += 1
                return
        if (flow & 2) == self.imports.flow_base:
            self.imports.datagram(flow, data, start)
        else:
            self.exports.datagram(flow, data, start)

    def _handshake_completed(self) -> None:
        if self.state is not TrunkState.HANDSHAKE:
            return
        certificate = _quic.peer_certificate(self._quic)
        peer = fingerprint(certificate) if certificate is not None else None
        node = self._check_peer(peer) if peer is not None else None
        if node is None:
            self._close(REFUSED, f"certificate {peer or '(none)'} is not pinned")
            return
        if _quic.remote_max_datagram_frame_size(self._quic) is None:
            self._close(REFUSED, "the peer takes no QUIC datagrams")
            return
        self.peer_fingerprint, self._expected_node = peer, node
        self.state = TrunkState.HELLO
        if self.is_client:
            self._control_stream = self._quic.get_next_available_stream_id()
            self.send_control(Hello(self.node_id))

    def _stream_data(self, event: events.StreamDataReceived) -> None:
        if self.state not in (TrunkState.HELLO, TrunkState.OPEN):
            return  # not pinned yet, or refused: nothing of it is read
        if self._control_stream is None and not self.is_client and event.stream_id == 0:
            self._control_stream = 0
        if event.stream_id != self._control_stream:
            self._close(REFUSED, f"data on stream {event.stream_id}: only the control stream is used")
            return
        try:
            messages = self._reader.feed(event.data)
        except MalformedFrame as exc:
            self._close(REFUSED, f"control stream: {exc}")
            return
        for message in messages:
            if self.state is TrunkState.CLOSED:
                return
            if self.state is TrunkState.HELLO:
                self._hello(message)
            else:
                handler = self._handlers.get(type(message))
                if handler is not None:
                    handler(message)
        if event.end_stream and self.state is not TrunkState.CLOSED:
            self._close(0, "the control stream ended")

    def _hello(self, message: ControlMessage) -> None:
        if isinstance(message, ErrorMessage):
            self._close(REFUSED, f"refused by the peer: {message.code}: {message.message}")
            return
        problem = None
        if not isinstance(message, Hello):
            problem = f"{message.TYPE} before hello"
        elif message.version != VERSION:
            problem = f"version {message.version} (this node speaks {VERSION})"
        elif self._expected_node and message.node_id != self._expected_node:
            problem = f"node {message.node_id!r} presents the certificate of {self._expected_node!r}"
        if problem is not None:
            self.send_control(ErrorMessage(None, "forbidden", problem))
            self._close(REFUSED, problem)
            return
        self.peer_node_id = message.node_id
        if not self.is_client:
            self.send_control(Hello(self.node_id))
        self.state = TrunkState.OPEN
        self._deadline.cancel()
        self._keepalive = self._loop.call_later(self.settings.keepalive_interval, self._ping)
        self.flows_changed()
        if not self.opened.done():
            self.opened.set_result(None)

    def _terminated(self, event: events.ConnectionTerminated) -> None:
        # not closed here (that tore down already): the peer closed it, or it timed out
        refused = event.error_code == REFUSED
        reason = event.reason_phrase or "closed"
        self._teardown(f"refused by the peer: {reason}" if refused else reason,
                       TrunkRefused if refused else TrunkClosed)
        self.connection_gone()

    def attach_socket(self, udp: asyncio.BaseTransport) -> None:
        """The trunk owns ``udp`` (a client's own socket): closed with the connection."""
        self._udp = udp

    def connection_gone(self) -> None:
        """The connection is gone for good, or its socket closed: nothing more comes."""
        self._closed.set()
        if self._udp is not None:
            self._udp.close()

    # -- timers and closing ----------------------------------------------------------

    def _ping(self) -> None:
        self._keepalive = None
        if self.state is TrunkState.OPEN:
            self._quic.send_ping(0)
            self.metrics.pings_sent += 1
            self._protocol.transmit_soon()
            self._keepalive = self._loop.call_later(self.settings.keepalive_interval, self._ping)

    def _open_too_late(self) -> None:
        self._deadline = None
        if self.state in (TrunkState.HANDSHAKE, TrunkState.HELLO):
            reason = f"not open after {self.settings.answer_timeout:g} s"
            self._protocol.close(error_code=REFUSED, reason_phrase=reason)
            self._teardown(reason, TrunkTimeout)

    def _unused_due(self) -> None:
        self._unused = None
        if not self.flows:
            self.close(f"unused for {self.settings.unused_timeout:g} s")

    def _check_open(self) -> None:
        if self.state is not TrunkState.OPEN:
            raise TrunkClosed(f"trunk to {self.peer_node_id or 'a peer'} is {self.state.value}")

    def _close(self, code: int, reason: str) -> None:
        if self.state is TrunkState.CLOSED:
            return
        self._protocol.close(error_code=code, reason_phrase=reason[:200])
        self._teardown(reason, TrunkRefused if code == REFUSED else TrunkClosed)

    def _teardown(self, reason: str, error_class: type[RelayError]) -> None:
        if self.state is TrunkState.CLOSED:
            return
        self.state = TrunkState.CLOSED
        self.close_reason, self.refused = reason, error_class is TrunkRefused
        for timer in (self._keepalive, self._unused, self._deadline):
            if timer is not None:
                timer.cancel()
        error = error_class(f"trunk to {self.peer_node_id or 'a peer'}: {reason}")
        if not self.opened.done():
            self.opened.set_exception(error)
            self.opened.exception()  # retrieved: nobody may be waiting
        self.imports.close_all(reason, error)
        self.exports.close_all()
        for callback in list(self.on_close):
            try:
                callback(self)
            except Exception:  # an observer's bug must not keep the trunk half open
                logger.exception("trunk to %s: on_close callback failed", self.peer_node_id)

