"""C2PA content credentials on MP4 exports: the file carries its own provenance.

An MP4 export gets a C2PA manifest (``c2pa-python``, the C2PA SDK's bindings) with our
assertion ``com.dockcast.evidence``: the recording id, the inspection session id, the
room and shipment, the audit log's last signed checkpoint (size, root, ts, signature,
key) and the export tool. The manifest's hard binding is a BMFF hash
(``c2pa.hash.bmff.v3``) over the file minus the manifest's own ``uuid`` box: the SDK
inserts that box after ``ftyp`` and shifts the sample offsets in ``moov``; the samples
in ``mdat`` are not touched. Any C2PA reader then checks the file alone: one byte
changed in the media gives ``assertion.bmffHash.mismatch``.

WebM (and Ogg) exports get no manifest: the SDK does not sign them. Their evidence is
the audit log (``dockcast export --bundle``).

C2PA signs with an X.509 certificate (not the audit log's bare Ed25519 key). Unless the
caller gives its own (`load_credentials`: a deployment's certificate chain from its CA),
the node makes its own at first use (`node_credentials`): an ES256 (P-256) key, a
certificate for it (key usage digitalSignature, extended key usage emailProtection, the
profile the C2PA trust model asks of a signer) issued by a self-made CA whose private
key is thrown away once the certificate is signed. All of it is in
``<data-dir>/keys/c2pa-signing.pem`` (private key, certificate, CA certificate; mode
0600) and the CA certificate alone in ``<data-dir>/keys/c2pa-ca.pem``: a reader that is
given that file as a trust anchor reports the manifest ``Trusted``; one that is not
reports ``Valid`` with the one failure code ``signingCredential.untrusted``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from plugins.audit import Checkpoint, InvalidCheckpoint
from plugins.audit.keys import write_private
from plugins.recorder import Manifest

from .errors import ExportError
from .export import ExportResult, export_recording

__all__ = [
    "ASSERTION_LABEL",
    "SIGNING_FILE",
    "CA_FILE",
    "ContentCredentialsError",
    "C2paCredentials",
    "node_credentials",
    "load_credentials",
    "session_dir",
    "last_checkpoint",
    "evidence_assertion",
    "sign_mp4",
    "export_signed_mp4",
]

#: The label of our assertion in the manifest (reverse domain, as C2PA asks of custom ones).
ASSERTION_LABEL = "com.dockcast.evidence"
#: The node's C2PA private key and certificate chain, relative to the data directory.
SIGNING_FILE = pathlib.Path("keys") / "c2pa-signing.pem"
#: The node's C2PA CA certificate (the trust anchor to give readers), same directory.
CA_FILE = pathlib.Path("keys") / "c2pa-ca.pem"

_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # as plugins.audit.log writes them
_DAY = datetime.timedelta(days=1)
_LEAF_DAYS = 5 * 365
_CREATED = {"action": "c2pa.created",
            "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"}


class ContentCredentialsError(ExportError):
    """The C2PA manifest cannot be made: credentials unreadable, mismatched or expired,
    or the SDK refused to sign. The message names the file."""

    code = "internal"


@dataclass(frozen=True)
class C2paCredentials:
    """What signs a manifest: the PEM certificate chain (signer first, then its
    issuers), the signer's PEM private key, and the C2PA algorithm name
    (``es256``, ``es384``, ``es512``, ``ps256``, ``ed25519``)."""

    chain_pem: bytes
    key_pem: bytes
    alg: str
    source: str  # where they were read from, for messages

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.chain_pem)[0]


# --- credentials ------------------------------------------------------------------------

def _alg(key: Any, where: str) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}.get(key.curve.name)
        if alg:
            return alg
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    elif isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return "ps256"
    raise ContentCredentialsError(f"{where}: a {type(key).__name__} cannot sign C2PA manifests "
                                  "(use EC P-256/P-384/P-521, Ed25519 or RSA of 2048 bits or more)")


def _parse(chain_pem: bytes, key_pem: bytes, where: str, now: float) -> C2paCredentials:
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ContentCredentialsError(f"{where}: not a PEM certificate chain and unencrypted "
                                      f"private key ({exc})") from None
    alg = _alg(key, where)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (chain[0].public_key().public_bytes(serialization.Encoding.DER, public)
            != key.public_key().public_bytes(serialization.Encoding.DER, public)):
        raise ContentCredentialsError(f"{where}: the private key is not the first certificate's "
                                      f"({chain[0].subject.rfc4514_string()})")
    when = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    if not chain[0].not_valid_before_utc <= when <= chain[0].not_valid_after_utc:
        raise ContentCredentialsError(f"{where}: the certificate {chain[0].subject.rfc4514_string()} "
                                      f"is not valid now (valid {chain[0].not_valid_before_utc:%Y-%m-%d} "
                                      f"to {chain[0].not_valid_after_utc:%Y-%m-%d})")
    # Written back alone: the SDK reads one PEM block per argument (our node file holds
    # the key and the certificates together).
    return C2paCredentials(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()), alg, where)


def load_credentials(cert: str | os.PathLike, key: str | os.PathLike, *,
                     now: float | None = None) -> C2paCredentials:
    """A deployment's own C2PA credentials: ``cert`` a PEM chain (the signing certificate
    first, then intermediates), ``key`` its unencrypted PEM private key. Raises
    `ContentCredentialsError` naming the file when they cannot sign (unreadable, key and
    certificate apart, expired, an algorithm C2PA does not have)."""
    parts = []
    for path in (cert, key):
        try:
            parts.append(pathlib.Path(path).read_bytes())
        except OSError as exc:
            raise ContentCredentialsError(f"{path}: cannot read ({exc.strerror})") from None
    return _parse(parts[0], parts[1], f"{cert} and {key}",
                  time.time() if now is None else now)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Dockcast node"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _usage(*, sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
                         crl_sign=not sign, encipher_only=False, decipher_only=False)


def _make(now: float) -> bytes:
    """A fresh signer: private key, certificate and CA certificate, PEM."""
    start = datetime.datetime.fromtimestamp(now, datetime.timezone.utc) - _DAY
    end = start + datetime.timedelta(days=_LEAF_DAYS)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name, name = _name("Dockcast node C2PA CA"), _name("Dockcast node C2PA signer")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end + _DAY)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_usage(sign=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(sign=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    # The CA's private key goes out of scope here, never written: nothing else can ever
    # be issued under this CA.
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return (key_pem + leaf.public_bytes(serialization.Encoding.PEM)
            + ca.public_bytes(serialization.Encoding.PEM))


def _private(path: pathlib.Path, mode: int) -> None:
    st = path.stat()
    if st.st_mode & 0o077:
        raise ContentCredentialsError(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; C2PA "
                                      f"signing keys must be private to their owner (chmod {mode:o} {path})")


def _expired(pem: bytes, now: float) -> bool:
    try:
        leaf = x509.load_pem_x509_certificates(pem)[0]
    except ValueError:
        return False  # _parse says what is wrong with it
    return leaf.not_valid_after_utc.timestamp() < now


def node_credentials(data_dir: str | os.PathLike, *, now: float | None = None) -> C2paCredentials:
    """The node's own C2PA credentials, made at first use (and again once the
    certificate has expired) in ``<data-dir>/keys/`` (directory 0700, files 0600). A
    ``keys/`` directory or key file others may read is refused, as for the audit key."""
    now = time.time() if now is None else now
    path = pathlib.Path(data_dir) / SIGNING_FILE
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _private(path.parent, 0o700)
    if not path.exists():
        write_private(path, _make(now), replace=False)
    _private(path, 0o600)
    pem = path.read_bytes()
    if _expired(pem, now):
        write_private(path, _make(now), replace=True)
        pem = path.read_bytes()
    credentials = _parse(pem, pem, str(path), now)
    # The CA certificate alone, for readers' trust lists: the last one of the chain.
    ca_pem = x509.load_pem_x509_certificates(pem)[-1].public_bytes(serialization.Encoding.PEM)
    ca_path = path.parent / CA_FILE.name
    if not ca_path.exists() or ca_path.read_bytes() != ca_pem:
        write_private(ca_path, ca_pem, replace=True)
    return credentials


# --- the manifest -----------------------------------------------------------------------

def session_dir(audit_root: pathlib.Path, manifest: Manifest) -> pathlib.Path | None:
    """``<audit_root>/<session_id>`` of a recording, or None when its manifest names
    no session (or a name that is not a session id)."""
    session = manifest.fields.get("session_id")
    if not isinstance(session, str) or not _SESSION_ID.fullmatch(session):
        return None
    return pathlib.Path(audit_root) / session


def last_checkpoint(audit_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The last complete checkpoint of a session's audit directory, in its file form
    (``session_id, size, root, ts, signature, key``, ``tst`` when present), or None
    when it has none. A line that does not parse is skipped (a torn write)."""
    try:
        data = (pathlib.Path(audit_dir) / "checkpoints.jsonl").read_bytes()
    except FileNotFoundError:
        return None
    for line in reversed(data.split(b"\n")[:-1]):  # after the last newline: torn
        try:
            return Checkpoint.parse(json.loads(line)).to_json()
        except (ValueError, InvalidCheckpoint):
            continue
    return None


def evidence_assertion(manifest: Manifest, checkpoint: dict[str, Any] | None,
                       tool: dict[str, str]) -> dict[str, Any]:
    """Our assertion's data: the recording's ids, the session's last checkpoint (None:
    no audit log of the session here) and the tool that exported it
    (``{"name": ..., "version": ...}``)."""
    fields = manifest.fields
    return {"recording_id": manifest.recording_id, "session_id": fields.get("session_id"),
            "room": fields.get("room"), "shipment_id": fields.get("shipment_id"),
            "checkpoint": checkpoint, "export_tool": dict(tool)}


def sign_mp4(source: pathlib.Path, dest: pathlib.Path, credentials: C2paCredentials,
             assertion: dict[str, Any]) -> dict[str, Any]:
    """Write ``dest``: ``source`` (an MP4) with a C2PA manifest carrying ``assertion``
    (see `evidence_assertion`; its ``export_tool`` is the claim generator), signed with
    ``credentials``; written under a temporary name, mode 0600, then renamed. Returns
    the manifest as a C2PA reader reads it back (``get_active_manifest``)."""
    import c2pa  # the SDK's native library is loaded only when an MP4 is signed

    definition = {"claim_generator_info": [assertion["export_tool"]], "title": dest.name,
                  "format": "video/mp4",
                  "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [_CREATED]}},
                                 {"label": ASSERTION_LABEL, "data": assertion}]}
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.c2pa.partial")
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(
            credentials.alg.encode(), credentials.chain_pem, credentials.key_pem, None))
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(source, "rb") as src, os.fdopen(fd, "w+b") as out:
            c2pa.Builder(definition).sign(signer, "video/mp4", src, out)
            out.flush()
            os.fsync(out.fileno())
            out.seek(0)
            active = c2pa.Reader("video/mp4", out).get_active_manifest()
        os.replace(tmp, dest)
    except c2pa.C2paError as exc:
        raise ContentCredentialsError(f"C2PA signing of {dest.name} with {credentials.source} "
                                      f"failed: {exc}") from None
    except OSError as exc:
        raise ContentCredentialsError(f"cannot write {dest}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return active or {}


def export_signed_mp4(directory: pathlib.Path, out: pathlib.Path, credentials: C2paCredentials,
                      *, audit_root: pathlib.Path | None, tool: dict[str, str],
                      progress: Callable[[int, int], None] | None = None,
                      ) -> tuple[ExportResult, dict[str, Any]]:
    """`export_recording` to ``out`` (``.mp4``), signed with a C2PA manifest whose
    assertion holds the last checkpoint of ``<audit_root>/<session_id>`` (none when
    ``audit_root`` is None or holds no log of the session). Nothing is at ``out``
    until it is signed: a failed export or signing leaves nothing behind. Returns the
    export's result and the manifest read back (see `sign_mp4`)."""
    unsigned = out.with_name(f".{out.stem}.{os.getpid()}.unsigned.mp4")
    try:
        result = export_recording(directory, unsigned, progress=progress)
        manifest = Manifest.load(directory)
        audit_dir = session_dir(audit_root, manifest) if audit_root is not None else None
        checkpoint = last_checkpoint(audit_dir) if audit_dir is not None else None
        signed = sign_mp4(unsigned, out, credentials, evidence_assertion(manifest, checkpoint, tool))
    finally:
        unsigned.unlink(missing_ok=True)
    return dataclasses.replace(result, path=out), signed
