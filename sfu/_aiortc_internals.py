"""The one module that touches aiortc's, aioice's and pylibsrtp's private attributes.

Checked against aiortc 1.16.0, aioice 0.13.0 and pylibsrtp 1.0.0. Everything else in
the media plane (and bench/) goes through the functions here, so that an upgrade is
checked in one place: at import, :func:`check` makes sure every private attribute and
method relied on still exists, and raises :class:`~sfu.errors.AiortcInternalsChanged`
naming the attribute and the version it was checked against, rather than letting an
``AttributeError`` surface later in the middle of a call.

What is relied on:

- ``RTCRtpSender._ssrc`` and ``_rtx_ssrc`` (the SSRCs a sender announces), ``_run_rtp``,
  ``_run_rtcp``, ``_send_rtcp``, ``stop`` and its name-mangled ``__started`` flag and
  ``__rtp_started``/``__rtp_exited``/``__rtcp_started``/``__rtcp_exited`` events;
- ``RTCRtpTransceiver._codecs`` and ``_headerExtensions`` (what negotiation settled);
- ``RTCRtpReceiver.__stop_decoder`` (its decoder thread, unused by the SFU);
- ``RTCPeerConnection.__cname`` (the CNAME of the SDES the SFU writes itself);
- ``RTCDtlsTransport._rx_srtp``/``_tx_srtp`` (the SRTP sessions), ``_send_rtp``,
  ``_handle_rtp_data``/``_handle_rtcp_data`` (hooks around SRTP), and
  ``RTCIceTransport._connection`` (the aioice connection);
- aioice ``CONSENT_INTERVAL`` (seconds between consent checks, RFC 7675),
  ``Connection.query_consent`` (replaced: `use_rfc7675_consent`), ``build_request`` and
  ``_query_consent_task``,
  ``Connection._nominated`` (the pair per component) and ``data_received`` (where
  ``StunProtocol.datagram_received`` hands every datagram its STUN parser refuses),
  ``CandidatePair.protocol``/``component``/``remote_addr``,
  ``StunProtocol.datagram_received`` (replaced per instance: the event loop looks it up
  on the protocol for each datagram), and ``aioice.ice.get_host_addresses``;
- pylibsrtp ``Session._srtp`` (the ``srtp_t`` cdata) and ``pylibsrtp._binding``;
- ``RTCCertificate._create_ssl_context`` (the DTLS context, whose cipher list
  :func:`accept_rsa_dtls_peers` widens).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import random
from collections.abc import Callable
from typing import Any

import aioice.ice
import aioice.stun
import pylibsrtp
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport

from .errors import AiortcInternalsChanged

__all__ = ["CHECKED_VERSIONS", "check", "sender_ssrc", "sender_rtx_ssrc", "negotiated_codecs",
           "header_extension_ids", "add_header_extensions", "quiet_sender_reports", "skip_sender_rtp",
           "consent_interval", "set_stream_id", "stop_decoder_after_receive",
           "peer_connection_cname", "ice_connection", "rx_srtp", "tx_srtp", "nominated_pair",
           "hook_dtls", "hook_data_received", "unhook_data_received", "hook_datagram_received",
           "srtp_protect_native", "srtp_unprotect_native", "set_host_addresses",
           "accept_rsa_dtls_peers", "DTLS_CIPHERS", "connection_diagnostics", "quiet_connect_tasks",
           "use_rfc7675_consent"]

CHECKED_VERSIONS = {"aiortc": "1.16.0", "aioice": "0.13.0", "pylibsrtp": "1.0.0"}

# (owner, attribute, package): a method or class attribute that must exist, or, where
# the attribute is set on instances, a name that ``owner.__init__`` must assign.
_METHODS = [
    (RTCRtpSender, "_run_rtp", "aiortc"),
    (RTCRtpSender, "_run_rtcp", "aiortc"),
    (RTCRtpSender, "_send_rtcp", "aiortc"),
    (RTCRtpReceiver, "_RTCRtpReceiver__stop_decoder", "aiortc"),
    (RTCDtlsTransport, "_send_rtp", "aiortc"),
    (RTCDtlsTransport, "_handle_rtp_data", "aiortc"),
    (RTCDtlsTransport, "_handle_rtcp_data", "aiortc"),
    (RTCCertificate, "_create_ssl_context", "aiortc"),
    (aioice.ice.Connection, "data_received", "aioice"),
    (aioice.ice.StunProtocol, "datagram_received", "aioice"),
    (aioice.ice.CandidatePair, "component", "aioice"),
    (aioice.ice.CandidatePair, "remote_addr", "aioice"),
    (aioice.ice, "get_host_addresses", "aioice"),
    (aioice.ice, "CONSENT_INTERVAL", "aioice"),
    (aioice.ice.Connection, "query_consent", "aioice"),
    (aioice.ice.Connection, "build_request", "aioice"),
]
_INSTANCE_ATTRIBUTES = [
    (RTCRtpSender, "_ssrc", "aiortc"),
    (RTCRtpSender, "_rtx_ssrc", "aiortc"),
    (RTCRtpSender, "_stream_id", "aiortc"),
    (RTCRtpSender, "_RTCRtpSender__started", "aiortc"),
    (RTCRtpSender, "_RTCRtpSender__rtp_started", "aiortc"),
    (RTCRtpSender, "_RTCRtpSender__rtp_exited", "aiortc"),
    (RTCRtpSender, "_RTCRtpSender__rtcp_started", "aiortc"),
    (RTCRtpSender, "_RTCRtpSender__rtcp_exited", "aiortc"),
    (RTCRtpTransceiver, "_codecs", "aiortc"),
    (RTCRtpTransceiver, "_headerExtensions", "aiortc"),
    (RTCPeerConnection, "_RTCPeerConnection__cname", "aiortc"),
    (RTCDtlsTransport, "_rx_srtp", "aiortc"),
    (RTCDtlsTransport, "_tx_srtp", "aiortc"),
    (RTCIceTransport, "_connection", "aiortc"),
    (aioice.ice.Connection, "_nominated", "aioice"),
    (aioice.ice.Connection, "_query_consent_task", "aioice"),
    (aioice.ice.CandidatePair, "protocol", "aioice"),
    (pylibsrtp.Session, "_srtp", "pylibsrtp"),
]


def _installed(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _missing(package: str, what: str) -> AiortcInternalsChanged:
    return AiortcInternalsChanged(
        f"{what} is gone in {package} {_installed(package)}; sfu._aiortc_internals was "
        f"checked against {package} {CHECKED_VERSIONS[package]}: adapt that module")


def check(methods: list | None = None, instance_attributes: list | None = None) -> None:
    """Raise :class:`AiortcInternalsChanged` unless every private attribute relied on
    exists. Instance attributes are found in the names their class's ``__init__``
    assigns, so nothing is constructed."""
    for owner, name, package in _METHODS if methods is None else methods:
        if not hasattr(owner, name):
            raise _missing(package, f"{getattr(owner, '__name__', owner)}.{name}")
    for owner, name, package in _INSTANCE_ATTRIBUTES if instance_attributes is None else instance_attributes:
        if name not in owner.__init__.__code__.co_names:
            raise _missing(package, f"{owner.__name__}().{name}")
    try:
        from pylibsrtp import _binding

        _binding.ffi, _binding.lib.srtp_protect  # noqa: B018
    except (ImportError, AttributeError) as exc:
        raise _missing("pylibsrtp", "pylibsrtp._binding.lib.srtp_protect") from exc


check()


# -- senders, transceivers, receivers, peer connections --------------------------------


def sender_ssrc(sender: RTCRtpSender) -> int:
    """The SSRC a sender announces in SDP (``a=ssrc``) and must send with."""
    return sender._ssrc


def sender_rtx_ssrc(sender: RTCRtpSender) -> int:
    """The SSRC of the sender's RTX stream (``a=ssrc-group:FID <ssrc> <this>`` in an
    offer whose m-line has RTX)."""
    return sender._rtx_ssrc


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """The stream part of the sender's ``a=msid`` (aiortc makes a random one)."""
    sender._stream_id = stream_id


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[Any]:
    """The transceiver's negotiated codecs (``RTCRtpCodecParameters``), preferred first."""
    return list(transceiver._codecs)


def header_extension_ids(transceiver: RTCRtpTransceiver) -> dict[str, int]:
    """The transceiver's negotiated header extensions: URI -> id."""
    return {e.uri: e.id for e in transceiver._headerExtensions}


def add_header_extensions(transceiver: RTCRtpTransceiver, extensions: dict[str, int]) -> None:
    """Accept header extensions aiortc does not know (URI -> the id the remote offered),
    between setRemoteDescription and createAnswer: the answer then lists them. aiortc
    keeps only the extensions of its own table (the simulcast rid ones are not in it)."""
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters

    have = {e.uri for e in transceiver._headerExtensions}
    for uri, ext_id in extensions.items():
        if uri not in have:
            transceiver._headerExtensions.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri))


def quiet_sender_reports(sender: RTCRtpSender) -> None:
    """Make aiortc's per-sender RTCP loop (an SR and SDES built per sender every
    0.5-1.5 s, with NTP 0 here) end as soon as it starts, and the BYE it would have said
    on its way out be sent by ``stop()`` instead: no task and no timer per sender while
    it lives (the participant sends one compound report for all its consumers), and the
    peer still hears the BYE when the sender stops (idempotent)."""
    if getattr(sender, "_dockcast_quiet", False):
        return
    sender._dockcast_quiet = True

    async def run_rtcp() -> None:
        sender._RTCRtpSender__rtcp_started.set()
        sender._RTCRtpSender__rtcp_exited.set()

    original_stop = sender.stop

    async def stop() -> None:
        started = sender._RTCRtpSender__started
        await original_stop()
        if started and not getattr(sender, "_dockcast_said_bye", False):
            from aiortc.rtp import RtcpByePacket

            sender._dockcast_said_bye = True  # stop() again: no second BYE
            await sender._send_rtcp([RtcpByePacket(sources=[sender._ssrc])])

    sender._run_rtcp = run_rtcp
    sender.stop = stop


def skip_sender_rtp(sender: RTCRtpSender) -> None:
    """Make aiortc's per-sender RTP loop end as soon as it starts, for a sender whose
    track never yields a frame (the SFU writes its packets itself): that loop would
    wait on the track for the sender's whole life, a task per m-line (idempotent)."""

    async def run_rtp(codec: Any) -> None:
        sender._RTCRtpSender__rtp_started.set()
        sender._RTCRtpSender__rtp_exited.set()

    sender._run_rtp = run_rtp


def consent_interval() -> float:
    """aioice's mean seconds between two consent checks of a nominated pair (each is
    sent after 0.8-1.2 times this; RFC 7675 wants one about every 5 s)."""
    return aioice.ice.CONSENT_INTERVAL


def stop_decoder_after_receive(receiver: RTCRtpReceiver) -> None:
    """Stop the decoder thread that aiortc starts per receiver once it has started
    receiving: no RTP ever reaches it (idempotent)."""
    if getattr(receiver, "_dockcast_bypassed", False):
        return
    receiver._dockcast_bypassed = True
    original = receiver.receive

    async def receive(parameters: Any) -> None:
        await original(parameters)
        receiver._RTCRtpReceiver__stop_decoder()

    receiver.receive = receive


def quiet_connect_tasks(pc: RTCPeerConnection) -> int:
    """aiortc starts ICE and DTLS in a task of its own (``RTCPeerConnection.__connect``)
    that nobody awaits; closing the peer connection while it runs makes it fail with
    ``InvalidStateError`` ("RTCIceTransport is closed"), which asyncio then logs as
    "Task exception was never retrieved" with a traceback (a peer that vanishes right
    after its answer). Retrieve it: the close is the reason. Returns how many such
    tasks were found."""
    found = 0
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if (getattr(coro, "__name__", "") == "__connect" and frame is not None
                and frame.f_locals.get("self") is pc):
            task.add_done_callback(_retrieve)
            found += 1
    return found


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()


def peer_connection_cname(pc: RTCPeerConnection) -> str:
    """The CNAME the peer connection announces in SDP (for the SDES we write)."""
    return pc._RTCPeerConnection__cname


# -- DTLS, SRTP and the ICE pair -------------------------------------------------------


def ice_connection(dtls: RTCDtlsTransport) -> aioice.ice.Connection:
    """The aioice connection under a DTLS transport."""
    return dtls.transport._connection


def connection_diagnostics(dtls: RTCDtlsTransport | None) -> dict[str, Any]:
    """Why a peer connection failed, for the log: the DTLS and ICE states and every
    candidate pair ICE checked (local -> remote address, and how far it got)."""
    if dtls is None:
        return {"dtls": "none yet"}
    out: dict[str, Any] = {"dtls": getattr(dtls, "state", "?"),
                           "ice": getattr(dtls.transport, "state", "?")}
    connection = getattr(dtls.transport, "_connection", None)
    pairs = getattr(connection, "_check_list", None) or []
    out["pairs"] = [
        f"{_addr(p.local_addr)}->{_addr(p.remote_addr)} {getattr(p.state, 'name', p.state)}"
        for p in pairs[:16]]
    if not pairs:
        out["pairs"] = "none (no remote candidate reached the node, or none was usable)"
    return out


def _addr(address: Any) -> str:
    try:
        return f"{address[0]}:{address[1]}"
    except (TypeError, IndexError):
        return str(address)


def rx_srtp(dtls: RTCDtlsTransport) -> pylibsrtp.Session | None:
    """The SRTP session that decrypts what arrives (None until DTLS is up)."""
    return dtls._rx_srtp


def tx_srtp(dtls: RTCDtlsTransport) -> pylibsrtp.Session | None:
    """The SRTP session that encrypts what is sent (None until DTLS is up)."""
    return dtls._tx_srtp


def nominated_pair(connection: aioice.ice.Connection, component: int = 1) -> Any:
    """The nominated candidate pair of ``component`` (``.protocol``, ``.remote_addr``), or None."""
    return connection._nominated.get(component)


def hook_dtls(dtls: RTCDtlsTransport, *,
              outgoing: Callable[[Callable[[bytes], Any]], Callable[[bytes], Any]],
              on_rtp: Callable[[bytes], None], on_rtcp: Callable[[bytes], None]) -> None:
    """Wrap the DTLS transport's writer (``outgoing(original)`` returns the coroutine
    function that replaces ``_send_rtp``), and take what aiortc decrypts itself (SRTP
    that arrived while the handshake finished): ``on_rtp``/``on_rtcp`` get it."""
    dtls._send_rtp = outgoing(dtls._send_rtp)

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        on_rtp(data)

    async def handle_rtcp_data(data: bytes) -> None:
        on_rtcp(data)

    dtls._handle_rtp_data = handle_rtp_data
    dtls._handle_rtcp_data = handle_rtcp_data


def hook_data_received(connection: aioice.ice.Connection,
                       handler: Callable[[bytes, int], None]) -> Callable[[bytes, int], None]:
    """Make ``handler(data, component)`` receive every non-STUN datagram of the ICE
    connection; return the original receiver (to pass on what the handler does not take)."""
    original = connection.data_received
    connection.data_received = handler
    return original


def unhook_data_received(connection: aioice.ice.Connection,
                         handler: Callable[[bytes, int], None]) -> None:
    """Undo :func:`hook_data_received` if ``handler`` is still the one installed, so that
    the connection no longer refers to the handler (nor to what the handler belongs to)."""
    if vars(connection).get("data_received") == handler:
        del connection.data_received


def hook_datagram_received(pair: Any, handler: Callable[[bytes, int], None]) -> Callable[[], None] | None:
    """Hand every RTP/RTCP datagram (first byte 128-191, RFC 7983) arriving on the socket
    of ``pair`` (a nominated ``CandidatePair``) straight to ``handler(data, component)``,
    before aioice's STUN parser, which otherwise raises and catches a ``ValueError`` on
    each; STUN and DTLS still reach aioice. Return the function that removes the hook, or
    None if the pair's protocol was hooked already (by anyone: a second hook would take
    the first one's packets, so the caller relies on :func:`hook_data_received` instead).
    """
    protocol = pair.protocol
    if "datagram_received" in vars(protocol):
        return None
    original = protocol.datagram_received
    component = pair.component

    def datagram_received(data: bytes, addr: Any) -> None:
        if data and 127 < data[0] < 192:
            handler(data, component)
        else:
            original(data, addr)

    protocol.datagram_received = datagram_received

    def unhook() -> None:
        if vars(protocol).get("datagram_received") is datagram_received:
            del protocol.datagram_received

    return unhook


def srtp_protect_native(session: pylibsrtp.Session) -> tuple[Any, int, int]:
    """``(owner, srtp_ctx, srtp_protect)`` to call libsrtp from C on ``session``: keep
    ``owner`` alive as long as the addresses are used."""
    return _srtp_native(session, "srtp_protect")


def srtp_unprotect_native(session: pylibsrtp.Session) -> tuple[Any, int, int]:
    """``(owner, srtp_ctx, srtp_unprotect)``, as :func:`srtp_protect_native`."""
    return _srtp_native(session, "srtp_unprotect")


def _srtp_native(session: pylibsrtp.Session, function: str) -> tuple[Any, int, int]:
    from pylibsrtp import _binding

    ffi, lib = _binding.ffi, _binding.lib
    owner = session._srtp
    ctx = int(ffi.cast("uintptr_t", owner[0]))
    fn = int(ffi.cast("uintptr_t", ffi.addressof(lib, function)))
    return owner, ctx, fn


# -- aioice host addresses -------------------------------------------------------------

_original_get_host_addresses = aioice.ice.get_host_addresses


def set_host_addresses(get: Callable[[bool, bool], list[str]] | None) -> None:
    """Make aioice gather host candidates from ``get(use_ipv4, use_ipv6)`` (process-wide,
    aioice has no per-connection setting); None restores aioice's own."""
    aioice.ice.get_host_addresses = get or _original_get_host_addresses


# -- ICE consent (RFC 7675) -------------------------------------------------------------

CONSENT_RETRANSMISSIONS = 3
"""How often a consent check is sent again before it counts as unanswered (aioice's
timer doubles from 0.5 s: an answer up to 7.5 s late still counts)."""
CONSENT_EXPIRY_INTERVALS = 6
"""Consent expires this many intervals (30 s with aioice's 5) after the last answered
check, as RFC 7675 section 5.1 has it."""

_original_query_consent = aioice.ice.Connection.query_consent
_consent_logger = logging.getLogger("sfu.ice")


async def _query_consent_as_rfc7675(self: aioice.ice.Connection) -> None:
    """aioice's ``Connection.query_consent`` as RFC 7675 has it: a check every 0.8-1.2
    times ``CONSENT_INTERVAL``, sent again (`CONSENT_RETRANSMISSIONS`) while unanswered,
    and consent lost only when no check has been answered for `CONSENT_EXPIRY_INTERVALS`.

    aioice sends each check once and counts it failed unless answered within 0.5 s:
    under uvloop, whose timers run before it reads its sockets, a node whose loop ran
    0.5 s late for 30 s (a storm of joins) closed every peer connection it had, though
    each had answered every check."""
    assert self.remote_password is not None
    loop = asyncio.get_running_loop()
    answered = loop.time()
    while True:
        await asyncio.sleep(aioice.ice.CONSENT_INTERVAL * (0.8 + 0.4 * random.random()))
        for pair in list(self._nominated.values()):
            request = self.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(request, pair.remote_addr,
                                            integrity_key=self.remote_password.encode("utf8"),
                                            retransmissions=CONSENT_RETRANSMISSIONS)
                answered = loop.time()
            except aioice.stun.TransactionError:
                pass
        if loop.time() - answered >= CONSENT_EXPIRY_INTERVALS * aioice.ice.CONSENT_INTERVAL:
            _consent_logger.info("ICE consent expired: no consent check answered for %.0f s",
                                 loop.time() - answered)
            self._query_consent_task = None
            await self.close()
            return


def use_rfc7675_consent(on: bool = True) -> None:
    """Every aioice connection of this process checks consent with
    `_query_consent_as_rfc7675` (False: aioice's own again)."""
    aioice.ice.Connection.query_consent = _query_consent_as_rfc7675 if on else _original_query_consent


# -- DTLS cipher suites ----------------------------------------------------------------

# aiortc's own list is ECDHE-ECDSA only. A TLS 1.2 suite names the key of the *server's*
# certificate, so when the node is the DTLS client (it answers a publisher's actpass
# offer with a=setup:active) a peer with an RSA certificate has no suite to pick and the
# handshake fails: GStreamer's webrtcbin makes an RSA certificate. The same suites with
# RSA added; as the server the node's certificate stays ECDSA, so it still picks ECDSA.
DTLS_CIPHERS = (b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                b"ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:"
                b"ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA")


def accept_rsa_dtls_peers() -> None:
    """Make every aiortc DTLS context offer :data:`DTLS_CIPHERS` (ECDSA and RSA suites),
    so that the node as DTLS client can reach a server with an RSA certificate
    (process-wide, as aiortc builds the context per certificate; idempotent)."""
    original = RTCCertificate._create_ssl_context
    if getattr(original, "_dockcast_rsa", False):
        return

    def create_ssl_context(self: RTCCertificate, srtp_profiles: list[Any]) -> Any:
        ctx = original(self, srtp_profiles)
        ctx.set_cipher_list(DTLS_CIPHERS)
        return ctx

    create_ssl_context._dockcast_rsa = True  # type: ignore[attr-defined]
    create_ssl_context._aiortc_original = original  # type: ignore[attr-defined]
    RTCCertificate._create_ssl_context = create_ssl_context
