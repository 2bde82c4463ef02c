"""The node's DTLS reaches peers with an RSA certificate (GStreamer's webrtcbin) in both
roles: as the client it offers ECDHE-RSA suites too (aiortc alone offers ECDSA ones only,
and no handshake is possible); as the server its ECDSA certificate still picks ECDSA.

The handshakes run in memory (pyOpenSSL memory BIOs), as aiortc runs its own."""

from __future__ import annotations

import datetime

import pytest
from aiortc.rtcdtlstransport import SRTP_PROFILES, RTCCertificate
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from OpenSSL import SSL

from sfu import _aiortc_internals as internals
import sfu.transport  # noqa: F401  (the node's transports apply the wider list at import)


def _rsa_context() -> SSL.Context:
    """A DTLS context like webrtcbin's: an RSA-2048 self-signed certificate, OpenSSL's
    default suites, a client certificate asked for, AES128_CM_SHA1_80 SRTP keys."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "gst")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.use_certificate(cert)
    ctx.use_privatekey(key)
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
    ctx.set_tlsext_use_srtp(b"SRTP_AES128_CM_SHA1_80")
    return ctx


def _handshake(client_ctx: SSL.Context, server_ctx: SSL.Context) -> tuple[SSL.Connection, SSL.Connection]:
    client, server = SSL.Connection(client_ctx), SSL.Connection(server_ctx)
    client.set_connect_state()
    server.set_accept_state()
    done = {client: False, server: False}
    for _ in range(20):
        for me, peer in ((client, server), (server, client)):
            if not done[me]:
                try:
                    me.do_handshake()
                    done[me] = True
                except SSL.WantReadError:
                    pass
            try:
                peer.bio_write(me.bio_read(65536))
            except SSL.WantReadError:
                pass
        if all(done.values()):
            return client, server
    raise AssertionError("the handshake did not finish")


def _node_context() -> SSL.Context:
    return RTCCertificate.generateCertificate()._create_ssl_context(SRTP_PROFILES)


def test_the_node_as_client_reaches_an_rsa_server():
    client, server = _handshake(_node_context(), _rsa_context())
    assert client.get_cipher_name().startswith("ECDHE-RSA-")
    assert client.get_selected_srtp_profile() == b"SRTP_AES128_CM_SHA1_80"
    assert server.get_peer_certificate() is not None  # the node showed its certificate


def test_aiortc_alone_cannot_reach_an_rsa_server():
    original = RTCCertificate._create_ssl_context._aiortc_original
    ctx = original(RTCCertificate.generateCertificate(), SRTP_PROFILES)
    with pytest.raises(SSL.Error, match="no shared cipher"):
        _handshake(ctx, _rsa_context())


def test_the_node_as_server_keeps_its_ecdsa_suites_with_an_rsa_client():
    client, server = _handshake(_rsa_context(), _node_context())
    assert server.get_cipher_name().startswith("ECDHE-ECDSA-")
    assert client.get_peer_certificate() is not None


def test_two_nodes_still_agree_on_ecdsa():
    client, _server = _handshake(_node_context(), _node_context())
    assert client.get_cipher_name() == "ECDHE-ECDSA-AES128-GCM-SHA256"


def test_applying_it_again_changes_nothing():
    before = RTCCertificate._create_ssl_context
    internals.accept_rsa_dtls_peers()
    assert RTCCertificate._create_ssl_context is before
    assert internals.DTLS_CIPHERS.startswith(b"ECDHE-ECDSA-AES128-GCM-SHA256:")
