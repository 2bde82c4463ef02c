"""Errors of the media plane.

    SfuError                                (internal)
    ├── MalformedPacket (also ValueError)   hostile or truncated RTP/RTCP/payload bytes (bad_request)
    ├── NegotiationError                    an SDP offer/answer the SFU cannot use (bad_request)
    │   └── OfferTooLarge                   more m-lines than max_mlines_per_offer (bad_request)
    ├── NotFound                            unknown room, producer, consumer (not_found)
    ├── Closed                              the object was closed (not_found)
    └── AiortcInternalsChanged (also ImportError)
                                            an installed aiortc/aioice/pylibsrtp lacks a private
                                            attribute sfu relies on; raised at import (internal)

Each error names the wire error code (``PROTOCOL.md``) it maps to in ``code``.
"""

from __future__ import annotations

__all__ = ["SfuError", "MalformedPacket", "NegotiationError", "OfferTooLarge", "NotFound",
           "Closed", "AiortcInternalsChanged"]


class SfuError(Exception):
    code = "internal"


class MalformedPacket(SfuError, ValueError):
    code = "bad_request"


class NegotiationError(SfuError):
    code = "bad_request"


class OfferTooLarge(NegotiationError):
    """An offer with more m-lines than the node takes (refused before it is parsed)."""

    code = "bad_request"


class NotFound(SfuError):
    code = "not_found"


class Closed(SfuError):
    code = "not_found"


class AiortcInternalsChanged(SfuError, ImportError):
    code = "internal"
