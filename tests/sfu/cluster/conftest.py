"""``backend`` runs a directory test once per backend: in memory on a manual clock, and
in the session's redis-server on real time (each test under a key prefix of its own)."""

from __future__ import annotations

import asyncio
import math

import pytest
from redis_server import unique_prefix

from sfu.clock import ManualClock
from sfu.cluster import Directory, MemoryDirectory, RedisDirectory


class Backend:
    """Directories that share one state, as the nodes of a cluster do, and time passing."""

    def __init__(self, kind: str, url: str | None) -> None:
        self.kind = kind
        self.url = url
        self.clock = ManualClock()
        self.prefix = unique_prefix("directory")
        self.opened: list[Directory] = []

    def directories(self, count: int = 1, *, ttl_s: float = 30.0) -> list[Directory]:
        """``count`` views of one directory: one per node (memory: the same object)."""
        if self.kind == "memory":
            shared = MemoryDirectory(ttl_s=ttl_s, clock=self.clock)
            self.opened.append(shared)
            return [shared] * count
        views = [RedisDirectory(self.url, key_prefix=self.prefix, ttl_s=ttl_s) for _ in range(count)]
        self.opened.extend(views)
        return views

    async def age(self, directory: Directory, seconds: float, keep_alive: tuple[str, ...] = ()) -> None:
        """Let ``seconds`` pass, the nodes ``keep_alive`` heartbeating four times per TTL."""
        steps = max(1, math.ceil(seconds / (directory.ttl_s / 4)))
        for _ in range(steps):
            if self.kind == "memory":
                self.clock.advance(seconds / steps)
            else:
                await asyncio.sleep(seconds / steps)
            for node_id in keep_alive:
                await directory.heartbeat(node_id, 0.0)


@pytest.fixture(params=["memory", "redis"])
async def backend(request):
    url = request.getfixturevalue("redis_server").url if request.param == "redis" else None
    backend = Backend(request.param, url)
    yield backend
    for directory in backend.opened:
        await directory.close()
