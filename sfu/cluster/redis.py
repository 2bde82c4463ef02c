"""`RedisDirectory`: the cluster directory in the Redis every node of a cluster shares.

Keys (``P`` is ``key_prefix`` + ``dir:``; a name is the end of its key)::

    P nodes                sorted set: node id scored by its deadline (Redis time, ms)
    P node:<id>            hash: info (NodeInfo as JSON), load, incarnation
    P incarnations         counter: the last incarnation given
    P node-rooms:<id>      set: rooms where the node has members
    P node-homes:<id>      set: rooms the node claimed
    P node-tracks:<id>     set: tracks the node is the origin of
    P room-nodes:<room>    set: nodes with members of the room
    P room-home:<room>     string: the node that claimed the room
    P room-tracks:<room>   set: the room's tracks
    P track:<track>        hash: room, node (its origin), info (JSON)

Each call is one Lua script (``_redis_scripts.py``), atomic in Redis. Redis down,
frozen or refusing is `DirectoryUnavailable` within ``timeout_s``; nothing retries
behind the caller's back. Needs Redis 7 and one Redis (not Redis Cluster).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from . import _redis_scripts as lua
from .directory import (
    Directory,
    DirectoryClosed,
    DirectoryUnavailable,
    InvalidEntry,
    NodeInfo,
    ProducerInfo,
    UnknownNode,
)

__all__ = ["RedisDirectory"]

log = logging.getLogger(__name__)


def _s(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def _b(name: str) -> bytes:
    return name.encode("utf-8", "surrogatepass")


class RedisDirectory(Directory):
    """The directory in Redis, shared by the nodes of a cluster.

    ``url_or_client``: a ``redis://`` URL, or a ``redis.asyncio.Redis`` made with
    ``decode_responses=False`` (`close` then leaves it open). Nodes of one cluster use
    the same ``key_prefix`` and should use the same ``ttl_s``; ``timeout_s`` (the
    longest a call waits for Redis) should stay well under ``ttl_s``.
    """

    def __init__(self, url_or_client: str | aioredis.Redis, *, key_prefix: str = "dockcast:",
                 ttl_s: float = 5.0, timeout_s: float = 2.0) -> None:
        super().__init__(ttl_s)
        if isinstance(url_or_client, str):
            self._client = aioredis.Redis.from_url(
                url_or_client, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0), decode_responses=False,
            )
            self._owns_client = True
        else:
            if url_or_client.get_connection_kwargs().get("decode_responses"):
                raise ValueError("the Redis client must be made with decode_responses=False")
            self._client, self._owns_client = url_or_client, False
        self._prefix = _b(key_prefix) + b"dir:"
        self._ttl_ms = max(1, round(self.ttl_s * 1000))
        self._closed = False
        self._scripts = {name: self._client.register_script(getattr(lua, name)) for name in lua.__all__}

    @contextlib.asynccontextmanager
    async def _failures(self) -> AsyncIterator[None]:
        if self._closed:
            raise DirectoryClosed("cluster directory is closed")
        try:
            yield
        except (RedisError, OSError) as exc:
            kwargs = self._client.get_connection_kwargs()
            where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
            raise DirectoryUnavailable(f"redis at {where} failed: {exc}") from exc

    async def _run(self, script: str, *args: bytes | str | float):
        async with self._failures():
            return await self._scripts[script]([], [self._prefix, *args], client=self._client)

    @staticmethod
    def _refused(node_id: str) -> UnknownNode:
        return UnknownNode(f"node {node_id!r} is not registered (or missed its heartbeats)")

    async def _register(self, info):
        static = dataclasses.replace(info, load=0.0, incarnation=0).serialize()
        incarnation = await self._run("REGISTER", _b(info.node_id), static, repr(info.load), self._ttl_ms)
        return dataclasses.replace(info, incarnation=incarnation)

    async def _heartbeat(self, node_id, load):
        if not await self._run("HEARTBEAT", _b(node_id), repr(load), self._ttl_ms):
            raise self._refused(node_id)

    async def _deregister(self, node_id):
        await self._run("DEREGISTER", _b(node_id))

    async def _listed(self, *node_id: bytes) -> list[NodeInfo]:
        flat = await self._run("NODES", *node_id)
        found = []
        for info, load, incarnation in zip(flat[::3], flat[1::3], flat[2::3]):
            try:
                node = NodeInfo.parse(info)
                found.append(dataclasses.replace(node, load=float(load), incarnation=int(incarnation)))
            except (InvalidEntry, ValueError) as exc:  # another version's entry, or damage
                log.warning("cluster directory: skipping an unreadable node entry: %s", exc)
        return sorted(found, key=lambda node: node.node_id)

    async def _nodes(self):
        return await self._listed()

    async def _node(self, node_id):
        found = await self._listed(_b(node_id))
        return found[0] if found else None

    async def _reap(self):
        return sorted(_s(node_id) for node_id in await self._run("REAP"))

    async def _room_nodes(self, room):
        return sorted(_s(node_id) for node_id in await self._run("ROOM_NODES", _b(room)))

    async def _join_room(self, room, node_id):
        if not await self._run("JOIN", _b(room), _b(node_id)):
            raise self._refused(node_id)

    async def _leave_room(self, room, node_id):
        await self._run("LEAVE", _b(room), _b(node_id))

    async def _claim_room(self, room, node_id):
        reply = await self._run("CLAIM", _b(room), _b(node_id))
        if not reply[0]:
            raise self._refused(node_id)
        return _s(reply[1])

    async def _room_home(self, room):
        home = await self._run("HOME", _b(room))
        return None if home is None else _s(home)

    async def _publish(self, room, track_id, node_id, info_json):
        if not await self._run("PUBLISH", _b(room), _b(track_id), _b(node_id), info_json):
            raise self._refused(node_id)

    async def _unpublish(self, room, track_id, node_id):
        await self._run("UNPUBLISH", _b(room), _b(track_id), _b(node_id))

    async def _producers(self, room):
        flat = await self._run("PRODUCERS", _b(room))
        found = [ProducerInfo(room, _s(track), _s(node), json.loads(info))
                 for track, node, info in zip(flat[::3], flat[1::3], flat[2::3])]
        return sorted(found, key=lambda producer: producer.track_id)

    async def _origin(self, track_id):
        node = await self._run("ORIGIN", _b(track_id))
        return None if node is None else _s(node)

    async def close(self):
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.aclose()
