"""The cluster directory: which nodes are alive, where each room lives, where each track
comes from. `Directory` is the interface; `sfu.cluster.memory.MemoryDirectory` keeps it in
this process (one node), `sfu.cluster.redis.RedisDirectory` in Redis (a cluster).

A node registers (`NodeInfo`) and heartbeats; a node that misses heartbeats for
``ttl_s`` is dead: it is no longer listed, and everything it had (its rooms, its claim on
a room, its producers) is forgotten: at once for every reader, and for good when some
node calls `Directory.reap` (`watch` does, at each poll). A dead node's writes are
refused with `UnknownNode`: it must register again, as a new *incarnation*, and announce
what it still serves.

Every argument is checked here, once; a backend only stores and looks up (as
`signalling.messages.RoomLog` does), so both refuse the same input alike.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import math
import reprlib
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import SfuError

__all__ = [
    "Directory", "NodeInfo", "ProducerInfo", "NodeEvent", "NodeUp", "NodeDown",
    "DirectoryError", "InvalidEntry", "UnknownNode", "DirectoryUnavailable", "DirectoryClosed",
    "MAX_NAME_CHARS",
]

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 256
"""Longest node id, room and track id the directory accepts."""
_MAX_TEXT_CHARS = 2048  # region, URL, trunk address, fingerprint


class DirectoryError(SfuError):
    code = "internal"


class InvalidEntry(DirectoryError, ValueError):
    """A name, `NodeInfo` or producer info the directory refuses, or an unreadable entry."""

    code = "bad_request"


class UnknownNode(DirectoryError):
    """The node is not registered, or no longer (it missed its heartbeats): register again."""

    code = "not_found"


class DirectoryUnavailable(DirectoryError):
    """The shared store is unreachable, too slow, or refused the change."""

    code = "unavailable"


class DirectoryClosed(DirectoryUnavailable):
    """The directory was closed."""


def _check_name(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise InvalidEntry(f"{what} must be a string of 1 to {MAX_NAME_CHARS} characters, "
                           f"not {reprlib.repr(value)}")
    return value


def _check_text(what: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > _MAX_TEXT_CHARS:
        raise InvalidEntry(f"{what} must be a string of at most {_MAX_TEXT_CHARS} characters")
    return value


def _check_load(value: Any) -> float:
    try:
        load = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else -1.0
    except OverflowError:  # an int too large for a float
        load = -1.0
    if not 0 <= load < math.inf:
        raise InvalidEntry(f"load must be a finite number >= 0, not {reprlib.repr(value)}")
    return load


def _json_object(what: str, data: bytes | str) -> dict:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidEntry(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidEntry(f"{what} is not a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node as the directory lists it.

    ``trunk_address`` is ``host:port`` of its trunk (node-to-node media and control);
    ``cert_fingerprint`` pins the certificate its trunk presents; ``load`` is what its
    last heartbeat said (0 = idle). ``incarnation`` is set by `Directory.register`
    (the caller's is ignored): a node registered again gets a higher one.
    """

    node_id: str
    region: str
    public_url: str
    trunk_address: str
    cert_fingerprint: str
    load: float = 0.0
    incarnation: int = 0

    def __post_init__(self) -> None:
        _check_name("node_id", self.node_id)
        for name in ("region", "public_url", "trunk_address", "cert_fingerprint"):
            _check_text(name, getattr(self, name))
        object.__setattr__(self, "load", _check_load(self.load))
        if isinstance(self.incarnation, bool) or not isinstance(self.incarnation, int) \
                or self.incarnation < 0:
            raise InvalidEntry(f"incarnation must be an integer >= 0, not {self.incarnation!r}")

    def serialize(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def parse(cls, data: bytes | str) -> NodeInfo:
        """The `NodeInfo` that `serialize` wrote; `InvalidEntry` for anything else (fields
        it does not know are ignored, so a newer node's entry still reads)."""
        value = _json_object("node info", data)
        names = [f.name for f in fields(cls)]
        missing = [name for name in names[:5] if name not in value]
        if missing:
            raise InvalidEntry(f"node info lacks {', '.join(missing)}")
        return cls(**{name: value[name] for name in names if name in value})


@dataclass(frozen=True, slots=True)
class ProducerInfo:
    """A track published in ``room`` on node ``node_id`` (its origin), with the ``info``
    its node gave (kind, codec...: JSON-able, the directory does not read it)."""

    room: str
    track_id: str
    node_id: str
    info: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeUp:
    """``node`` is alive: it registered, or `Directory.watch` saw it first."""

    node: NodeInfo


@dataclass(frozen=True, slots=True)
class NodeDown:
    """``node`` (as last seen) is gone: it expired, left, or registered again (then a
    `NodeUp` of its new incarnation follows)."""

    node: NodeInfo


NodeEvent = NodeUp | NodeDown


class Directory(abc.ABC):
    """The interface both backends implement; all methods are coroutines.

    ``ttl_s``: a node that has not heartbeated for this long is dead. ``poll_s``: how
    often `watch` looks (at most a quarter of ``ttl_s`` and 0.5 s, so a dead node is
    reported within ``ttl_s`` + ``poll_s``).
    """

    def __init__(self, ttl_s: float) -> None:
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not 0 < ttl_s < math.inf:
            raise InvalidEntry(f"ttl_s must be a finite number > 0, not {ttl_s!r}")
        self.ttl_s = float(ttl_s)
        self.poll_s = min(0.5, self.ttl_s / 4)

    # -- nodes ------------------------------------------------------------------------

    async def register(self, info: NodeInfo) -> NodeInfo:
        """List the node (alive for ``ttl_s``) as a new incarnation; return it as listed.

        A node registering again (a restart, or after it expired) starts afresh: what
        its earlier incarnation had in the directory is forgotten.
        """
        if not isinstance(info, NodeInfo):
            raise InvalidEntry(f"register takes a NodeInfo, not {type(info).__name__}")
        return await self._register(info)

    async def heartbeat(self, node_id: str, load: float) -> None:
        """The node is alive for another ``ttl_s``, with this ``load``. `UnknownNode` if
        it is not registered (any more): it must `register` again."""
        await self._heartbeat(_check_name("node_id", node_id), _check_load(load))

    async def deregister(self, node_id: str) -> None:
        """The node leaves now: it and everything it had are forgotten (as at expiry)."""
        await self._deregister(_check_name("node_id", node_id))

    async def nodes(self) -> list[NodeInfo]:
        """Every live node, by ``node_id``."""
        return await self._nodes()

    async def node(self, node_id: str) -> NodeInfo | None:
        """The live node ``node_id``, or ``None``."""
        return await self._node(_check_name("node_id", node_id))

    async def reap(self) -> list[str]:
        """Forget every node past its ``ttl_s`` and all it had; return their ids (each
        dead node is reaped once, by whichever node gets there first)."""
        return await self._reap()

    async def watch(self, poll_s: float | None = None) -> AsyncIterator[NodeEvent]:
        """Nodes coming and going: first a `NodeUp` for each live node, then the changes,
        every ``poll_s`` (default: `poll_s`), reaping the dead as it goes.

        While the store is unavailable, it waits (logging it once) and reports what
        changed meanwhile when the store is back; it ends when the directory is closed.
        """
        poll = self.poll_s if poll_s is None else poll_s
        known: dict[str, NodeInfo] = {}
        unavailable = False
        while True:
            try:
                await self.reap()
                current = {node.node_id: node for node in await self.nodes()}
            except DirectoryClosed:
                return
            except DirectoryUnavailable as exc:
                if not unavailable:
                    log.warning("cluster directory unavailable, watching again when it is back: %s", exc)
                unavailable = True
                await asyncio.sleep(poll)
                continue
            unavailable = False
            for node_id, node in known.items():
                now = current.get(node_id)
                if now is None or now.incarnation != node.incarnation:
                    yield NodeDown(node)
            for node_id, node in current.items():
                before = known.get(node_id)
                if before is None or before.incarnation != node.incarnation:
                    yield NodeUp(node)
            known = current
            await asyncio.sleep(poll)

    # -- rooms ------------------------------------------------------------------------

    async def room_nodes(self, room: str) -> list[str]:
        """The live nodes that have members of ``room``, by id."""
        return await self._room_nodes(_check_name("room", room))

    async def join_room(self, room: str, node_id: str) -> None:
        """``node_id`` has members of ``room`` (idempotent). `UnknownNode` if it is dead."""
        await self._join_room(_check_name("room", room), _check_name("node_id", node_id))

    async def leave_room(self, room: str, node_id: str) -> None:
        """``node_id`` has no member of ``room`` left (idempotent). When no node has, the
        room's claim (`claim_room`) goes too."""
        await self._leave_room(_check_name("room", room), _check_name("node_id", node_id))

    async def claim_room(self, room: str, node_id: str) -> str:
        """The room's home node: the live node that claimed it first, or else, atomically,
        ``node_id``. `UnknownNode` if ``node_id`` is dead."""
        return await self._claim_room(_check_name("room", room), _check_name("node_id", node_id))

    async def room_home(self, room: str) -> str | None:
        """The room's home node if it has a live one (no claim made)."""
        return await self._room_home(_check_name("room", room))

    # -- producers --------------------------------------------------------------------

    async def publish(self, room: str, track_id: str, node_id: str, info: dict | None = None) -> None:
        """Track ``track_id`` of ``room`` comes from ``node_id`` (again, when its publisher
        moved there: the track's origin is the latest node to publish it). `UnknownNode`
        if ``node_id`` is dead."""
        info = {} if info is None else info
        if not isinstance(info, dict):
            raise InvalidEntry(f"producer info must be a dict, not {type(info).__name__}")
        try:
            packed = json.dumps(info, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidEntry(f"producer info is not JSON-able: {exc}") from None
        await self._publish(_check_name("room", room), _check_name("track_id", track_id),
                            _check_name("node_id", node_id), packed)

    async def unpublish(self, room: str, track_id: str, node_id: str) -> None:
        """The track's publisher left ``node_id``. Ignored unless ``node_id`` is still the
        track's origin in ``room`` (it may have moved to another node meanwhile)."""
        await self._unpublish(_check_name("room", room), _check_name("track_id", track_id),
                              _check_name("node_id", node_id))

    async def producers(self, room: str) -> list[ProducerInfo]:
        """The tracks of ``room`` whose origin is alive, by ``track_id``."""
        return await self._producers(_check_name("room", room))

    async def origin(self, track_id: str) -> str | None:
        """The live node the track comes from, or ``None``."""
        return await self._origin(_check_name("track_id", track_id))

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the store (the registrations stay until they expire). Idempotent."""

    # -- what a backend implements: arguments are already checked ----------------------

    @abc.abstractmethod
    async def _register(self, info: NodeInfo) -> NodeInfo: ...

    @abc.abstractmethod
    async def _heartbeat(self, node_id: str, load: float) -> None: ...

    @abc.abstractmethod
    async def _deregister(self, node_id: str) -> None: ...

    @abc.abstractmethod
    async def _nodes(self) -> list[NodeInfo]: ...

    @abc.abstractmethod
    async def _node(self, node_id: str) -> NodeInfo | None: ...

    @abc.abstractmethod
    async def _reap(self) -> list[str]: ...

    @abc.abstractmethod
    async def _room_nodes(self, room: str) -> list[str]: ...

    @abc.abstractmethod
    async def _join_room(self, room: str, node_id: str) -> None: ...

    @abc.abstractmethod
    async def _leave_room(self, room: str, node_id: str) -> None: ...

    @abc.abstractmethod
    async def _claim_room(self, room: str, node_id: str) -> str: ...

    @abc.abstractmethod
    async def _room_home(self, room: str) -> str | None: ...

    @abc.abstractmethod
    async def _publish(self, room: str, track_id: str, node_id: str, info_json: str) -> None: ...

    @abc.abstractmethod
    async def _unpublish(self, room: str, track_id: str, node_id: str) -> None: ...

    @abc.abstractmethod
    async def _producers(self, room: str) -> list[ProducerInfo]: ...

    @abc.abstractmethod
    async def _origin(self, track_id: str) -> str | None: ...
