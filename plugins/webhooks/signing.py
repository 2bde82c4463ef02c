"""Webhook signatures: ``Dockcast-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>``.

The node signs every attempt afresh (`sign`); receivers check the raw body with
`verify_signature` (constant-time, several ``v1`` for secret rotation, a tolerance
against replays).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from signalling.errors import FixedCodeError

__all__ = ["sign", "verify_signature", "InvalidSignature", "SIGNATURE_HEADER", "EVENT_ID_HEADER",
           "EVENT_TYPE_HEADER"]

SIGNATURE_HEADER = "Dockcast-Signature"
EVENT_ID_HEADER = "Dockcast-Event-Id"
EVENT_TYPE_HEADER = "Dockcast-Event-Type"


class InvalidSignature(FixedCodeError, ValueError):
    """`verify_signature` refused a request; the message says why."""

    code = "unauthorized"


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``Dockcast-Signature`` header value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: bytes | str,
    tolerance_s: float = 300,
    now: float | None = None,
) -> int:
    """Check a ``Dockcast-Signature`` header against the raw request body.

    Return the signed timestamp; raise `InvalidSignature` when the header is missing or
    malformed, no ``v1`` matches (tampered body, wrong secret) or the timestamp is more
    than ``tolerance_s`` away from ``now`` (a replay). Several ``v1`` values are allowed
    (any may match), for secret rotation. Comparison is constant-time.
    """
    if not header or not isinstance(header, str):
        raise InvalidSignature(f"missing {SIGNATURE_HEADER} header")
    timestamp = None
    candidates = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header")
        if key == "t":
            if not (value.isascii() and value.isdigit()):
                raise InvalidSignature(f"malformed timestamp in {SIGNATURE_HEADER}")
            timestamp = int(value)
        elif key == "v1":
            if not value.isascii():
                raise InvalidSignature(f"malformed v1 in {SIGNATURE_HEADER}")
            candidates.append(value)
    if timestamp is None or not candidates:
        raise InvalidSignature(f"{SIGNATURE_HEADER} needs t= and v1=")
    raw = body.encode() if isinstance(body, str) else bytes(body)
    expected = _digest(secret, timestamp, raw)
    # Check every candidate, so the time taken does not say which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise InvalidSignature("signature does not match the body")
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise InvalidSignature(f"timestamp is more than {tolerance_s:g}s away from now")
    return timestamp
