"""Errors of the trunk between nodes.

    SfuError (sfu.errors)
    └── RelayError                             (internal)
        ├── MalformedFrame (also MalformedPacket, ValueError)
        │                                      bytes from the far node that are no datagram
        │                                      or control frame of ours (bad_request)
        │   └── FrameTooLarge                  a control frame over MAX_CONTROL_FRAME (too_large)
        ├── TrunkRefused                       a certificate not pinned (either way), or a hello
        │                                      the other node refused (forbidden)
        ├── TrunkClosed                        the trunk closed or was lost (unavailable)
        ├── TrunkTimeout                       the far node did not answer in time (unavailable)
        ├── SubscribeRefused                   the far node answered ``error`` to a subscribe;
        │                                      ``code`` is the one it sent (not_found, ...)
        └── QuicInternalsChanged (also ImportError)
                                               the installed aioquic lacks a private name the
                                               relay relies on; raised at import (internal)

Each error names the wire error code (``PROTOCOL.md``) it maps to in ``code``.
"""

from __future__ import annotations

from ..errors import MalformedPacket, SfuError

__all__ = ["RelayError", "MalformedFrame", "FrameTooLarge", "TrunkRefused", "TrunkClosed",
           "TrunkTimeout", "SubscribeRefused", "QuicInternalsChanged"]


class RelayError(SfuError):
    code = "internal"


class MalformedFrame(RelayError, MalformedPacket):
    code = "bad_request"


class FrameTooLarge(MalformedFrame):
    code = "too_large"


class TrunkRefused(RelayError):
    code = "forbidden"


class TrunkClosed(RelayError):
    code = "unavailable"


class TrunkTimeout(RelayError):
    code = "unavailable"


class SubscribeRefused(RelayError):
    """The far node's ``error {flow, code, message}``: ``code`` is its wire code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class QuicInternalsChanged(RelayError, ImportError):
    """The installed aioquic lacks a private name the relay relies on (`sfu.relay._quic`)."""
