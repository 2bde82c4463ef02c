"""`wss://` when TLS is configured: a real node with a certificate made for the test."""

from __future__ import annotations

import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signalling.client import DockcastClient

from .conftest import API_KEY, API_SECRET, NodeProcess


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "node.crt", tmp_path / "node.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_wss_when_tls_is_configured(tmp_path):
    cert, key = _self_signed(tmp_path)
    node = NodeProcess(tmp_path / "data", extra_env={"DOCKCAST_TLS_CERT": str(cert),
                                                     "DOCKCAST_TLS_KEY": str(key)},
                       scheme="https")
    try:
        context = ssl.create_default_context(cafile=str(cert))
        token = node.token("alice")
        client = await DockcastClient.connect(f"wss://localhost:{node.port}/ws", token, ssl=context)
        assert client.welcome["identity"] == "alice"
        joined = await client.join(room="dock-1")
        assert joined["type"] == "joined"
        await client.close()
        with pytest.raises(Exception):  # a client that does not trust the certificate
            await DockcastClient.connect(f"wss://localhost:{node.port}/ws", token)
    finally:
        assert node.stop() == 0
