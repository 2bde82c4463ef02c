"""Nodes of one cluster for the e2e tests: real ``dockcast serve --redis`` processes
sharing a private ``redis-server`` (``tests/redis_server.py``).

``start_nodes(node_factory, redis_url, "ab")`` starts node-a (us-west) and node-b (asia),
each with a trunk port of its own; ``"abc"`` adds node-c (eu). `ClusterScript` runs
``scripts/cluster.py`` (``make cluster``) instead.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .conftest import NodeFactory, NodeProcess

__all__ = ["REGIONS", "ClusterScript", "free_udp_port", "start_nodes"]

ROOT = Path(__file__).resolve().parents[2]

REGIONS = {"a": "us-west", "b": "asia", "c": "eu"}
"""The region of each node name (node ``x`` is ``--node-id node-x``)."""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nodes(factory: NodeFactory, redis_url: str, names: str = "ab",
                env: dict[str, str] | None = None) -> dict[str, NodeProcess]:
    """One node per letter of ``names`` (``REGIONS``), all on ``redis_url``, data dirs
    ``data-<letter>``; ``env`` is added to each node's environment."""
    return {name: factory.start(f"data-{name}", env=env,
                                args=("--redis", redis_url, "--node-id", f"node-{name}",
                                      "--region", REGIONS[name], "--trunk-port", str(free_udp_port())))
            for name in names}


class ClusterScript:
    """``scripts/cluster.py`` (``make cluster``) on free ports: Redis and three nodes.

    ``with ClusterScript(data_dir, "--wan", "75,5,1") as cluster:`` starts it and waits
    (at most 90 s) until its three nodes answer ``/healthz``; ``cluster.healthy`` says
    which did, ``cluster.base`` is the first node's port. Leaving the block stops it with
    SIGTERM; then ``out`` holds everything it printed and ``returncode`` its exit code.
    """

    def __init__(self, data_dir: Path, *args: str) -> None:
        from bench.cascade import free_base_port

        self.base = free_base_port(3, wan="--wan" in args)
        self.args = ("--base-port", str(self.base), "--data", str(data_dir), *args)
        self.healthy: set[int] = set()
        self.out = ""
        self.returncode: int | None = None

    def __enter__(self) -> ClusterScript:
        self.proc = subprocess.Popen([sys.executable, "scripts/cluster.py", *self.args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 90
        while len(self.healthy) < 3 and time.monotonic() < deadline and self.proc.poll() is None:
            for i in range(3):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.base + 10 * i}/healthz", timeout=1):
                        self.healthy.add(i)
                except OSError:
                    pass
            time.sleep(0.3)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.out, _ = self.proc.communicate(timeout=60)
        self.returncode = self.proc.returncode

    def node_lines(self) -> list[str]:
        """What it printed about each node (``node-<region>: URL ...``), in order."""
        return [line for line in self.out.splitlines() if line.startswith("node-")]
