"""Dockcast's websocket API (``docs/protocol.md``), independent of the media plane.

A sans-IO core (:mod:`.codec`, :mod:`.schema`, :mod:`.tokens`, :mod:`.session`) and thin
asyncio adapters around it: :class:`SignallingServer` (websockets, with plain HTTP from
:mod:`.http`) and :class:`DockcastClient`. Beside them, what a node is made of and what
plugins build on: who is where (:class:`Membership`), typed room and shipment events
(:mod:`.events`) and their one registry (:mod:`.bus`, :class:`EventBus`), the plugin registry
(:mod:`.hooks`), the administration requests (:mod:`.admin`) and room messages
(:mod:`.messages`: the durable log, delivery, followers). Errors form one tree, drawn
in :mod:`.errors`.
"""

from .client import DockcastClient, ServerError, SessionClosed
from .codec import JSON, MSGPACK, SUBPROTOCOLS, Codec, codec_for
from .errors import (
    FixedCodeError,
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
from .bus import EventBus
from .events import Event
from .hooks import HookRegistry, Plugin, PluginContext, PluginError
from .membership import LocalMembership, Membership, RoomRecord
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
    "Event",
    "EventBus",
    "FixedCodeError",
    "Forbidden",
    "Grants",
    "HookRegistry",
    "Internal",
    "JSON",
    "Limits",
    "LocalMembership",
    "MSGPACK",
    "Membership",
    "MessageSpec",
    "NodeInfo",
    "NotFound",
    "Plugin",
    "PluginContext",
    "PluginError",
    "RateLimited",
    "Request",
    "RoomRecord",
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
