"""The node's trunk certificate: self-signed ECDSA P-256, pinned by its fingerprint.

Nodes do not trust a certificate authority: each pins the other's certificate by the
SHA-256 of its DER bytes (the cluster directory publishes every node's fingerprint).
`load_or_create(directory)` makes the key and certificate the first time (``trunk.key``
and ``trunk.crt``, mode 0600, the directory 0700 when it is made here) and reads them
afterwards, so a node keeps its fingerprint across restarts.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import pathlib
import stat
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["TrunkCertificate", "load_or_create", "fingerprint", "normalize_fingerprint",
           "same_fingerprint", "CERT_FILE", "KEY_FILE"]

CERT_FILE = "trunk.crt"
KEY_FILE = "trunk.key"
_VALIDITY = datetime.timedelta(days=20 * 365)  # pinned, not chained: expiry protects nothing


@dataclass(frozen=True)
class TrunkCertificate:
    """A node's trunk certificate and its private key (what `TrunkServer` and
    `connect_trunk` take)."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)

    @classmethod
    def generate(cls, common_name: str = "dockcast-node") -> TrunkCertificate:
        """A new key and certificate, in memory only."""
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(_self_signed(key, common_name), key)


def fingerprint(certificate: x509.Certificate) -> str:
    """The SHA-256 of the certificate's DER bytes, 64 lowercase hex digits."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def normalize_fingerprint(text: str) -> str:
    """A fingerprint as `fingerprint` writes it, from that form, upper case, with colons
    or with a ``sha-256 `` prefix (the SDP form). ``ValueError`` if it is none of these."""
    value = text.strip().lower()
    if value.startswith("sha-256 "):
        value = value[8:].strip()
    value = value.replace(":", "")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"not a SHA-256 fingerprint: {text[:100]!r}")
    return value


def same_fingerprint(a: str, b: str) -> bool:
    """Whether two fingerprints (any form `normalize_fingerprint` takes) are the same;
    a malformed one matches nothing."""
    try:
        return hmac.compare_digest(normalize_fingerprint(a), normalize_fingerprint(b))
    except ValueError:
        return False


def load_or_create(directory: str | os.PathLike[str], common_name: str = "dockcast-node"
                   ) -> TrunkCertificate:
    """The certificate kept in ``directory``, made there on first use. A key file that
    others may read is refused (``PermissionError``), as is a certificate that is not the
    key's (``ValueError``)."""
    folder = pathlib.Path(directory)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path, cert_path = folder / KEY_FILE, folder / CERT_FILE
    if not key_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        _write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    mode = key_path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(f"{key_path} is readable by others (mode {stat.S_IMODE(mode):o}); "
                              f"chmod 600 it")
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an ECDSA key")
    if not cert_path.exists():  # first use, or a crash between the two files
        _write_private(cert_path, _self_signed(key, common_name).public_bytes(
            serialization.Encoding.PEM))
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if certificate.public_key() != key.public_key():
        raise ValueError(f"{cert_path} is not the certificate of {key_path}")
    return TrunkCertificate(certificate, key)


def _self_signed(key: ec.EllipticCurvePrivateKey, common_name: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .sign(key, hashes.SHA256()))


def _write_private(path: pathlib.Path, data: bytes) -> None:
    """Write ``path`` mode 0600 under a temporary name, then rename: a reader never sees
    half a file, and two nodes starting at once keep one of the two (both valid)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
