"""Room messages that are never lost: the durable log per room, and its delivery.

What lives where (each module imports only the ones above it):

- :mod:`.retention`: `RetentionPolicy` and `retention_cut`, the one rule deciding what
  retention drops, as a pure function of a few facts about a room;
- :mod:`.log`: the `RoomLog` interface (every argument is checked there, once),
  `StoredMessage`, `AppendResult`, the errors, the payload encoding;
- :mod:`.memory`: `MemoryRoomLog`, in this process (tests, embedded use);
- :mod:`.sqlite`: `SqliteRoomLog`, one SQLite file over `signalling.durable.DurableDb`;
- :mod:`.redis`: `RedisRoomLog`, Redis Streams shared by the nodes of a cluster (loaded
  on first use, so that importing this package does not import the redis client);
- delivery (``delivery.py``: send, ack and delivery to members; ``follower.py``: slow
  consumers that follow a room from their own cursor) build on `RoomLog`.

Every backend subclasses `RoomLog`, implements its underscore methods, calls
`retention_cut`, and runs the same test suite.
"""

from typing import TYPE_CHECKING, Any

from .log import (
    MAX_NAME_CHARS,
    MAX_READ,
    AckBeyondEnd,
    AppendResult,
    DurableDbError,
    InvalidMessage,
    RoomLog,
    RoomLogError,
    StoreClosed,
    StoredMessage,
    StoreUnavailable,
)
from .memory import MemoryRoomLog
from .retention import RetentionPolicy, retention_cut
from .sqlite import SqliteRoomLog

if TYPE_CHECKING:
    from .redis import RedisRoomLog

__all__ = [
    "AckBeyondEnd",
    "AppendResult",
    "DurableDbError",
    "InvalidMessage",
    "MAX_NAME_CHARS",
    "MAX_READ",
    "MemoryRoomLog",
    "RedisRoomLog",
    "RetentionPolicy",
    "RoomLog",
    "RoomLogError",
    "SqliteRoomLog",
    "StoreClosed",
    "StoreUnavailable",
    "StoredMessage",
    "retention_cut",
]


def __getattr__(name: str) -> Any:
    if name == "RedisRoomLog":
        from .redis import RedisRoomLog

        return RedisRoomLog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
