"""Dockcast's websocket API (``docs/protocol.md``), independent of the media plane.

A sans-IO core (:mod:`.codec`, :mod:`.schema`, :mod:`.tokens`, :mod:`.session`) and thin
asyncio adapters around it: :class:`SignallingServer` (websockets) and
:class:`DockcastClient`.
"""

from .client import DockcastClient, ServerError, SessionClosed
from .codec import JSON, MSGPACK, SUBPROTOCOLS, Codec, codec_for
from .errors import (
    CLOSE_ABUSE,
    CLOSE_SLOW_CONSUMER,
    CLOSE_UNAUTHORIZED,
    ERROR_CODES,
    BadRequest,
    Conflict,
    Forbidden,
    Internal,
    NotFound,
    RateLimited,
    SignallingError,
    TooLarge,
    Unauthorized,
    Unavailable,
    error_message,
)
from .schema import SPECS, MessageSpec, Request, validate
from .server import Connection, SignallingMetrics, SignallingServer
from .session import Limits, NodeInfo, SessionCore, State, require_room
from .tokens import Claims, Grants, TokenVerifier, mint_token

__all__ = [
    "BadRequest",
    "CLOSE_ABUSE",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_UNAUTHORIZED",
    "Claims",
    "Codec",
    "Conflict",
    "Connection",
    "DockcastClient",
    "ERROR_CODES",
    "Forbidden",
    "Grants",
    "Internal",
    "JSON",
    "Limits",
    "MSGPACK",
    "MessageSpec",
    "NodeInfo",
    "NotFound",
    "RateLimited",
    "Request",
    "SPECS",
    "SUBPROTOCOLS",
    "ServerError",
    "SessionClosed",
    "SessionCore",
    "SignallingError",
    "SignallingMetrics",
    "SignallingServer",
    "State",
    "TokenVerifier",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "codec_for",
    "error_message",
    "mint_token",
    "require_room",
    "validate",
]
