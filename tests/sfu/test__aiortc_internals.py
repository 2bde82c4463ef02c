"""The private attributes sfu relies on exist on the installed aiortc, aioice and
pylibsrtp, on real objects; and a missing one is a clear error at import."""

from __future__ import annotations

import importlib.metadata

import aioice.ice
import pylibsrtp
import pytest
from aiortc import RTCPeerConnection

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
        assert callable(transceiver.sender._run_rtcp) and callable(transceiver.sender._send_rtcp)
        assert callable(transceiver.receiver._RTCRtpReceiver__stop_decoder)
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

