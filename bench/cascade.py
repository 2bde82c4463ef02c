"""Two Dockcast nodes that cascade, as one system under test (issue 12).

`CascadeSystem` runs ``scripts/cluster.py --nodes 2``: a redis-server and two nodes
(regions us-west and asia) on 127.0.0.1 with the run's API key. Publishers connect to
the first node and subscribers to the second, so every packet crosses the trunk between
them (QUIC on loopback) once and is fanned out on the far side. The CPU measured is
the whole tree (both nodes and Redis: the script's children), so "per forwarded
packet" is what a cascaded delivery costs; the latency is publisher to subscriber
through both nodes. Set beside plain Dockcast in the same run, the difference is what
one trunk hop adds.

``--trunk-wan 75,5,1`` puts the WAN emulator between the two nodes (``scripts/cluster.py
--wan``: a ``bench.wanrelay`` in front of each trunk port); the clients stay on loopback
beside their node. The latency a trunk hop adds beyond the emulated WAN is then the
cascade's latency less plain Dockcast's less the emulated one-way delay. The relays are
the network: their CPU is not counted (``bench.cpu.NOT_THE_SERVER``). (``--wan`` puts a
WAN between the clients and the nodes instead, for every system.)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .harness import NODE_ENV, REPO, Run, System, port_free, free_port
from .wan import WanProfile

__all__ = ["CascadeSystem", "free_base_port"]


class CascadeSystem(System):
    name = "cascade"
    label = "Dockcast, 2 nodes cascaded"
    join_subscribes = True

    def __init__(self, trunk_wan: str | None = None, *, nodes: int = 2,
                 extra_args: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.trunk_wan = trunk_wan
        self.nodes = nodes
        self.extra_args = extra_args  # more scripts/cluster.py flags (--keep-going)
        self.base: int | None = None
        self.data: Path | None = None

    def node_url(self, index: int) -> str:
        """The websocket URL of node ``index`` (0: the publishers', 1: the subscribers')."""
        return f"ws://127.0.0.1:{self.base + 10 * index}/ws"

    def node_pid(self, index: int) -> int | None:
        """The pid of node ``index`` (a child of the launcher), or None if it is gone."""
        from .cpu import process_tree

        port = f"--port\0{self.base + 10 * index}\0".encode()
        for pid in process_tree(self.pid) if self.pid else []:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"dockcast.cli\0serve" in cmdline and port in cmdline:
                return pid
        return None

    @property
    def how(self) -> str:
        how = (f"{self.nodes} dockcast nodes and redis-server on 127.0.0.1 (scripts/cluster.py "
               f"--nodes {self.nodes}); publishers on the first, subscribers on the second, "
               "a QUIC trunk between them")
        if self.trunk_wan:
            how += f", across the WAN emulator ({WanProfile.parse(self.trunk_wan).describe()})"
        return how

    def network(self) -> dict | None:
        """The WAN between the nodes as each relay measured it: datagrams each way and
        how long they were held (``held_ms``). Media crosses the publishers' node's relay
        downstream (the subscribers' node dials it)."""
        if not self.trunk_wan or self.data is None:
            return None
        out = {}
        for path in sorted(self.data.glob("wan-*.json")):
            try:
                out[path.stem.removeprefix("wan-")] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
        media = (out.get("us-west") or {}).get("held_ms", {}).get("down") or {}
        return {"profile": self.trunk_wan, "relays": out, "media_held_ms": media or None}

    async def start(self, run: Run) -> None:
        self.data = run.out / f"{self.name}-data"
        base = self.base = free_base_port(self.nodes, wan=bool(self.trunk_wan))
        self.url = self.node_url(0)
        self.sub_url = self.node_url(1)
        wan = ["--wan", self.trunk_wan, "--wan-seed", "1"] if self.trunk_wan else []
        await self._launch(
            [sys.executable, str(REPO / "scripts" / "cluster.py"), "--nodes", str(self.nodes), *wan,
             *self.extra_args, "--base-port", str(base), "--data", str(self.data),
             "--api-key", self.api_key, "--api-secret", self.api_secret, "--log-level", "warning"],
            run.logs / f"{self.name}.log", "127.0.0.1", base + 10 * (self.nodes - 1),
            env=dict(os.environ, PYTHONUNBUFFERED="1", **NODE_ENV))


def free_base_port(nodes: int = 2, wan: bool = False) -> int:
    """A base port for ``scripts/cluster.py``: Redis on base-1, node i on base+10i, its
    trunk on the next port and (``wan``) its WAN relay on the one after, all free."""
    offsets = [-1] + [10 * i + k for i in range(nodes) for k in range(3 if wan else 2)]
    while True:
        base = free_port()
        if all(port_free("127.0.0.1", base + k) for k in offsets):
            return base
