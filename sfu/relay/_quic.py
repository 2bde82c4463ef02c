"""The asyncio adapter of a trunk's QUIC connection, and every private aioquic name the
relay relies on (checked at import, as `sfu._aiortc_internals` does for aiortc).

aioquic (checked on 1.7) lacks three things a trunk needs, reached here and nowhere else:

- a server that asks the client for its certificate: ``tls.Context`` has the flag, named
  "for test purposes only" (``_request_client_certificate``), set on each connection as
  its TLS context is made;
- the certificate the peer presented (``tls._peer_certificate``), to pin it;
- the peer's ``max_datagram_frame_size`` and the queue of datagrams waiting to be sent
  (``send_datagram_frame`` checks neither size nor backlog);
- the delay before acknowledging (``_ack_delay``, fixed at 1 ms): media packets a few
  ms apart then cost one ACK each, and an ACK sent and received cost a third of a
  trunk's CPU per packet here. Up to the 25 ms ``max_ack_delay`` aioquic announces is
  within RFC 9000.

The adapter (`TrunkProtocol`) hands every QUIC event to one callback, sends what is
queued once per event-loop turn (`transmit_soon`), not once per packet, and keeps one
lazy timer: aioquic's next deadline moves later with almost every packet (the idle
timeout restarts), and re-arming a loop timer each time cost more than the packet.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from aioquic import tls
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.connection import QuicConnection
from cryptography import x509

from .errors import QuicInternalsChanged

__all__ = ["TrunkProtocol", "request_client_certificate", "peer_certificate",
           "remote_max_datagram_frame_size", "pending_datagrams", "set_ack_delay",
           "QUIC_DATAGRAM_OVERHEAD", "MAX_ACK_DELAY"]

QUIC_DATAGRAM_OVERHEAD = 1 + 20 + 2 + 16 + 1 + 2
"""Bytes of a 1-RTT QUIC packet around one DATAGRAM frame's payload: the short header
(flags, a connection id of at most 20 bytes, aioquic's 2-byte packet number), the AEAD
tag, the frame type and a 2-byte length. A payload of ``max_datagram_size`` minus this
always fits one packet, whatever the connection ids."""


def _check() -> None:
    # instance attributes are assigned in __init__, so their names are in its code
    known = set(QuicConnection.__init__.__code__.co_names) | set(dir(QuicConnection))
    missing = [f"QuicConnection.{name}" for name in
               ("_initialize", "_remote_max_datagram_frame_size", "_datagrams_pending",
                "_ack_delay")
               if name not in known]
    context = tls.Context(is_client=False)
    missing += [f"tls.Context.{name}" for name in ("_request_client_certificate", "_peer_certificate")
                if not hasattr(context, name)]
    if missing:
        raise QuicInternalsChanged(f"aioquic changed: {', '.join(missing)} missing; sfu.relay "
                                   f"was checked on aioquic 1.7")


_check()


def request_client_certificate(connection: QuicConnection) -> None:
    """Make the server side of ``connection`` ask its client for a certificate (call it
    before the first datagram is received: the TLS context is made then)."""
    initialize = connection._initialize

    def initialize_and_request(peer_cid: bytes) -> None:
        initialize(peer_cid)
        connection.tls._request_client_certificate = True

    connection._initialize = initialize_and_request  # type: ignore[method-assign]


def peer_certificate(connection: QuicConnection) -> x509.Certificate | None:
    """The certificate the peer presented (``None`` before the handshake, or if it sent none)."""
    context = getattr(connection, "tls", None)
    return None if context is None else context._peer_certificate


def remote_max_datagram_frame_size(connection: QuicConnection) -> int | None:
    """The largest DATAGRAM frame the peer takes (``None``: it takes none)."""
    return connection._remote_max_datagram_frame_size


def pending_datagrams(connection: QuicConnection) -> deque[bytes]:
    """The datagrams queued by ``send_datagram_frame`` and not yet in a packet (held back
    by congestion control or pacing)."""
    return connection._datagrams_pending


MAX_ACK_DELAY = 0.025
"""The ``max_ack_delay`` transport parameter aioquic announces: acknowledging later
would break the contract with the peer (its loss timers)."""


def set_ack_delay(connection: QuicConnection, seconds: float) -> None:
    """Acknowledge received packets ``seconds`` after the first unacknowledged one."""
    if not 0 < seconds <= MAX_ACK_DELAY:
        raise ValueError(f"an ACK delay from 0 to {MAX_ACK_DELAY} s, not {seconds}")
    connection._ack_delay = seconds


class TrunkProtocol(QuicConnectionProtocol):
    """aioquic's asyncio protocol, with each QUIC event given to ``on_event`` and
    sending batched: a received datagram or a queued frame schedules one transmit for
    the end of this loop turn."""

    def __init__(self, quic: QuicConnection, stream_handler: Any = None, *,
                 on_event: Callable[[events.QuicEvent], None] | None = None) -> None:
        super().__init__(quic, stream_handler)
        self.quic = quic
        self.on_event: Callable[[events.QuicEvent], None] = on_event or (lambda event: None)
        self._transmit_handle: asyncio.Handle | None = None
        self._wakeup: asyncio.TimerHandle | None = None
        self._wakeup_at = 0.0

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self._quic.receive_datagram(data, addr, now=self._loop.time())  # type: ignore[arg-type]
        self._process_events()
        self.transmit_soon()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        self.on_event(event)  # not aioquic's stream readers: the trunk reads its own frames

    def transmit_soon(self) -> None:
        if self._transmit_handle is None:
            self._transmit_handle = self._loop.call_soon(self._transmit_now)

    def _transmit_now(self) -> None:
        self._transmit_handle = None
        if self._transport is not None and not self._transport.is_closing():
            self.transmit()

    def transmit(self) -> None:
        """Send what aioquic has ready, then make sure a wakeup comes no later than its
        next deadline. A wakeup already set for earlier is kept: at worst it comes
        early, finds nothing due, and sets the next one."""
        loop, quic = self._loop, self._quic
        sendto = self._transport.sendto
        for data, addr in quic.datagrams_to_send(now=loop.time()):
            sendto(data, addr)
        when = quic.get_timer()
        if when is None:
            if self._wakeup is not None:
                self._wakeup.cancel()
                self._wakeup = None
        elif self._wakeup is None or when < self._wakeup_at:
            if self._wakeup is not None:
                self._wakeup.cancel()
            self._wakeup_at = when
            self._wakeup = loop.call_at(when, self._woken)

    def _woken(self) -> None:
        self._wakeup = None
        self._quic.handle_timer(now=max(self._wakeup_at, self._loop.time()))
        self._process_events()
        self.transmit()

    def connection_lost(self, exc: Exception | None) -> None:
        for handle in (self._transmit_handle, self._wakeup):
            if handle is not None:
                handle.cancel()
        self._transmit_handle = self._wakeup = None
