"""A local RFC 3161 time-stamping authority for the tests: ``openssl ts`` behind HTTP.

`make_authority` makes a root CA and a TSA certificate (ECDSA P-256; the TSA's with a
critical extendedKeyUsage timeStamping, as RFC 3161 section 2.3 requires) and the
``openssl ts`` configuration, in a directory. `LocalTSA` serves it on 127.0.0.1 (a free
port, one thread): each POSTed query is answered by running ``openssl ts -reply
-queryfile Q -config C -inkey K -signer S``. With ``chain`` the configuration has a
``certs=`` line, and the CA's certificate follows the TSA's in the reply, in that order,
not always DER's: rfc3161-client cannot read such a reply as it is (DESIGN.md).

``mode`` makes it misbehave: ``"http-503"`` (an HTTP error), ``"garbage"`` (a reply
that is not RFC 3161), ``"rejection"`` (a reply with status rejection), ``"replay"``
(the reply to the first query it answered, whatever is asked).

Fixtures (import them into a test module): ``tsa_authority``, ``local_tsa`` (served
for the test) and ``stamped_session``: the conftest session, reopened with the local
authority, so that checkpoints 1-2 have no ``tst`` and checkpoints 3-5 have one.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from plugins.audit import AuditLog, TimestampAuthority

from .conftest import T0, Session, make_session

__all__ = ["Authority", "make_authority", "LocalTSA", "tsa_authority", "local_tsa", "stamped_session"]


@dataclass
class Authority:
    directory: Path
    ca_pem: bytes  # the root CA certificate: what --tsa-cert pins
    tsa_pem: bytes  # the TSA's own certificate (issued by the CA)
    config: Path
    key: Path
    signer: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def make_authority(directory: Path, name: str = "Test TSA", *, chain: bool = False) -> Authority:
    """A root CA and a TSA certificate it issued, and the ``openssl ts`` config, in
    ``directory`` (made mode 0700; the keys 0600). ``chain``: replies carry the CA's
    certificate too (``certs=``), after the TSA's, in the order openssl was given."""
    directory.mkdir(mode=0o700, parents=True)
    ca_key, tsa_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(f"{name} Root CA", ca_key, f"{name} Root CA", ca_key, ca=True)
    tsa = _certificate(name, tsa_key, f"{name} Root CA", ca_key, ca=False)
    key, signer, config = directory / "tsa.key", directory / "tsa.pem", directory / "openssl-ts.cnf"
    _write_private(key, tsa_key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    signer.write_bytes(tsa.public_bytes(serialization.Encoding.PEM))
    (directory / "serial").write_text("01\n")
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs = f"certs = {directory / 'ca.pem'}\n" if chain else ""
    config.write_text(f"""[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
serial = {directory / "serial"}
signer_cert = {signer}
signer_key = {key}
signer_digest = sha256
default_policy = 1.3.6.1.4.1.55555.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
{certs}""")
    return Authority(directory, ca.public_bytes(serialization.Encoding.PEM),
                     signer.read_bytes(), config, key, signer)


class LocalTSA:
    """`Authority` served over HTTP on 127.0.0.1; ``url``, ``queries`` (how many were
    answered), ``last_request`` (path and headers of the last one), ``mode``."""

    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        self.mode = "ok"
        self.queries = 0
        self.last_request: tuple[str, dict] | None = None
        self._first_reply: bytes | None = None
        self._count = 0
        self._server = HTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/tsa"
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-tsa",
                                        daemon=True)

    def __enter__(self) -> LocalTSA:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop answering and close the port (the authority is then down)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()

    def reply(self, query: bytes) -> bytes:
        """What ``openssl ts -reply`` answers to ``query``."""
        self._count += 1
        query_file = self.authority.directory / f"query-{self._count}.tsq"
        reply_file = self.authority.directory / f"reply-{self._count}.tsr"
        query_file.write_bytes(query)
        done = subprocess.run(["openssl", "ts", "-reply", "-queryfile", str(query_file),
                               "-config", str(self.authority.config), "-inkey", str(self.authority.key),
                               "-signer", str(self.authority.signer), "-out", str(reply_file)],
                              capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"openssl ts -reply failed: {done.stderr}")
        return reply_file.read_bytes()

    def _answer(self, query: bytes) -> tuple[int, bytes]:
        if self.mode == "http-503":
            return 503, b"busy"
        if self.mode == "garbage":
            return 200, b"<html>not a time-stamp</html>"
        if self.mode == "rejection":  # TimeStampResp { status { rejection, "no" } }
            return 200, bytes.fromhex("300b300902010230040c026e6f")
        reply = self.reply(query)
        self._first_reply = self._first_reply or reply
        return 200, self._first_reply if self.mode == "replay" else reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                query = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                tsa.last_request = (self.path, dict(self.headers))
                status, body = tsa._answer(query)
                tsa.queries += 1
                self.send_response(status)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # quiet test output
                pass

        return Handler


@pytest.fixture
def tsa_authority(tmp_path) -> Authority:
    return make_authority(tmp_path / "tsa")


@pytest.fixture
def local_tsa(tsa_authority):
    with LocalTSA(tsa_authority) as server:
        yield server


@pytest.fixture
def stamped_session(data_dir, signer, local_tsa) -> Session:
    """13 entries; checkpoints at 4 and 9 (no tst), 11 (the reopen), 12 and 13 (the
    close), the last three time-stamped by ``local_tsa``."""
    session = make_session(data_dir, signer, close=False)
    tsa = TimestampAuthority(local_tsa.url)
    log = AuditLog.open(session.path, signer, T0 + 20, tsa)
    log.append("verdict", {"verdict": "resellable", "refund": 0, "note": "", "by": "seller"}, T0 + 21)
    log.checkpoint(T0 + 22, tsa)
    log.close(T0 + 23, tsa)
    assert [cp.tst is not None for cp in log.checkpoints()] == [False, False, True, True, True]
    return session
