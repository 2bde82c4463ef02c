"""Errors of the media plane.

    SfuError
    ├── MalformedPacket (also ValueError)   hostile or truncated RTP/RTCP/payload bytes
    ├── NegotiationError                    an SDP offer/answer the SFU cannot use (bad_request)
    ├── NotFound                            unknown room, producer, consumer (not_found)
    └── Closed                              the object was closed (not_found)

Each error names the wire error code (``PROTOCOL.md``) it maps to in ``code``.
"""

from __future__ import annotations

__all__ = ["SfuError", "MalformedPacket", "NegotiationError", "NotFound", "Closed"]


class SfuError(Exception):
    code = "internal"


class MalformedPacket(SfuError, ValueError):
    code = "bad_request"


class NegotiationError(SfuError):
    code = "bad_request"


class NotFound(SfuError):
    code = "not_found"


class Closed(SfuError):
    code = "not_found"
