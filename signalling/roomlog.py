"""Temporary: the room log moved to `signalling.messages`; deleted once nothing imports this."""

from signalling.messages import (
    MAX_NAME_CHARS,
    MAX_READ,
    AckBeyondEnd,
    AppendResult,
    DurableDbError,
    InvalidMessage,
    MemoryRoomLog,
    RetentionPolicy,
    RoomLog,
    RoomLogError,
    SqliteRoomLog,
    StoreClosed,
    StoredMessage,
    StoreUnavailable,
)

__all__ = [
    "RoomLog",
    "SqliteRoomLog",
    "MemoryRoomLog",
    "StoredMessage",
    "AppendResult",
    "RetentionPolicy",
    "RoomLogError",
    "InvalidMessage",
    "AckBeyondEnd",
    "DurableDbError",
    "StoreClosed",
    "StoreUnavailable",
    "MAX_NAME_CHARS",
    "MAX_READ",
]
