"""`MemoryDirectory`: the cluster directory of a single node, in this process."""

from __future__ import annotations

import dataclasses
import json

from ..clock import SYSTEM_CLOCK, Clock
from .directory import Directory, DirectoryClosed, NodeInfo, ProducerInfo, UnknownNode

__all__ = ["MemoryDirectory"]


class MemoryDirectory(Directory):
    """The directory in memory: the default of a node that is not in a cluster, and the
    model `RedisDirectory` is tested against. Time is ``clock.monotonic()`` (a
    `sfu.clock.ManualClock` in tests); the dead are forgotten at the next call.
    """

    def __init__(self, *, ttl_s: float = 5.0, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(ttl_s)
        self._clock = clock
        self._registry: dict[str, tuple[NodeInfo, float]] = {}  # node_id -> (info, deadline)
        self._rooms: dict[str, set[str]] = {}  # room -> the nodes with members of it
        self._homes: dict[str, str] = {}  # room -> the node that claimed it
        self._tracks: dict[str, ProducerInfo] = {}  # track_id -> where it comes from
        self._incarnations = 0
        self._closed = False

    def _expire(self) -> list[str]:
        """Forget the nodes past their deadline; their ids."""
        if self._closed:
            raise DirectoryClosed("cluster directory is closed")
        now = self._clock.monotonic()
        dead = sorted(node_id for node_id, (_, deadline) in self._registry.items() if deadline <= now)
        for node_id in dead:
            self._forget(node_id)
        return dead

    def _forget(self, node_id: str) -> None:
        self._registry.pop(node_id, None)
        for room in [room for room, nodes in self._rooms.items() if node_id in nodes]:
            self._discard(room, node_id)
        for room in [room for room, home in self._homes.items() if home == node_id]:
            del self._homes[room]
        for track_id in [t for t, producer in self._tracks.items() if producer.node_id == node_id]:
            del self._tracks[track_id]

    def _discard(self, room: str, node_id: str) -> None:
        """``node_id`` leaves ``room``; the last node to leave takes the claim with it."""
        nodes = self._rooms.get(room)
        if nodes is None or node_id not in nodes:
            return
        nodes.discard(node_id)
        if not nodes:
            del self._rooms[room]
            self._homes.pop(room, None)

    def _alive(self, node_id: str) -> None:
        self._expire()
        if node_id not in self._registry:
            raise UnknownNode(f"node {node_id!r} is not registered (or missed its heartbeats)")

    async def _register(self, info):
        self._expire()
        self._forget(info.node_id)
        self._incarnations += 1
        listed = dataclasses.replace(info, incarnation=self._incarnations)
        self._registry[info.node_id] = (listed, self._clock.monotonic() + self.ttl_s)
        return listed

    async def _heartbeat(self, node_id, load):
        self._alive(node_id)
        info, _ = self._registry[node_id]
        self._registry[node_id] = (dataclasses.replace(info, load=load), self._clock.monotonic() + self.ttl_s)

    async def _deregister(self, node_id):
        self._expire()
        self._forget(node_id)

    async def _nodes(self):
        self._expire()
        return [info for _, (info, _) in sorted(self._registry.items())]

    async def _node(self, node_id):
        self._expire()
        found = self._registry.get(node_id)
        return None if found is None else found[0]

    async def _reap(self):
        return self._expire()

    async def _room_nodes(self, room):
        self._expire()
        return sorted(self._rooms.get(room, ()))

    async def _join_room(self, room, node_id):
        self._alive(node_id)
        self._rooms.setdefault(room, set()).add(node_id)

    async def _leave_room(self, room, node_id):
        self._expire()
        self._discard(room, node_id)

    async def _claim_room(self, room, node_id):
        self._alive(node_id)
        return self._homes.setdefault(room, node_id)

    async def _room_home(self, room):
        self._expire()
        return self._homes.get(room)

    async def _publish(self, room, track_id, node_id, info_json):
        self._alive(node_id)
        self._tracks[track_id] = ProducerInfo(room, track_id, node_id, json.loads(info_json))

    async def _unpublish(self, room, track_id, node_id):
        self._expire()
        producer = self._tracks.get(track_id)
        if producer is not None and (producer.room, producer.node_id) == (room, node_id):
            del self._tracks[track_id]

    async def _producers(self, room):
        self._expire()
        return sorted((p for p in self._tracks.values() if p.room == room), key=lambda p: p.track_id)

    async def _origin(self, track_id):
        self._expire()
        producer = self._tracks.get(track_id)
        return None if producer is None else producer.node_id

    async def close(self):
        self._closed = True
