"""The offline verifier of a Dockcast audit log: ``python3 verify.py PATH --public-key KEY``.

It needs the standard library and ``cryptography`` (for Ed25519) and nothing else, and it
is one file with no relative import, so that an evidence bundle can ship a copy of it
and a third party can read it whole. ``docs/audit.md`` describes what it checks; in short:

- every line of ``entries.jsonl`` is canonical JSON (re-encoding it gives the same bytes),
  an object whose ``i`` counts 0, 1, 2... in order, with a ``ts`` and a ``type``;
- every checkpoint of ``checkpoints.jsonl`` names the given public key, its Ed25519
  signature verifies, its session id is the log's, its size grows past the previous
  one's, and its root is the RFC 6962 Merkle root of the first ``size`` entries
  (recomputed here from the entries' bytes, so consecutive checkpoints are consistent);
- every ``segment`` entry's file still has its size and SHA-256;
- a checkpoint's optional RFC 3161 time-stamp token (``tst``) is over that checkpoint's
  signed message, and, with ``--tsa-cert``, signed by the pinned authority (this needs
  ``pip install rfc3161-client``, imported only when a checkpoint carries a token);
- entries after the last checkpoint are reported as not covered (normal after a crash).

PATH is a session's audit directory (``<data-dir>/audit/<session_id>``) or an evidence
bundle (a ``.zip`` with ``audit/entries.jsonl``, ``audit/checkpoints.jsonl`` and
``segments/<recording_id>/<file>``). Exit status: 0 everything verifies, 1 something
differs (the first difference is named on stderr), 2 usage or unreadable input (or a
time-stamp token to check and no ``rfc3161-client``).

Entries are named by their index ``i`` (from 0), checkpoints by their line number in
``checkpoints.jsonl`` (from 1). The Dockcast package imports its hashing, canonical
JSON, key parsing and checkpoint message from here, so that there is one definition of
each (``plugins.audit.merkle``, ``.keys``, ``.checkpoint`` and ``.log`` build on it).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import hashlib
import json
import math
import os
import re
import sys
import zipfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable, Optional, Sequence

__all__ = [
    "AuditError",
    "UnreadableInput",
    "InvalidPublicKey",
    "InvalidCheckpoint",
    "InvalidEntryLine",
    "InvalidTimestamp",
    "InvalidTsaCertificate",
    "TimestampUnavailable",
    "EMPTY_ROOT",
    "CHECKPOINT_CONTEXT",
    "leaf_hash",
    "node_hash",
    "root_of",
    "RootStack",
    "canonical_json",
    "split_lines",
    "parse_entry",
    "public_key_bytes",
    "parse_public_key",
    "checkpoint_message",
    "SignedCheckpoint",
    "load_tsa_certificates",
    "TimestampInfo",
    "check_timestamp",
    "Difference",
    "Report",
    "verify_path",
    "add_arguments",
    "run",
    "main",
]

#: The first bytes of every signed checkpoint message (a domain separator and version).
CHECKPOINT_CONTEXT = b"dockcast-audit-checkpoint/v1\n"
#: RFC 6962: the hash of an empty tree is SHA-256 of nothing.
EMPTY_ROOT = hashlib.sha256(b"").digest()

_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class AuditError(Exception):
    """Base of the audit package's errors; ``code`` is the wire error code it maps to."""

    code = "internal"


class UnreadableInput(AuditError):
    """PATH is not a session's audit directory nor a readable evidence bundle (exit 2)."""


class InvalidPublicKey(AuditError, ValueError):
    """A public key text that is not base64 of 32 bytes."""

    code = "bad_request"


class InvalidCheckpoint(AuditError, ValueError):
    """A checkpoint object with a missing or malformed field; the message names it."""

    code = "bad_request"


class InvalidEntryLine(AuditError, ValueError):
    """An entry line that is not what the log writes; the message says why."""

    code = "bad_request"


class TimestampUnavailable(AuditError):
    """A time-stamp token must be checked or made and ``rfc3161-client`` is not
    installed (exit 2: ``pip install rfc3161-client``)."""


class InvalidTsaCertificate(AuditError, ValueError):
    """The authority's certificates (``--tsa-cert``) are not PEM X.509 certificates."""

    code = "bad_request"


class InvalidTimestamp(AuditError, ValueError):
    """A time-stamp token that does not prove its checkpoint's time: not a token, over
    another message, or not signed by the pinned authority. The message says which."""

    code = "bad_request"


# --- RFC 6962 hashing ---------------------------------------------------------------

def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class RootStack:
    """The roots of the complete subtrees along the right edge of a growing tree: an
    append costs O(1) amortised, the current root O(log n)."""

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self.size = 0

    def append(self, leaf: bytes) -> None:
        self._stack.append(leaf)
        n, self.size = self.size, self.size + 1
        while n & 1:  # each trailing 1 bit of the old size closes a complete subtree
            right = self._stack.pop()
            self._stack.append(node_hash(self._stack.pop(), right))
            n >>= 1

    def root(self) -> bytes:
        """MTH of the leaves so far (RFC 6962 section 2.1)."""
        if not self._stack:
            return EMPTY_ROOT
        root = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            root = node_hash(left, root)
        return root


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """The RFC 6962 Merkle tree hash of these leaf hashes (SHA-256 of b"" when empty)."""
    stack = RootStack()
    for leaf in leaf_hashes:
        stack.append(leaf)
    return stack.root()


# --- entries --------------------------------------------------------------------------

def canonical_json(obj: Any) -> bytes:
    """The one byte form of a JSON value the audit log writes and signs over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines (without their newline) and the incomplete tail (b"" if none)."""
    *lines, tail = data.split(b"\n")
    return lines, tail


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_entry(line: bytes, index: int) -> dict:
    """The entry on this line, checked as the log writes it; InvalidEntryLine says why not."""
    try:
        obj = json.loads(line.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise InvalidEntryLine("not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidEntryLine(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise InvalidEntryLine("not a JSON object")
    try:
        canonical = canonical_json(obj) == line
    except (ValueError, RecursionError):
        canonical = False
    if not canonical:
        raise InvalidEntryLine("not in canonical JSON form (re-encoding it gives other bytes)")
    i = obj.get("i")
    if type(i) is not int or i != index:
        raise InvalidEntryLine(f"its index i is {i!r}, expected {index} "
                               "(an entry before it was removed, inserted or moved)")
    ts = obj.get("ts")
    if type(ts) not in (int, float) or not math.isfinite(ts):
        raise InvalidEntryLine("its ts is missing or not a number")
    if not isinstance(obj.get("type"), str) or not obj["type"]:
        raise InvalidEntryLine("its type is missing or not a string")
    if index == 0 and (obj["type"] != "session_started" or not isinstance(obj.get("session_id"), str)):
        raise InvalidEntryLine("the first entry must be session_started with a session_id")
    if obj["type"] == "segment":
        ok = (isinstance(obj.get("recording_id"), str) and isinstance(obj.get("file"), str)
              and isinstance(obj.get("sha256"), str) and _HEX64.fullmatch(obj["sha256"])
              and type(obj.get("size")) is int and obj["size"] >= 0)
        if not ok:
            raise InvalidEntryLine("a segment entry needs recording_id, file, sha256 (hex) and size")
    return obj


# --- keys and checkpoints -----------------------------------------------------------

def public_key_bytes(text: str) -> bytes:
    """The 32 raw bytes of a public key text (standard base64, with padding)."""
    if not isinstance(text, str):
        raise InvalidPublicKey(f"a public key is base64 text, not {type(text).__name__}")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidPublicKey(f"public key {text!r} is not base64 ({exc})") from None
    if len(raw) != 32:
        raise InvalidPublicKey(f"public key {text!r} decodes to {len(raw)} bytes; "
                               "an Ed25519 public key is 32")
    return raw


def parse_public_key(text: str):
    """An ``Ed25519PublicKey`` from its text (what ``dockcast audit public-key`` prints)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(public_key_bytes(text))


def checkpoint_message(session_id: str, size: int, root: bytes, ts: float) -> bytes:
    """The bytes a checkpoint's Ed25519 signature covers (docs/audit.md)."""
    return CHECKPOINT_CONTEXT + f"{session_id}\n{size}\n{root.hex()}\n{float(ts)!r}\n".encode()


def _b64_field(obj: dict, name: str, length: Optional[int] = None) -> bytes:
    value = obj.get(name)
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except (binascii.Error, ValueError):
        raw = None
    if raw is None or (length is not None and len(raw) != length):
        size = f" of {length} bytes" if length else ""
        raise InvalidCheckpoint(f"checkpoint {name} must be base64{size}")
    return raw


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint as a verifier sees it: ``root`` is the Merkle root of the first
    ``size`` entries, ``signature`` Ed25519 over `signed_message`, ``key`` the signer's
    public key text, ``tst`` an optional RFC 3161 time-stamp token (DER)."""

    session_id: str
    size: int
    root: bytes
    ts: float
    signature: bytes
    key: str
    tst: Optional[bytes] = None

    FIELDS = frozenset({"session_id", "size", "root", "ts", "signature", "key", "tst"})

    def signed_message(self) -> bytes:
        return checkpoint_message(self.session_id, self.size, self.root, self.ts)

    def verify(self, public_key) -> bool:
        """Whether the signature verifies with ``public_key`` (a key object or its text)."""
        from cryptography.exceptions import InvalidSignature

        if isinstance(public_key, str):
            public_key = parse_public_key(public_key)
        try:
            public_key.verify(self.signature, self.signed_message())
        except InvalidSignature:
            return False
        return True

    def to_json(self) -> dict:
        """The file and wire form: root as lowercase hex, signature and tst as base64."""
        obj = {"session_id": self.session_id, "size": self.size, "root": self.root.hex(),
               "ts": self.ts, "signature": base64.b64encode(self.signature).decode(),
               "key": self.key}
        if self.tst is not None:
            obj["tst"] = base64.b64encode(self.tst).decode()
        return obj

    @classmethod
    def parse(cls, obj: Any):
        """A checkpoint from its JSON form; InvalidCheckpoint names a bad field."""
        if not isinstance(obj, dict):
            raise InvalidCheckpoint("a checkpoint is a JSON object")
        unknown = set(obj) - cls.FIELDS
        if unknown:
            raise InvalidCheckpoint(f"checkpoint has unknown fields {sorted(unknown)}")
        session_id, size, root, ts = (obj.get(k) for k in ("session_id", "size", "root", "ts"))
        if not isinstance(session_id, str) or not session_id or "\n" in session_id:
            raise InvalidCheckpoint("checkpoint session_id must be a non-empty one-line string")
        if type(size) is not int or size < 0:
            raise InvalidCheckpoint("checkpoint size must be a non-negative integer")
        if not isinstance(root, str) or not _HEX64.fullmatch(root):
            raise InvalidCheckpoint("checkpoint root must be 64 lowercase hex digits")
        if type(ts) not in (int, float) or not math.isfinite(ts):
            raise InvalidCheckpoint("checkpoint ts must be a number")
        signature = _b64_field(obj, "signature", 64)
        try:
            public_key_bytes(obj.get("key"))
        except InvalidPublicKey as exc:
            raise InvalidCheckpoint(f"checkpoint key: {exc}") from None
        tst = _b64_field(obj, "tst") if "tst" in obj else None
        return cls(session_id, size, bytes.fromhex(root), float(ts), signature, obj["key"], tst)


# --- RFC 3161 time-stamp tokens (only when a checkpoint carries one) -------------------

_SHA256_OID = "2.16.840.1.101.3.4.2.1"
# A few parts of a token are outside what its signature covers, and OpenSSL's check does
# not look at them all (the signatureAlgorithm, for ECDSA): so that no byte of a token
# can change unnoticed, they must be what the signed parts imply (DER value bytes of the
# OIDs below).
_DIGESTS = {bytes.fromhex("608648016503040201"): "sha256",
            bytes.fromhex("608648016503040202"): "sha384",
            bytes.fromhex("608648016503040203"): "sha512"}
_SIGNATURES = {bytes.fromhex("2a8648ce3d040302"): "sha256", bytes.fromhex("2a8648ce3d040303"): "sha384",
               bytes.fromhex("2a8648ce3d040304"): "sha512",
               bytes.fromhex("2a864886f70d01010b"): "sha256", bytes.fromhex("2a864886f70d01010c"): "sha384",
               bytes.fromhex("2a864886f70d01010d"): "sha512",
               bytes.fromhex("2a864886f70d010101"): None,  # rsaEncryption: any digest
               bytes.fromhex("2a864886f70d01010a"): None,  # RSASSA-PSS
               bytes.fromhex("2b6570"): None}  # Ed25519


def _rfc3161():
    try:
        import rfc3161_client
    except ImportError:
        raise TimestampUnavailable("checking RFC 3161 time-stamp tokens needs the rfc3161-client "
                                   "package: pip install rfc3161-client") from None
    return rfc3161_client


def load_tsa_certificates(pem: bytes) -> list:
    """The X.509 certificates of a PEM text: the authority's root CA (self-signed), with
    any intermediates, or a self-signed authority certificate itself."""
    from cryptography import x509

    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise InvalidTsaCertificate(f"not PEM X.509 certificates ({exc})") from None
    if not any(c.issuer == c.subject for c in certificates):
        raise InvalidTsaCertificate("no self-signed (root) certificate among them: give the "
                                    "authority's root CA, alone or with its chain")
    return certificates


@dataclass(frozen=True)
class TimestampInfo:
    """What a checked token says: ``gen_time`` (when the authority signed it, UTC),
    ``serial``, ``nonce``, ``signer`` (the signing certificate's issuer and serial) and
    whether its signature was checked against a pinned authority (``pinned``)."""

    gen_time: datetime.datetime
    serial: int
    nonce: Optional[int]
    signer: str
    pinned: bool


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der(data: bytes, start: int, end: int) -> list:
    """The DER elements in data[start:end], each as (tag, start, value start, end)."""
    found = []
    while start < end:
        head, tag, length, at = start, data[start], data[start + 1], start + 2
        if length & 0x80:
            count = length & 0x7F
            length, at = int.from_bytes(data[at:at + count], "big"), at + count
        found.append((tag, head, at, at + length))
        start = at + length
    return found


def _unsigned_parts_differ(token: bytes, certificates: Iterable[bytes]) -> Optional[str]:
    """Why the parts of a token its signature does not cover are not what its signed
    parts imply, or None: the SignerInfo's signatureAlgorithm must fit its digest
    algorithm, and its issuer and serial must be byte for byte its certificate's
    (OpenSSL compares names in a canonical form, so another string type would pass)."""
    try:
        content_info = _der(token, 0, len(token))[0]
        content = _der(token, *content_info[2:])[1]  # [0] EXPLICIT
        signed_data = _der(token, *content[2:])[0]
        signer_info = _der(token, *_der(token, *signed_data[2:])[-1][2:])[0]
        fields = _der(token, *signer_info[2:])
        sid, digest_algorithm = fields[1], fields[2]
        signature_algorithm = next(f for f in fields[3:] if f[0] == 0x30)
        digest_oid, signature_oid = (_der(token, *f[2:])[0] for f in (digest_algorithm, signature_algorithm))
        digest = _DIGESTS.get(token[digest_oid[2]:digest_oid[3]])
        signature = token[signature_oid[2]:signature_oid[3]]
        if digest is None or signature not in _SIGNATURES or _SIGNATURES[signature] not in (None, digest):
            return "its signature algorithm is not the one its digest algorithm implies"
        names = []
        for der in certificates:
            tbs = _der(der, *_der(der, 0, len(der))[0][2:])[0]
            parts = _der(der, *tbs[2:])
            serial, issuer = parts[1:4:2] if parts[0][0] == 0xA0 else parts[0:3:2]
            names.append(der[issuer[1]:issuer[3]] + der[serial[1]:serial[3]])
    except (IndexError, StopIteration):
        return "its CMS structure cannot be read"
    if names and token[sid[2]:sid[3]] not in names:
        return "its signer's issuer and serial are not written as its certificate writes them"
    return None


def _signer_name(certificates: Iterable[bytes], signer) -> str:
    """The signing certificate's subject (and issuer), as the token names it."""
    from cryptography import x509

    issuer = signer.issuer.rfc4514_string()
    for der in certificates:
        cert = x509.load_der_x509_certificate(der)
        if cert.issuer == signer.issuer and cert.serial_number == signer.serial_number:
            return f"{cert.subject.rfc4514_string()} (issued by {issuer})"
    return f"certificate {signer.serial_number:x} of {issuer}"


def check_timestamp(token: bytes, message: bytes, trusted: Optional[Sequence] = None) -> TimestampInfo:
    """Check an RFC 3161 time-stamp token (DER) over ``message``: its imprint is the
    SHA-256 of ``message`` and, when ``trusted`` certificates are given (see
    `load_tsa_certificates`), its signature verifies with a certificate that chains to
    them and is meant for time-stamping. Without ``trusted`` the signature is not
    checked: the time is only the token's claim. InvalidTimestamp says what is wrong;
    TimestampUnavailable when rfc3161-client is not installed."""
    rfc3161 = _rfc3161()
    # rfc3161-client reads responses, not bare tokens: wrap it in a granted response.
    body = b"\x30\x03\x02\x01\x00" + token
    try:
        response = rfc3161.decode_timestamp_response(b"\x30" + _der_length(len(body)) + body)
        info = response.tst_info
        imprint = info.message_imprint
        algorithm, digest = imprint.hash_algorithm.dotted_string, imprint.message
        signer = next(iter(response.signed_data.signer_infos))
        versions = (response.signed_data.version, signer.version)
        certificates = response.signed_data.certificates
        identity = _signer_name(certificates, signer)
        gen_time, serial, nonce = info.gen_time, info.serial_number, info.nonce
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: the parser fails in many ways
        raise InvalidTimestamp(f"not an RFC 3161 time-stamp token ({type(exc).__name__}: {exc})") \
            from None
    expected = hashlib.sha256(message).digest()
    if algorithm != _SHA256_OID:
        raise InvalidTimestamp(f"its message imprint uses {algorithm}, not SHA-256")
    if digest != expected:
        raise InvalidTimestamp(f"it time-stamps another message (its imprint is {digest.hex()}; "
                               f"this checkpoint's signed message hashes to {expected.hex()})")
    changed = "a version is not 3 and 1" if versions != (3, 1) else \
        _unsigned_parts_differ(token, certificates)
    if changed:
        raise InvalidTimestamp(f"its CMS encoding was changed outside what it signs ({changed})")
    if trusted:
        roots = [c for c in trusted if c.issuer == c.subject]
        builder = rfc3161.VerifierBuilder(roots=roots,
                                          intermediates=[c for c in trusted if c not in roots])
        try:
            builder.build().verify(response, expected)
        except Exception as exc:  # noqa: BLE001 - VerificationError, or a parser's error
            raise InvalidTimestamp(f"its signature does not verify against the pinned "
                                   f"authority ({exc})") from None
    if gen_time.tzinfo is None:
        gen_time = gen_time.replace(tzinfo=datetime.timezone.utc)
    return TimestampInfo(gen_time, serial, nonce, identity, bool(trusted))


# --- the report -----------------------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    """The first thing that differs. ``what`` is ``entry``, ``checkpoint``, ``segment``
    or ``log``; ``index`` the entry's index (the first of a range ending at ``last``),
    or for a checkpoint its line number from 1; ``file`` a segment's
    ``recording_id/file``; ``why`` the reason."""

    what: str
    why: str
    index: Optional[int] = None
    last: Optional[int] = None
    file: Optional[str] = None

    def __str__(self) -> str:
        if self.what == "entry":
            name = f"entry {self.index}" if self.last in (None, self.index) else \
                f"entries {self.index}-{self.last}"
        elif self.what == "checkpoint":
            name = f"checkpoint {self.index}"
        elif self.what == "segment":
            name = f"segment {self.file} (entry {self.index})"
        else:
            name = "the log"
        return f"{name}: {self.why}"


@dataclass
class Report:
    """What `verify_path` found: ``ok`` is true when nothing differs. ``covered`` is the
    last checkpoint's size; ``segments`` the segment files re-hashed and found equal;
    ``timestamps`` the time-stamp tokens checked (their times are in ``notes``)."""

    ok: bool
    entries: int = 0
    checkpoints: int = 0
    covered: int = 0
    segments: int = 0
    timestamps: int = 0
    difference: Optional[Difference] = None
    notes: list = field(default_factory=list)

    def summary(self) -> str:
        stamped = f", {self.timestamps} time-stamp tokens checked" if self.timestamps else ""
        return (f"verified: {self.entries} entries, {self.covered} covered by "
                f"{self.checkpoints} signed checkpoints, {self.segments} segment files re-hashed"
                f"{stamped}")


class _Found(Exception):
    def __init__(self, difference: Difference) -> None:
        self.difference = difference


# --- where the files are --------------------------------------------------------------

def _safe_parts(rid: str, file: str) -> Optional[list]:
    """``[rid, *file's parts]``, or None when they could leave the recordings directory."""
    parts = [rid, *file.split("/")]
    if "/" in rid or any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
        return None
    return parts


class _Source:
    """A session directory: entries, checkpoints and segment files on disk."""

    def __init__(self, path: str, recordings: Optional[str]) -> None:
        self.path = path
        self.dirs = [os.path.join(path, "segments"),
                     recordings or os.path.normpath(os.path.join(os.path.abspath(path),
                                                                 os.pardir, os.pardir, "recordings"))]
        if not os.path.isfile(os.path.join(path, "entries.jsonl")):
            raise UnreadableInput(f"{path}: no entries.jsonl here: not a session's audit "
                                  "directory nor a .zip evidence bundle")

    def read(self, name: str) -> Optional[bytes]:
        try:
            with open(os.path.join(self.path, name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UnreadableInput(f"{os.path.join(self.path, name)}: {exc}") from None

    def open_segment(self, parts: list) -> tuple[Optional[BinaryIO], str]:
        tried = [os.path.join(d, *parts) for d in self.dirs]
        for candidate in tried:
            if os.path.isfile(candidate):
                return open(candidate, "rb"), candidate
        return None, " nor ".join(tried)

    def close(self) -> None:
        pass


class _ZipSource(_Source):
    """An evidence bundle: the same files inside a zip archive."""

    def __init__(self, path: str, recordings: Optional[str]) -> None:
        self.path = path
        self.dirs = [recordings] if recordings else []
        try:
            self.zip = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise UnreadableInput(f"{path}: not a readable zip archive ({exc})") from None
        if "audit/entries.jsonl" not in self.zip.namelist():
            self.zip.close()
            raise UnreadableInput(f"{path}: no audit/entries.jsonl: not an evidence bundle")

    def read(self, name: str) -> Optional[bytes]:
        try:
            return self.zip.read(f"audit/{name}")
        except KeyError:
            return None
        except (OSError, zipfile.BadZipFile, EOFError) as exc:  # a CRC mismatch: changed bytes
            raise _Found(Difference("log", f"the bundle's audit/{name} is damaged ({exc})")) from None

    def open_segment(self, parts: list) -> tuple[Optional[BinaryIO], str]:
        name = "segments/" + "/".join(parts)
        if name in self.zip.namelist():
            return self.zip.open(name), f"{self.path}:{name}"
        found, tried = super().open_segment(parts)
        return found, " nor ".join([f"{self.path}:{name}", tried] if tried else [f"{self.path}:{name}"])

    def close(self) -> None:
        self.zip.close()


# --- the check ------------------------------------------------------------------------

class _Check:
    def __init__(self, source: _Source, key: str, allow_uncovered_tail: bool,
                 tsa_certs: Optional[list]) -> None:
        self.source, self.allow_tail, self.tsa_certs = source, allow_uncovered_tail, tsa_certs
        self.key, self.public_key = public_key_bytes(key), parse_public_key(key)
        self.report = Report(ok=False)
        self.stack = RootStack()
        self.session_id: Optional[str] = None
        self.segments: list = []  # (index, recording_id, file, sha256, size)

    def run(self) -> Report:
        entries = self.source.read("entries.jsonl") or b""
        lines, torn = split_lines(entries)
        cp_lines, cp_torn = split_lines(self.source.read("checkpoints.jsonl") or b"")
        self.report.entries = len(lines)
        if not lines:
            raise _Found(Difference("log", "entries.jsonl holds no complete entry"))
        done = 0
        for number, raw in enumerate(cp_lines, 1):
            cp = self._checkpoint(number, raw, done)
            for index in range(done, min(cp.size, len(lines))):
                self._entry(index, lines[index])
            if cp.size > len(lines):
                raise _Found(Difference("entry", f"missing: checkpoint {number} covers {cp.size} "
                                        f"entries and the log ends after {len(lines)} (truncated)",
                                        len(lines), cp.size - 1))
            if cp.session_id != self.session_id:  # the signature holds: entry 0 is what changed
                raise _Found(Difference("entry", f"its session_id {self.session_id!r} is not the "
                                        f"session checkpoint {number} signs ({cp.session_id!r})", 0))
            if self.stack.root() != cp.root:
                raise _Found(Difference("entry", f"the Merkle root of the first {cp.size} entries does "
                                        f"not match checkpoint {number} (size {cp.size}): an entry "
                                        "in this range was changed", done, cp.size - 1))
            self._segments()
            done = self.report.covered = cp.size
            self.report.checkpoints = number
        for index in range(done, len(lines)):
            self._entry(index, lines[index])
        self._tail(done, len(lines), torn, cp_torn)
        self._segments()
        self.report.ok = True
        return self.report

    def _checkpoint(self, number: int, raw: bytes, done: int) -> SignedCheckpoint:
        try:
            cp = SignedCheckpoint.parse(json.loads(raw.decode("utf-8")))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise _Found(Difference("checkpoint", f"not a checkpoint ({exc})", number)) from None
        if public_key_bytes(cp.key) != self.key:
            raise _Found(Difference("checkpoint", f"signed by another key ({cp.key}), not the "
                                    "given one", number))
        if not cp.verify(self.public_key):
            raise _Found(Difference("checkpoint", f"its signature does not verify with the given "
                                    f"key (its session id, size {cp.size}, root or ts was changed)",
                                    number))
        if cp.size <= done:
            raise _Found(Difference("checkpoint", f"its size {cp.size} does not grow past the "
                                    f"previous checkpoint's {done} (checkpoints reordered?)", number))
        if cp.tst is not None:
            self._timestamp(number, cp)
        elif self.tsa_certs:
            self.report.notes.append(f"checkpoint {number} carries no time-stamp token (the "
                                     "authority was unreachable when it was written?)")
        return cp

    def _timestamp(self, number: int, cp: SignedCheckpoint) -> None:
        try:
            info = check_timestamp(cp.tst, cp.signed_message(), self.tsa_certs)
        except InvalidTimestamp as exc:
            raise _Found(Difference("checkpoint", f"its time-stamp token: {exc}", number)) from None
        when = info.gen_time.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        late = info.gen_time.timestamp() - cp.ts
        how = ("its signature verifies against --tsa-cert" if info.pinned else
               "the authority was not pinned (no --tsa-cert): its signature was not checked, "
               "the time is only the token's claim")
        self.report.notes.append(f"checkpoint {number}: time-stamped at {when} ({late:+.1f} s "
                                 f"from its ts) by {info.signer}; {how}")
        self.report.timestamps += 1

    def _entry(self, index: int, line: bytes) -> None:
        try:
            obj = parse_entry(line, index)
        except InvalidEntryLine as exc:
            raise _Found(Difference("entry", str(exc), index)) from None
        if index == 0:
            self.session_id = obj["session_id"]
        if obj["type"] == "segment":
            self.segments.append((index, obj["recording_id"], obj["file"], obj["sha256"], obj["size"]))
        self.stack.append(leaf_hash(line))

    def _tail(self, done: int, size: int, torn: bytes, cp_torn: bytes) -> None:
        after_crash = ("normal after a crash: reopening the session adds session_recovered and a "
                       "checkpoint; --allow-uncovered-tail accepts them")
        problems = []
        if done < size:
            problems.append(Difference("entry", f"not covered by a checkpoint ({after_crash})",
                                       done, size - 1))
        if torn:
            problems.append(Difference("entry", f"an incomplete line of {len(torn)} bytes ends "
                                       f"entries.jsonl, not covered by a checkpoint ({after_crash})",
                                       size))
        if cp_torn:
            problems.append(Difference("checkpoint", "an incomplete line ends checkpoints.jsonl "
                                       f"(a torn write; {after_crash})", self.report.checkpoints + 1))
        if problems and not self.allow_tail:
            raise _Found(problems[0])
        self.report.notes.extend(str(p) for p in problems)

    def _segments(self) -> None:
        for index, rid, file, sha256, size in self.segments:
            name = f"{rid}/{file}"
            parts = _safe_parts(rid, file)
            if parts is None:
                raise _Found(Difference("segment", "its name is not a plain relative path", index,
                                        file=name))
            digest, length = hashlib.sha256(), 0
            try:
                handle, where = self.source.open_segment(parts)
                if handle is None:
                    raise _Found(Difference("segment", f"missing: not found at {where}", index,
                                            file=name))
                with handle:
                    for chunk in iter(lambda: handle.read(_CHUNK), b""):
                        digest.update(chunk)
                        length += len(chunk)
            except (OSError, zipfile.BadZipFile, EOFError) as exc:
                raise _Found(Difference("segment", f"unreadable or damaged ({exc})", index,
                                        file=name)) from None
            if length != size:
                raise _Found(Difference("segment", f"its size is {length} bytes, entry {index} says "
                                        f"{size}", index, file=name))
            if digest.hexdigest() != sha256:
                raise _Found(Difference("segment", f"its SHA-256 is {digest.hexdigest()}, entry "
                                        f"{index} says {sha256}", index, file=name))
            self.report.segments += 1
        self.segments = []


def verify_path(path: str, public_key: str, *, recordings: Optional[str] = None,
                allow_uncovered_tail: bool = False, tsa_cert: Optional[bytes] = None) -> Report:
    """Verify a session's audit directory or an evidence bundle (``.zip``) against the
    node's public key text; ``tsa_cert``: PEM certificates pinning the time-stamping
    authority (`load_tsa_certificates`). Raises InvalidPublicKey, InvalidTsaCertificate,
    UnreadableInput or TimestampUnavailable (exit status 2); every difference is in the
    returned Report."""
    public_key_bytes(public_key)  # a bad key is a usage error, before any file is read
    tsa_certs = load_tsa_certificates(tsa_cert) if tsa_cert is not None else None
    path = os.fspath(path)
    source = (_ZipSource if path.lower().endswith(".zip") else _Source)(path, recordings)
    check = _Check(source, public_key, allow_uncovered_tail, tsa_certs)
    try:
        return check.run()
    except _Found as found:
        check.report.difference = found.difference
        return check.report
    finally:
        source.close()


# --- the command line -----------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verifier's arguments (shared with ``dockcast audit verify``)."""
    parser.add_argument("path", metavar="PATH",
                        help="a session's audit directory (<data-dir>/audit/<session_id>) or an "
                             "evidence bundle (.zip)")
    parser.add_argument("--public-key", required=True, metavar="KEY",
                        help="the node's audit public key: the base64 text that "
                             "`dockcast audit public-key` prints")
    parser.add_argument("--recordings", metavar="DIR",
                        help="where recordings are (<DIR>/<recording_id>/<file>); default: "
                             "PATH/../../recordings, the data directory's")
    parser.add_argument("--allow-uncovered-tail", action="store_true",
                        help="accept entries written after the last checkpoint (normal after a "
                             "crash) instead of exiting with status 1")
    parser.add_argument("--tsa-cert", metavar="PEM",
                        help="the time-stamping authority's root CA certificate (PEM, with any "
                             "intermediates): checkpoints' RFC 3161 tokens must be signed by it "
                             "(without it their times are reported, their signatures not checked)")


def _read_tsa_cert(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise InvalidTsaCertificate(f"cannot read it ({exc.strerror or exc})") from None


def run(args: argparse.Namespace, prog: str = "verify.py", out=None, err=None) -> int:
    """Verify as the parsed arguments say; print the outcome; return the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        tsa_cert = None
        if getattr(args, "tsa_cert", None):
            tsa_cert = _read_tsa_cert(args.tsa_cert)
        report = verify_path(args.path, args.public_key, recordings=args.recordings,
                             allow_uncovered_tail=args.allow_uncovered_tail, tsa_cert=tsa_cert)
    except (InvalidPublicKey, UnreadableInput, TimestampUnavailable) as exc:
        print(f"{prog}: {exc}", file=err)
        return 2
    except InvalidTsaCertificate as exc:
        print(f"{prog}: --tsa-cert {args.tsa_cert}: {exc}", file=err)
        return 2
    for note in report.notes:
        print(f"note: {note}", file=out if report.ok else err)
    if not report.ok:
        print(f"{prog}: {report.difference}", file=err)
        return 1
    print(report.summary(), file=out)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="verify.py", description="Verify a Dockcast audit log and its recording segments "
        "offline. Exit 0: everything verifies; 1: something differs; 2: usage or unreadable input, "
        "or a time-stamp token to check without the rfc3161-client package.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
