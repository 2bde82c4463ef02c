"""Nodes of one cluster for the e2e tests: real ``dockcast serve --redis`` processes
sharing a private ``redis-server`` (``tests/redis_server.py``).

``start_nodes(node_factory, redis_url, "ab")`` starts node-a (us-west) and node-b (asia),
each with a trunk port of its own; ``"abc"`` adds node-c (eu).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .conftest import NodeFactory, NodeProcess

__all__ = ["REGIONS", "free_udp_port", "start_nodes"]

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
