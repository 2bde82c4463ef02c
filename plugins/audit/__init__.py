"""The audit log of an inspection session, and its offline verifier (docs/audit.md).

An append-only log of what happened in a session (joins, publications, messages'
hashes, shipment events, verdicts, each closed recording segment's SHA-256), as an
RFC 6962 Merkle tree whose roots are signed with the node's Ed25519 key at checkpoints.
Anyone holding the public key can check the log and the recording files offline with
``dockcast audit verify`` or the standalone ``verify.py`` that an evidence bundle ships.

The parts, bottom up:

- ``verify``: the standalone verifier (standard library and ``cryptography`` only, one
  file); the hash functions, canonical JSON, key text and checkpoint message live here
  so that there is one definition of each.
- ``merkle``: `MerkleTree` with inclusion and consistency proofs, and their checks.
- ``keys``: the node's signing key file (mode 0600) and the public key text.
- ``checkpoint``: `Checkpoint`, signed (size, root, time) of a session's log.
- ``timestamp``: `TimestampAuthority`, RFC 3161 time-stamps on checkpoints (``tst``)
  from a time-stamping authority over HTTP (``rfc3161-client``, imported when used).
- ``log``: `AuditLog`, one session directory on disk (sans-IO time, blocking files).

This package imports nothing of ours but itself, and nothing beyond ``cryptography``
(``rfc3161_client`` only when a time-stamp is made or checked), so the offline commands
load no media or network stack. Errors (``code``: the wire
error code, as ``signalling.errors`` maps any exception with one)::

    verify.AuditError                               internal
    ├── verify.UnreadableInput                      internal      the verifier cannot read PATH (exit 2)
    ├── verify.InvalidPublicKey (also ValueError)   bad_request   key text not base64 of 32 bytes
    ├── verify.InvalidCheckpoint (also ValueError)  bad_request   a checkpoint field is missing or malformed
    ├── verify.InvalidEntryLine (also ValueError)   bad_request   an entry line the log would not write
    ├── verify.InvalidTimestamp (also ValueError)   bad_request   a time-stamp token that does not hold
    ├── verify.InvalidTsaCertificate (also ValueError) bad_request --tsa-cert / ca_certs not PEM with a root
    ├── verify.TimestampUnavailable                 internal      rfc3161-client is not installed (exit 2)
    ├── timestamp.TimestampError                    unavailable   the authority gave no usable token
    ├── keys.KeyFileError                           internal      key file too open, unreadable, not Ed25519
    └── log.AuditLogError                           internal      closed, released, write failed, files contradict
        └── log.InvalidEntry (also ValueError)      bad_request   fields the log refuses
"""

from .checkpoint import Checkpoint
from .keys import KeyFileError, load_or_create_signing_key, parse_public_key, public_key_text
from .log import AuditLog, AuditLogError, Entry, InvalidEntry, Recovery
from .merkle import MerkleTree, leaf_hash, node_hash, root_of, verify_consistency, verify_inclusion
from .timestamp import TimestampAuthority, TimestampError
from .verify import (
    AuditError,
    Difference,
    InvalidCheckpoint,
    InvalidEntryLine,
    InvalidPublicKey,
    InvalidTimestamp,
    InvalidTsaCertificate,
    Report,
    TimestampInfo,
    TimestampUnavailable,
    UnreadableInput,
    check_timestamp,
    load_tsa_certificates,
    verify_path,
)

__all__ = [
    "AuditLog",
    "Entry",
    "Recovery",
    "Checkpoint",
    "MerkleTree",
    "leaf_hash",
    "node_hash",
    "root_of",
    "verify_inclusion",
    "verify_consistency",
    "load_or_create_signing_key",
    "public_key_text",
    "parse_public_key",
    "TimestampAuthority",
    "check_timestamp",
    "load_tsa_certificates",
    "TimestampInfo",
    "verify_path",
    "Report",
    "Difference",
    "AuditError",
    "AuditLogError",
    "InvalidEntry",
    "InvalidEntryLine",
    "InvalidCheckpoint",
    "InvalidPublicKey",
    "KeyFileError",
    "UnreadableInput",
    "TimestampError",
    "TimestampUnavailable",
    "InvalidTimestamp",
    "InvalidTsaCertificate",
]
