"""Signed checkpoints: (session, size, root, time) signed with the node's Ed25519 key.

The signed message is ``b"dockcast-audit-checkpoint/v1\\n"`` followed by
``f"{session_id}\\n{size}\\n{root_hex}\\n{ts!r}\\n"`` in UTF-8 (``root_hex``: lowercase
hex of the 32-byte root; ``ts``: a float, written with ``repr``). Everything a verifier
needs (`SignedCheckpoint`: `parse`, `to_json`, `signed_message`, `verify`) is in the
standalone `plugins.audit.verify`; `Checkpoint` adds what only the node does: `sign`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .keys import public_key_text
from .verify import InvalidCheckpoint, SignedCheckpoint, checkpoint_message

__all__ = ["Checkpoint", "InvalidCheckpoint", "checkpoint_message"]


@dataclass(frozen=True)
class Checkpoint(SignedCheckpoint):
    """A checkpoint (fields: ``session_id, size, root, ts, signature, key, tst=None``).

    ``Checkpoint.parse(obj)`` reads the file and wire form that ``to_json()`` writes
    (``root`` hex, ``signature`` and ``tst`` base64) and raises `InvalidCheckpoint`
    (a ValueError) naming a bad field; ``verify(public_key)`` says whether the
    signature holds.
    """

    @classmethod
    def sign(cls, session_id: str, size: int, root: bytes, ts: float,
             key: Ed25519PrivateKey) -> Checkpoint:
        """The checkpoint of the first ``size`` entries, whose Merkle root is ``root``,
        signed now (``ts``, unix seconds) with the node's key."""
        if not isinstance(session_id, str) or not session_id or "\n" in session_id:
            raise InvalidCheckpoint("checkpoint session_id must be a non-empty one-line string")
        if type(size) is not int or size < 0:
            raise InvalidCheckpoint("checkpoint size must be a non-negative integer")
        if not isinstance(root, bytes) or len(root) != 32:
            raise InvalidCheckpoint("checkpoint root must be 32 bytes")
        ts = float(ts)
        if not math.isfinite(ts):
            raise InvalidCheckpoint("checkpoint ts must be a finite number")
        signature = key.sign(checkpoint_message(session_id, size, root, ts))
        return cls(session_id, size, root, ts, signature, public_key_text(key))
