"""Many nodes, one cluster: the shared directory of nodes, rooms and producers.

- :mod:`.directory`: the `Directory` interface, `NodeInfo`, `ProducerInfo`, the
  `NodeUp`/`NodeDown` events of `Directory.watch`, and the errors;
- :mod:`.memory`: `MemoryDirectory`, one node in this process (the default);
- :mod:`.redis`: `RedisDirectory`, in the Redis the nodes of a cluster share (loaded on
  first use, so that importing this package does not import the redis client).

Both backends pass the same test suite. ``docs/cluster.md`` says what is kept where,
what is guaranteed, and how Redis must be configured.

    SfuError (sfu.errors)
    └── DirectoryError                            (internal)
        ├── InvalidEntry (also ValueError)        a name, NodeInfo or producer info refused,
        │                                         or an unreadable entry (bad_request)
        ├── UnknownNode                           the node is not registered, or no longer:
        │                                         it must register again (not_found)
        └── DirectoryUnavailable                  Redis unreachable, too slow or refusing
            └── DirectoryClosed                   the directory was closed (unavailable)

Each error carries its wire error code (``PROTOCOL.md``) in ``code``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .directory import (
    MAX_NAME_CHARS,
    Directory,
    DirectoryClosed,
    DirectoryError,
    DirectoryUnavailable,
    InvalidEntry,
    NodeDown,
    NodeEvent,
    NodeInfo,
    NodeUp,
    ProducerInfo,
    UnknownNode,
)
from .memory import MemoryDirectory

if TYPE_CHECKING:
    from .redis import RedisDirectory

__all__ = [
    "Directory", "MemoryDirectory", "RedisDirectory",
    "NodeInfo", "ProducerInfo", "NodeEvent", "NodeUp", "NodeDown",
    "DirectoryError", "InvalidEntry", "UnknownNode", "DirectoryUnavailable", "DirectoryClosed",
    "MAX_NAME_CHARS",
]


def __getattr__(name: str) -> Any:
    if name == "RedisDirectory":
        from .redis import RedisDirectory

        return RedisDirectory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
