"""A WAN emulator in front of one UDP server, as a process of its own.

    python -m bench.wanrelay --listen 127.0.0.1:9002 --target 127.0.0.1:9001 --wan 75,5,1

Runs a `bench.wan.UdpProxy`: every datagram to ``--listen`` reaches ``--target`` after
the profile's one-way delay, jitter and loss, and the answers come back the same way.
`scripts/cluster.py --wan` puts one in front of each node's trunk port and has the node
advertise it (``--trunk-address``), so every trunk between two regions crosses exactly one
emulated WAN. A process of its own keeps the emulated timing off the nodes' and the
test's event loops. ``--stats FILE`` rewrites FILE (JSON: datagrams offered, delivered
and dropped each way, and ``held_ms``: how long they were really held, p50/p95/p99)
every second and at exit; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from .wan import UdpProxy, WanProfile

__all__ = ["main", "parse_address"]


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as a tuple; ValueError names what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"not HOST:PORT: {text!r}")
    return host.strip("[]"), int(port)


def _address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _profile(text: str) -> WanProfile:
    try:
        return WanProfile.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def _serve(args: argparse.Namespace) -> None:
    host, port = args.listen
    proxy = await UdpProxy(args.target, args.wan, host=host, port=port, seed=args.seed).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"wanrelay: {host}:{proxy.port} -> {args.target[0]}:{args.target[1]} "
          f"({args.wan.describe()})", flush=True)
    try:
        while not stop.is_set():
            if args.stats:
                _write_stats(args.stats, proxy)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
    finally:
        if args.stats:
            _write_stats(args.stats, proxy)
        proxy.close()


def _write_stats(path: Path, proxy: UdpProxy) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"clients": proxy.clients, **proxy.stats(), "held_ms": proxy.held_ms()}))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wanrelay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT the clients send to")
    parser.add_argument("--target", type=_address, required=True, help="HOST:PORT of the server")
    parser.add_argument("--wan", type=_profile, required=True,
                        help="delay_ms,jitter_ms,loss_pct[,rate_kbps], one way, each direction")
    parser.add_argument("--seed", type=int, help="random seed of the loss and jitter")
    parser.add_argument("--stats", type=Path, help="JSON file of the relay's counts")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
