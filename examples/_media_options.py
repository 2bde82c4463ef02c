"""What examples/publish.py and examples/watch.py share: the node, the token, the room,
and how to reach the node (loopback, ICE servers)."""

from __future__ import annotations

import argparse
import os

from sfu.ice import rtc_configuration, use_host_addresses


def add_common(parser: argparse.ArgumentParser, grant: str, name: str) -> None:
    parser.add_argument("--url", default=os.environ.get("DOCKCAST_URL", "ws://127.0.0.1:8765/ws"),
                        help="the node's websocket URL (DOCKCAST_URL)")
    parser.add_argument("--token", required=True, help=f"an access token with the {grant} grant")
    parser.add_argument("--room", default="dock-7", help="the room (the token must admit it)")
    parser.add_argument("--name", default=name, help="display name")
    parser.add_argument("--loopback", action="store_true",
                        help="the node is on 127.0.0.1: offer the loopback address as a candidate")
    parser.add_argument("--ice-server", action="append", help="a STUN/TURN URL (none by default)")


def rtc_configuration_for(args: argparse.Namespace):
    """The peer connection's configuration; ``--loopback`` first makes aioice offer
    127.0.0.1 (docs/python-client.md, "On loopback")."""
    if args.loopback:
        use_host_addresses(["127.0.0.1"])
    return rtc_configuration(args.ice_server or ())
