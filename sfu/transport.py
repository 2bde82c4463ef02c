"""WebRtcTransport: one peer connection whose media bypasses aiortc's RTP stack.

aiortc does ICE, DTLS, SRTP key setup and SDP. Once the ICE pair is nominated, every
datagram whose first byte says RTP/RTCP (128-191, RFC 7983) is taken from the pair's
``StunProtocol.datagram_received`` before aioice's STUN parser sees it (which would
raise and catch a ``ValueError`` on each); STUN (consent checks) and DTLS go on to
aioice. Packets on any other socket of the ICE connection are still taken at aioice's
``Connection.data_received`` (where its parser hands what is not STUN). Once DTLS is
up they are decrypted with the transport's SRTP session and handed to
``on_rtp(data, arrival)`` / ``on_rtcp(data)`` synchronously: no queue, no coroutine, no
``RtpPacket`` per packet. Both hooks are removed when the connection fails or closes,
so that aioice's objects keep no reference to the transport. Outgoing packets are
protected and written to the nominated ICE pair's socket synchronously
(:meth:`send_rtp`, :meth:`send_rtcp`).

An m-line whose packets the SFU writes carries an :class:`IdleTrack`, which never
yields a frame: no encoder runs, and aiortc's RTP loop for its sender ends as soon as
it starts (no task per m-line). The RTCP aiortc's senders write passes through
``rtcp_out_filter``, which the SFU uses to drop their sender reports (NTP 0) in
favour of translated ones; a subscriber's senders run no RTCP loop at all
(``quiet_sender_reports``: the BYE is sent when the sender stops). What an idle
subscriber connection still costs the node is aioice's consent check (one every
4-6 s, RFC 7675), answering the peer's, and the participant's own timers.

This is the adapter between the SFU and aiortc: what it needs of aiortc's, aioice's
and pylibsrtp's private attributes it gets from :mod:`sfu._aiortc_internals`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCConfiguration

from . import _aiortc_internals as internals
from . import ice
from .clock import SYSTEM_CLOCK, Clock
from .errors import Closed, NegotiationError
from .extensions import SIMULCAST_EXTENSIONS
from .rtp import is_rtcp
from .rtx import with_opus_fec
from .simulcast_sdp import SimulcastOffer, amend_answer, parse_simulcast
from .transport_cc_sdp import answered_ids, offer_transport_cc

__all__ = ["WebRtcTransport", "TransportStats", "IdleTrack", "sender_ssrc", "negotiated_codecs",
           "header_extension_ids"]

# What an aiortc transceiver negotiated, for peers built on this transport (the load
# clients of bench/): public here, read from aiortc's private fields in one place.
sender_ssrc = internals.sender_ssrc
negotiated_codecs = internals.negotiated_codecs
header_extension_ids = internals.header_extension_ids

logger = logging.getLogger(__name__)

# Peers with an RSA DTLS certificate (GStreamer's webrtcbin) can connect when the node
# is the DTLS client: aiortc alone offers ECDHE-ECDSA suites only (docs/media.md, Interop).
internals.accept_rsa_dtls_peers()

RtpHandler = Callable[[bytes, float], None]
RtcpHandler = Callable[[bytes], None]


class TransportStats:
    """Packet counters of one transport (read by metrics and tests)."""

    __slots__ = ("rtp_in", "rtcp_in", "rtp_out", "rtcp_out", "bytes_in", "bytes_out",
                 "srtp_errors", "handler_errors", "send_errors")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def _sockaddr(family: int, address: tuple) -> bytes:
    """A packed ``struct sockaddr_in``/``sockaddr_in6`` for sendto(2)."""
    host, port = address[0], address[1]
    if family == socket.AF_INET:
        return struct.pack("=H", family) + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)
    if family == socket.AF_INET6:
        if ":" not in host:
            host = "::ffff:" + host
        scope = address[3] if len(address) > 3 else 0
        return (struct.pack("=H", family) + struct.pack("!HI", port, 0)
                + socket.inet_pton(socket.AF_INET6, host) + struct.pack("=I", scope))
    raise ValueError(f"unsupported address family {family}")


class IdleTrack(MediaStreamTrack):
    """A sendonly track with no encoder, for an m-line whose packets the SFU writes
    itself: ``recv()`` waits forever, and a :class:`WebRtcTransport` ends aiortc's RTP
    loop of its sender before it starts, so nothing ever calls it there."""

    def __init__(self, kind: str, track_id: str | None = None) -> None:
        super().__init__()
        self.kind = kind
        self._track_id = track_id

    @property
    def id(self) -> str:
        """``track_id`` when given (the msid's track part), else a random id."""
        return self._track_id or super().id

    async def recv(self) -> Any:
        await asyncio.Event().wait()


def _ignore_rtp(data: bytes, arrival: float) -> None:
    pass


def _ignore_rtcp(data: bytes) -> None:
    pass


class WebRtcTransport:
    """A peer connection (``role`` "pub" or "sub") with the SFU's packet path attached.

    ``on_rtp``/``on_rtcp`` receive decrypted packets; ``rtcp_out_filter`` sees the RTCP
    that aiortc's senders write and may rewrite it (return bytes) or drop it (None).
    ``on_state`` is called with the connection state ("connected", "failed", "closed").
    ``clock`` (the machine's by default) stamps the arrival of each packet.
    """

    def __init__(
        self,
        role: str,
        *,
        configuration: RTCConfiguration | None = None,
        name: str = "",
        clock: Clock | None = None,
    ) -> None:
        self.role = role
        self._monotonic = (clock or SYSTEM_CLOCK).monotonic  # packet arrival times
        self.name = name
        config = configuration or ice.rtc_configuration()
        config.bundlePolicy = RTCBundlePolicy.MAX_BUNDLE
        self.pc = RTCPeerConnection(config)
        self.stats = TransportStats()
        self.on_rtp: RtpHandler = _ignore_rtp
        self.on_rtcp: RtcpHandler = _ignore_rtcp
        self.rtcp_out_filter: Callable[[bytes], bytes | None] | None = None
        self.on_state: Callable[[str], None] | None = None
        self.connected = asyncio.Event()
        self.closed = False
        self._dtls: Any = None
        self._ice_connection: Any = None
        self._rx_srtp: pylibsrtp.Session | None = None
        self._original_data_received: Callable[[bytes, int], None] | None = None
        self._unhook_datagrams: Callable[[], None] | None = None  # the nominated pair's hook
        self._tx_protect: Callable[[bytes], bytes] | None = None
        self._tx_protect_rtcp: Callable[[bytes], bytes] | None = None
        self._sendto: Callable[[bytes, Any], None] | None = None
        self._remote_addr: Any = None
        self._negotiation_lock = asyncio.Lock()
        self.simulcast: dict[str, SimulcastOffer] = {}
        """The m-lines (by mid) of the last remote offer that simulcast, and their rids."""
        self.offer_sdp: str | None = None
        """The SDP of the last offer `create_offer` made (as sent)."""
        self.transport_cc_ids: dict[str, int] = {}
        """mid -> transport-cc extension id, for the m-lines whose answer kept it."""
        self.pc.on("connectionstatechange", self._on_connection_state)

    # -- negotiation ---------------------------------------------------------------

    @property
    def negotiation_lock(self) -> asyncio.Lock:
        """Held while an offer/answer exchange is in progress on this transport."""
        return self._negotiation_lock

    async def accept_offer(self, sdp: str, prepare: Callable[[], None] | None = None) -> str:
        """Apply a remote offer and return the local answer's SDP.

        ``prepare`` runs between setRemoteDescription and createAnswer (to set codec
        preferences and directions on the new transceivers). An m-line that offers
        simulcast (`sfu.simulcast`) gets the rid header extensions and ``a=rid``/
        ``a=simulcast`` in the answer; `simulcast` lists them. Opus gets
        ``useinbandfec=1`` (`sfu.rtx.with_opus_fec`: aiortc writes no Opus ``fmtp``, and
        a publisher's encoder adds FEC only when the answer asks for it).
        """
        self._check_open()
        if "\nm=" not in "\n" + sdp.replace("\r\n", "\n"):
            raise NegotiationError("the offer has no media section")
        simulcast = parse_simulcast(sdp)
        await self._set_remote(sdp, "offer")
        if simulcast:
            self._accept_simulcast(simulcast)
        if prepare is not None:
            prepare()
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        self._attach()
        self.simulcast = simulcast
        answer = self.pc.localDescription.sdp
        return with_opus_fec(amend_answer(answer, simulcast) if simulcast else answer)

    def _accept_simulcast(self, offers: dict[str, SimulcastOffer]) -> None:
        """Register the rid header extensions, with the offer's ids, on each simulcast
        m-line before the answer is made (aiortc alone would drop them)."""
        from aiortc.sdp import SessionDescription

        remote = SessionDescription.parse(self.pc.remoteDescription.sdp)
        ids = {m.rtp.muxId: {e.uri: e.id for e in m.rtp.headerExtensions
                             if e.uri in SIMULCAST_EXTENSIONS} for m in remote.media}
        for transceiver in self.pc.getTransceivers():
            if transceiver.mid in offers and ids.get(transceiver.mid):
                internals.add_header_extensions(transceiver, ids[transceiver.mid])

    async def create_offer(self, transport_cc: bool = False) -> str:
        """Create and apply a local offer; return its SDP (candidates included, Opus
        with in-band FEC as in `accept_offer`; with ``transport_cc``, the transport-wide
        sequence number and its feedback offered on the video m-lines, as
        `sfu.transport_cc_sdp` says). ``offer_sdp`` keeps what was returned."""
        self._check_open()
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        self._attach()
        sdp = with_opus_fec(self.pc.localDescription.sdp)
        self.offer_sdp = offer_transport_cc(sdp) if transport_cc else sdp
        return self.offer_sdp

    async def accept_answer(self, sdp: str) -> None:
        """Apply the remote answer to our last offer (``transport_cc_ids``: the m-lines,
        by mid, whose answer kept transport-cc, with its id)."""
        self._check_open()
        if self.pc.signalingState != "have-local-offer":
            raise NegotiationError("no offer is waiting for an answer on this peer connection")
        await self._set_remote(sdp, "answer")
        self.transport_cc_ids = answered_ids(sdp)
        self._attach()

    async def _set_remote(self, sdp: str, kind: str) -> None:
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=ice.filter_sdp_candidates(sdp), type=kind))
        except (ValueError, AttributeError, KeyError, IndexError) as exc:
            raise NegotiationError(f"unusable {kind}: {exc}") from exc

    async def add_ice_candidate(self, candidate: str, sdp_mid: str | None,
                                sdp_mline_index: int | None) -> None:
        """Add a trickled remote candidate (ignored if the ICE policy refuses it)."""
        from aiortc.sdp import candidate_from_sdp

        self._check_open()
        line = candidate[len("candidate:"):] if candidate.startswith("candidate:") else candidate
        if not line:
            return  # end-of-candidates
        if sdp_mid is None and sdp_mline_index is None:
            raise NegotiationError("a trickled candidate needs sdpMid or sdpMLineIndex")
        try:
            parsed = candidate_from_sdp(line)
        except Exception as exc:  # noqa: BLE001 - aiortc asserts, indexes and converts as it goes
            logger.info("bad ICE candidate on %s: %r", self.name, exc)
            raise NegotiationError("the ICE candidate cannot be parsed") from exc
        if not ice.candidate_allowed("candidate:" + line):
            return
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        await self.pc.addIceCandidate(parsed)

    def diagnostics(self) -> dict[str, Any]:
        """The DTLS and ICE states and the candidate pairs tried (for a failure's log line)."""
        dtls = self._dtls
        if dtls is None:
            transceivers = self.pc.getTransceivers()
            dtls = transceivers[0].receiver.transport if transceivers else None
        try:
            return internals.connection_diagnostics(dtls)
        except Exception as exc:  # noqa: BLE001 - a log helper must never break a close
            return {"diagnostics": f"unavailable ({type(exc).__name__})"}

    def _check_open(self) -> None:
        if self.closed:
            raise Closed(f"{self.role} peer connection is closed")

    # -- packet path ---------------------------------------------------------------

    def _attach(self) -> None:
        """Take over the SRTP datagrams of the (bundled) DTLS transport."""
        transceivers = self.pc.getTransceivers()
        if not transceivers:
            return
        dtls_set = {t.receiver.transport for t in transceivers if not t.stopped}
        if len(dtls_set) > 1:
            raise NegotiationError("all media must be BUNDLEd on one transport")
        for transceiver in transceivers:
            internals.stop_decoder_after_receive(transceiver.receiver)
            if isinstance(transceiver.sender.track, IdleTrack):  # before aiortc starts it
                internals.skip_sender_rtp(transceiver.sender)
        dtls = transceivers[0].receiver.transport
        if dtls is self._dtls:
            return
        self._unhook()  # a new DTLS transport: the old ICE connection's hooks go
        self._dtls = dtls
        self._rx_srtp = None
        connection = internals.ice_connection(dtls)
        self._ice_connection = connection
        self._original_data_received = internals.hook_data_received(connection, self._data_received)

        def outgoing(original_send_rtp: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
            async def send_rtp(data: bytes) -> None:
                # aiortc's senders and receivers write their RTCP here
                if self.rtcp_out_filter is not None and is_rtcp(data):
                    filtered = self.rtcp_out_filter(data)
                    if not filtered:
                        return
                    data = filtered
                await original_send_rtp(data)

            return send_rtp

        # SRTP that arrived while the DTLS handshake was finishing was queued behind
        # it and is decrypted by aiortc: take it from there too
        internals.hook_dtls(dtls, outgoing=outgoing,
                            on_rtp=lambda data: self._deliver(data, False),
                            on_rtcp=lambda data: self._deliver(data, True))

    def _hook_nominated_pair(self) -> None:
        """Take RTP/RTCP at the nominated pair's socket, before aioice's STUN parser."""
        if self._unhook_datagrams is not None or self._ice_connection is None or self.closed:
            return
        pair = internals.nominated_pair(self._ice_connection)
        if pair is not None:
            self._unhook_datagrams = internals.hook_datagram_received(pair, self._data_received)

    def _unhook(self) -> None:
        """Remove both receive hooks (idempotent): datagrams go to aioice again."""
        unhook, self._unhook_datagrams = self._unhook_datagrams, None
        if unhook is not None:
            unhook()
        if self._ice_connection is not None:
            internals.unhook_data_received(self._ice_connection, self._data_received)

    def _data_received(self, data: bytes, component: int) -> None:
        if data and 127 < data[0] < 192:
            rx = self._rx_srtp
            if rx is None:  # set once DTLS is up, then never replaced
                rx = self._rx_srtp = internals.rx_srtp(self._dtls)
            if rx is not None:
                self._srtp_received(rx, data)
                return
        self._original_data_received(data, component)

    def _srtp_received(self, rx: pylibsrtp.Session, data: bytes) -> None:
        self.stats.bytes_in += len(data)
        rtcp = is_rtcp(data)
        try:
            plain = rx.unprotect_rtcp(data) if rtcp else rx.unprotect(data)
        except pylibsrtp.Error:
            self.stats.srtp_errors += 1
            return
        self._deliver(plain, rtcp)

    def _deliver(self, plain: bytes, rtcp: bool) -> None:
        stats = self.stats
        try:
            if rtcp:
                stats.rtcp_in += 1
                self.on_rtcp(plain)
            else:
                stats.rtp_in += 1
                self.on_rtp(plain, self._monotonic())
        except Exception:  # a handler bug must not kill the socket's protocol
            stats.handler_errors += 1
            if stats.handler_errors <= 5 or stats.handler_errors % 1000 == 0:
                logger.exception("%s %s: packet handler failed (%d so far)",
                                 self.name, self.role, stats.handler_errors)

    def _resolve_send_path(self) -> bool:
        dtls = self._dtls
        tx = internals.tx_srtp(dtls) if dtls is not None else None
        if tx is None or self.closed:
            return False
        pair = internals.nominated_pair(self._ice_connection)
        if pair is None or pair.protocol.transport is None:
            return False
        self._tx_protect = tx.protect
        self._tx_protect_rtcp = tx.protect_rtcp
        self._sendto = pair.protocol.transport.sendto
        self._remote_addr = pair.remote_addr
        return True

    def send_rtp(self, packet: bytes) -> bool:
        """Protect and send one RTP packet now; False if the transport is not ready."""
        protect = self._tx_protect
        if protect is None:
            if not self._resolve_send_path():
                return False
            protect = self._tx_protect
        try:
            data = protect(packet)
            self._sendto(data, self._remote_addr)
        except (pylibsrtp.Error, OSError, AttributeError):
            self.stats.send_errors += 1
            return False
        stats = self.stats
        stats.rtp_out += 1
        stats.bytes_out += len(data)
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        """Protect and send one (compound) RTCP packet now; False if not ready."""
        if self._tx_protect_rtcp is None and not self._resolve_send_path():
            return False
        try:
            data = self._tx_protect_rtcp(packet)
            self._sendto(data, self._remote_addr)
        except (pylibsrtp.Error, OSError, AttributeError):
            self.stats.send_errors += 1
            return False
        self.stats.rtcp_out += 1
        self.stats.bytes_out += len(data)
        return True

    def native_send_path(self) -> tuple[Any, int, int, int, bytes] | None:
        """(owner, srtp_ctx, srtp_protect, fd, sockaddr) for the compiled fan-out loop
        to protect with libsrtp and write with sendto(2) itself, or None (then it uses
        :attr:`send_path`). Relies on pylibsrtp's cffi session; any surprise: None."""
        if self._tx_protect is None and not self._resolve_send_path():
            return None
        try:
            owner, ctx, fn = internals.srtp_protect_native(internals.tx_srtp(self._dtls))
            sock = self._sendto.__self__.get_extra_info("socket")
            return owner, ctx, fn, sock.fileno(), _sockaddr(sock.family, self._remote_addr)
        except Exception:  # noqa: BLE001 - an unexpected pylibsrtp/uvloop: the Python path
            logger.debug("native send path unavailable", exc_info=True)
            return None

    def receive_path(self) -> tuple[pylibsrtp.Session, Any, Any] | None:
        """(SRTP session, asyncio datagram transport, ICE protocol) of the nominated pair,
        for a caller that reads the socket itself (the benchmark's load clients): what
        is not SRTP it hands to ``protocol.datagram_received``. None until connected."""
        if self._dtls is None or self._ice_connection is None or self.closed:
            return None
        session = internals.rx_srtp(self._dtls)
        pair = internals.nominated_pair(self._ice_connection)
        if session is None or pair is None or pair.protocol.transport is None:
            return None
        return session, pair.protocol.transport, pair.protocol

    @property
    def cname(self) -> str:
        """The CNAME this peer connection announces (the SDES of our reports carries it)."""
        return internals.peer_connection_cname(self.pc)

    @property
    def send_path(self) -> tuple[Callable[[bytes], bytes], Callable[[bytes, Any], None], Any] | None:
        """(protect, sendto, address) for the compiled fan-out loop, or None if not ready."""
        if self._tx_protect is None and not self._resolve_send_path():
            return None
        return self._tx_protect, self._sendto, self._remote_addr

    # -- lifecycle -----------------------------------------------------------------

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self._hook_nominated_pair()
            self._resolve_send_path()
            self.connected.set()
        elif state in ("failed", "closed"):
            self._tx_protect = self._tx_protect_rtcp = self._sendto = None
            self._unhook()
        if self.on_state is not None:
            self.on_state(state)

    async def close(self) -> None:
        """Close the peer connection (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self._tx_protect = self._tx_protect_rtcp = self._sendto = None
        self.on_rtp = _ignore_rtp
        self.on_rtcp = _ignore_rtcp
        internals.quiet_connect_tasks(self.pc)
        try:
            await self.pc.close()
        except Exception:  # noqa: BLE001 - closing must not fail the caller
            logger.exception("%s %s: error while closing the peer connection", self.name, self.role)
        finally:
            self._unhook()
