"""The private attributes sfu relies on exist on the installed aiortc, aioice and
pylibsrtp, on real objects; and a missing one is a clear error at import."""

from __future__ import annotations

import asyncio
import importlib.metadata

import aioice.ice
import aioice.stun
import pylibsrtp
import pytest
from aiortc import RTCPeerConnection
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu import _aiortc_internals as internals
from sfu.errors import AiortcInternalsChanged, SfuError
from sfu.transport import IdleTrack, WebRtcTransport


def test_the_docstring_names_the_versions_checked():
    for package, version in internals.CHECKED_VERSIONS.items():
        assert f"{package} {version}" in internals.__doc__


def test_the_installed_versions_are_the_checked_ones():
    # not a requirement to run, but an upgrade must come with a new look at the module
    installed = {p: importlib.metadata.version(p) for p in internals.CHECKED_VERSIONS}
    assert installed == internals.CHECKED_VERSIONS


async def test_the_attributes_exist_on_real_objects():
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver(IdleTrack("video"), direction="sendonly")
        assert isinstance(internals.sender_ssrc(transceiver.sender), int)
        await pc.setLocalDescription(await pc.createOffer())
        codecs = internals.negotiated_codecs(transceiver)
        assert codecs and all(hasattr(c, "mimeType") and hasattr(c, "payloadType") for c in codecs)
        ids = internals.header_extension_ids(transceiver)
        assert ids and all(isinstance(i, int) for i in ids.values())
        assert internals.peer_connection_cname(pc) in pc.localDescription.sdp
        dtls = transceiver.sender.transport
        assert internals.rx_srtp(dtls) is None and internals.tx_srtp(dtls) is None  # no DTLS yet
        connection = internals.ice_connection(dtls)
        assert isinstance(connection, aioice.ice.Connection)
        assert internals.nominated_pair(connection) is None
        for name in ("_send_rtp", "_handle_rtp_data", "_handle_rtcp_data"):
            assert callable(getattr(dtls, name))
        sender = transceiver.sender
        assert callable(sender._run_rtp) and callable(sender._run_rtcp) and callable(sender._send_rtcp)
        assert sender._RTCRtpSender__started is False
        for event in ("rtp_started", "rtp_exited", "rtcp_started", "rtcp_exited"):
            assert isinstance(getattr(sender, f"_RTCRtpSender__{event}"), asyncio.Event)
        assert callable(transceiver.receiver._RTCRtpReceiver__stop_decoder)
    finally:
        await pc.close()


def test_consent_checks_are_no_more_frequent_than_rfc_7675_asks():
    # aioice waits 0.8-1.2 times this between two checks; RFC 7675: about every 5 s
    assert internals.consent_interval() * 0.8 >= 4


async def test_a_quiet_sender_says_bye_once_when_it_stops():
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver(IdleTrack("video"), direction="sendonly").sender
        internals.quiet_sender_reports(sender)
        internals.quiet_sender_reports(sender)  # idempotent: one stop wrapper
        sent = []

        async def send_rtcp(packets):
            sent.extend(packets)

        sender._send_rtcp = send_rtcp
        await sender.stop()  # never started: nothing to say
        assert sent == []
        sender._RTCRtpSender__started = True  # as after send(): stop waits for the loops
        sender._RTCRtpSender__rtp_task = asyncio.ensure_future(sender._RTCRtpSender__rtp_exited.wait())
        sender._RTCRtpSender__rtp_started.set()
        sender._RTCRtpSender__rtp_exited.set()
        sender._RTCRtpSender__rtcp_task = asyncio.ensure_future(sender._run_rtcp())
        await sender.stop()
        await sender.stop()
        assert [type(p).__name__ for p in sent] == ["RtcpByePacket"]
        assert sent[0].sources == [internals.sender_ssrc(sender)]
    finally:
        await pc.close()


def test_libsrtp_can_be_called_natively():
    policy = pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    owner, ctx, fn = internals.srtp_protect_native(pylibsrtp.Session(policy))
    assert ctx and fn and owner is not None


async def test_a_transport_cname_comes_from_its_peer_connection():
    transport = WebRtcTransport("sub")
    try:
        assert transport.cname == internals.peer_connection_cname(transport.pc)
    finally:
        await transport.close()


def test_a_missing_attribute_is_named_with_the_version_checked():
    class Sender:
        def __init__(self):
            self.ssrc = 1

    with pytest.raises(AiortcInternalsChanged) as raised:
        internals.check(methods=[], instance_attributes=[(Sender, "_ssrc", "aiortc")])
    message = str(raised.value)
    assert "Sender()._ssrc" in message and "aiortc 1.16.0" in message
    with pytest.raises(ImportError, match=r"aioice\.ice\.nope"):
        internals.check(methods=[(aioice.ice, "nope", "aioice")], instance_attributes=[])
    assert isinstance(raised.value, SfuError) and raised.value.code == "internal"
    internals.check()  # the installed ones pass


def test_host_addresses_are_patched_and_restored():
    before = aioice.ice.get_host_addresses  # the suite's loopback policy
    try:
        internals.set_host_addresses(lambda v4, v6: ["192.0.2.1"])
        assert aioice.ice.get_host_addresses(True, False) == ["192.0.2.1"]
        internals.set_host_addresses(None)
        assert aioice.ice.get_host_addresses is internals._original_get_host_addresses
    finally:
        internals.set_host_addresses(before)


async def test_connection_diagnostics_name_the_states_and_pairs():
    from sfu.transport import WebRtcTransport

    assert internals.connection_diagnostics(None) == {"dtls": "none yet"}
    transport = WebRtcTransport("pub")
    transport.pc.addTransceiver("video", direction="recvonly")
    found = transport.diagnostics()
    assert found["dtls"] == "new" and found["ice"] == "new"
    assert "none" in found["pairs"]  # nothing was checked yet
    await transport.close()



def _pair_on_a_real_protocol():
    """A real aioice connection, one of its StunProtocols (no socket: datagrams are fed
    by hand, as the event loop would) and a candidate pair on it."""
    from aioice.candidate import Candidate

    connection = aioice.ice.Connection(ice_controlling=True)
    protocol = aioice.ice.StunProtocol(connection)
    protocol.local_candidate = Candidate("1", 1, "udp", 1, "127.0.0.1", 40000, "host")
    remote = Candidate("2", 1, "udp", 1, "127.0.0.1", 40002, "host")
    remote._network_host = "127.0.0.1"
    return connection, protocol, aioice.ice.CandidatePair(protocol, remote)


class _Sink:
    def __init__(self):
        self.got = []

    def handle(self, data, component):
        self.got.append((data, component))


@pytest.fixture
def parsed(monkeypatch):
    """Every datagram aioice's STUN parser is given (instrumentation: the parser runs)."""
    seen = []
    original = aioice.stun.parse_message

    def counting(data, *args, **kwargs):
        seen.append(bytes(data))
        return original(data, *args, **kwargs)

    monkeypatch.setattr(aioice.stun, "parse_message", counting)
    return seen


async def test_rtp_is_taken_before_the_stun_parser_and_the_rest_goes_on(parsed):
    connection, protocol, pair = _pair_on_a_real_protocol()
    fast, fallback = _Sink(), _Sink()
    internals.hook_data_received(connection, fallback.handle)
    unhook = internals.hook_datagram_received(pair, fast.handle)
    assert unhook is not None
    rtp, rtcp, dtls = bytes([0x80, 96]) + bytes(10), bytes([0xBF, 200]) + bytes(6), bytes([22, 254]) + bytes(11)
    for data in (rtp, rtcp, dtls, b""):
        protocol.datagram_received(data, ("127.0.0.1", 40002, 0, 0))
    assert fast.got == [(rtp, 1), (rtcp, 1)]
    assert fallback.got == [(dtls, 1), (b"", 1)]  # through aioice's parser, which refused them
    assert parsed == [dtls, b""]
    unhook()
    assert "datagram_received" not in vars(protocol)
    protocol.datagram_received(rtp, ("127.0.0.1", 40002))
    assert len(fast.got) == 2
    assert fallback.got[-1] == (rtp, 1) and parsed[-1] == rtp  # aioice's own path again
    unhook()  # idempotent


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_each_datagram_goes_one_way_by_its_first_byte(data):
    connection, protocol, pair = asyncio.run(_on_a_loop(_pair_on_a_real_protocol))
    fast, fallback = _Sink(), _Sink()
    internals.hook_data_received(connection, fallback.handle)
    internals.hook_datagram_received(pair, fast.handle)
    protocol.datagram_received(data, ("127.0.0.1", 40002))
    rtp_or_rtcp = bool(data) and 128 <= data[0] <= 191  # RFC 7983
    assert fast.got == ([(data, 1)] if rtp_or_rtcp else [])
    # the rest is aioice's: handed on when its parser refuses it, as before the hook
    try:
        aioice.stun.parse_message(data)
        stun = True
    except ValueError:
        stun = False
    assert fallback.got == ([] if rtp_or_rtcp or stun else [(data, 1)])


async def _on_a_loop(make):
    return make()


async def test_a_protocol_is_hooked_once():
    _, protocol, pair = _pair_on_a_real_protocol()
    first, second = _Sink(), _Sink()
    unhook = internals.hook_datagram_received(pair, first.handle)
    assert internals.hook_datagram_received(pair, second.handle) is None
    protocol.datagram_received(bytes([0x90]) + bytes(11), ("127.0.0.1", 40002))
    assert len(first.got) == 1 and second.got == []
    unhook()
    again = internals.hook_datagram_received(pair, second.handle)  # free once unhooked
    assert again is not None
    again()


async def test_unhooking_drops_the_references_to_the_handler():
    import gc
    import weakref

    connection, protocol, pair = _pair_on_a_real_protocol()
    sink = _Sink()
    internals.hook_data_received(connection, sink.handle)
    unhook = internals.hook_datagram_received(pair, sink.handle)
    gone = weakref.ref(sink)
    unhook()
    internals.unhook_data_received(connection, sink.handle)
    del sink, unhook
    gc.collect()
    assert gone() is None
    assert "data_received" not in vars(connection) and "datagram_received" not in vars(protocol)


async def test_unhooking_leaves_another_handler_in_place():
    connection, _, _ = _pair_on_a_real_protocol()
    mine, theirs = _Sink(), _Sink()
    internals.hook_data_received(connection, theirs.handle)
    internals.unhook_data_received(connection, mine.handle)
    assert connection.data_received == theirs.handle


# -- ICE consent under a late loop (RFC 7675) -------------------------------------------


async def _ice_pair() -> tuple[aioice.ice.Connection, aioice.ice.Connection]:
    a = aioice.ice.Connection(ice_controlling=True, components=1, use_ipv6=False)
    b = aioice.ice.Connection(ice_controlling=False, components=1, use_ipv6=False)
    await a.gather_candidates()
    await b.gather_candidates()
    for me, other in ((a, b), (b, a)):
        me.remote_username, me.remote_password = other.local_username, other.local_password
        for candidate in other.local_candidates:
            await me.add_remote_candidate(candidate)
        await me.add_remote_candidate(None)
    await asyncio.gather(a.connect(), b.connect())
    return a, b


def _consent_survives(rfc7675: bool, answer_delay_s: float, vanish: bool = False) -> bool:
    """Two aioice connections on loopback under uvloop, consent checked every 0.1 s
    (aioice's first retransmission after 50 ms: 1/10 of its real times): while the
    checked side reads what comes ``answer_delay_s`` late (a node whose sockets are
    backed up, a link with seconds of queue), or is gone, does the checking side keep
    consent for 2 s?"""
    import uvloop

    async def scenario() -> bool:
        a, b = await _ice_pair()
        loop = asyncio.get_running_loop()
        if vanish:
            await b.close()
        for protocol in b._protocols:
            def late(data, addr, protocol=protocol, read=protocol.datagram_received):
                loop.call_later(answer_delay_s, read, data, addr)
            protocol.datagram_received = late
        await asyncio.sleep(2.0)
        kept = a._query_consent_task is not None
        await a.close()
        await b.close()
        return kept

    internals.use_rfc7675_consent(rfc7675)
    saved = aioice.ice.CONSENT_INTERVAL, aioice.stun.RETRY_RTO
    aioice.ice.CONSENT_INTERVAL, aioice.stun.RETRY_RTO = 0.1, 0.05
    try:
        return uvloop.run(scenario())
    finally:
        aioice.ice.CONSENT_INTERVAL, aioice.stun.RETRY_RTO = saved
        internals.use_rfc7675_consent(False)


def test_consent_survives_late_answers_as_rfc_7675_has_it():
    from sfu import ice

    before = list(ice._configured)  # (the suite's, restored after)
    ice.use_host_addresses(["127.0.0.1"])
    try:
        # aioice's own: a check answered after its timer fired counts failed, and six in
        # a row close the connection, though every check was answered
        assert not _consent_survives(rfc7675=False, answer_delay_s=0.08)
        assert _consent_survives(rfc7675=True, answer_delay_s=0.08)
        # and consent is still lost when the peer is really gone
        assert not _consent_survives(rfc7675=True, answer_delay_s=0.0, vanish=True)
    finally:
        ice.use_host_addresses(before or None)
