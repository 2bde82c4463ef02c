"""The ``dockcast`` command: ``serve``, ``token`` (and the tools added by other modules).

Every ``serve`` flag is also read from ``DOCKCAST_<FLAG>`` in the environment and from a
TOML ``--config`` file; flags win over the environment, which wins over the file.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from typing import Any

from .config import ConfigError, NodeConfig, describe, dev_credentials, load_config, secrets_of
from .lock import DataDirLock, DataDirLockError

__all__ = ["main"]

logger = logging.getLogger("dockcast")


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run a node",
                       description="Run a Dockcast node. Every flag is also DOCKCAST_<FLAG>.")
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default 8765)")
    p.add_argument("--data-dir", help="stores, recordings and keys (default ./data)")
    p.add_argument("--api-key", help="API key (token iss); a dev key is made if unset")
    p.add_argument("--api-secret", help="the API key's HS256 secret (at least 32 bytes)")
    p.add_argument("--api-keys", help="more API keys at once, for rotation: key1:secret1,key2:secret2")
    p.add_argument("--ice-address", help="address(es) for ICE candidates, comma-separated "
                                          "(default: --host when it is an IP)")
    p.add_argument("--ice-servers", help="STUN/TURN URLs, comma-separated (default: none)")
    p.add_argument("--region", help="region name reported to clients (default local)")
    p.add_argument("--node-id", help="node name (default: generated)")
    p.add_argument("--redis", help="Redis URL for a cluster (default: single node, no Redis)")
    p.add_argument("--public-url", help="the ws(s):// URL clients use for this node, given to "
                                         "other nodes' clients in welcome.redirect (default: from host and port)")
    p.add_argument("--trunk-port", type=int, help="UDP port for node-to-node media and control "
                                                   "(QUIC; default: the websocket port + 1)")
    p.add_argument("--region-map", help="in a cluster, regions of clients by source address when their "
                                        "hello names none: CIDR=region,CIDR=region (default: none)")
    p.add_argument("--trunk-address", help="HOST:PORT other nodes send trunk datagrams to, when that is "
                                           "not this node's host and trunk port (a NAT or relay in "
                                           "between; default: host:trunk-port)")
    p.add_argument("--workers", type=int, help="worker processes sharing --port, rooms placed on them "
                                                "(0: one per core; default 1); more than one needs "
                                                "redis-server installed or --redis")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve wss:// (default: ws://)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--config", help="TOML file with any of these settings")
    p.add_argument("--log-level", help="debug, info, warning, error (default info)")
    p.add_argument("--log-format", help="text or json (default text)")


def _token_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="print a signed access token",
                       description="Print an HS256 access token (PROTOCOL.md, Access tokens).")
    p.add_argument("--api-key", required=True, help="the API key: the token's iss")
    p.add_argument("--api-secret", required=True, help="that key's secret, as the node knows it")
    p.add_argument("--identity", required=True, help="who holds the token: its sub")
    p.add_argument("--room", help="the room the token admits (none: every room, for admin tokens)")
    p.add_argument("--name", help="a display name for the participant")
    p.add_argument("--shipment", help="the shipment the holder acts for (scopes shipment requests)")
    p.add_argument("--grants", default="", help="comma-separated: publish,subscribe,message,record,admin")
    p.add_argument("--ttl", type=float, default=3600.0, help="seconds (default 3600)")


def _run_token(args: argparse.Namespace) -> int:
    from signalling.tokens import mint_token

    grants = [g.strip() for g in args.grants.split(",") if g.strip()]
    try:
        print(mint_token(args.api_key, args.api_secret, args.identity, room=args.room,
                         grants=grants, ttl=args.ttl, name=args.name, shipment=args.shipment))
    except ValueError as exc:
        print(f"dockcast token: {exc}", file=sys.stderr)
        return 2
    return 0


async def serve(config: NodeConfig, ready: asyncio.Event | None = None, worker: Any = None) -> None:
    """Run a node (``worker``: a `dockcast.workers.WorkerRole`) until SIGTERM or SIGINT,
    then stop it gracefully."""
    from .node import Node

    node = Node(config, worker=worker)
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    logger.info("stopping (signal received)")
    await node.stop()


def dockcast_command() -> str:
    """How to run this same ``dockcast`` from a shell (it may not be on PATH)."""
    if os.path.basename(sys.argv[0]) == "dockcast":
        return sys.argv[0]
    return f"{sys.executable} -m dockcast.cli"


DEV_ROOM = "dock-7"
"""The room the development URLs open (the README's)."""


def base_url(config: NodeConfig) -> str:
    """``http://HOST:PORT`` (``https`` with TLS) of a node as a browser on this machine
    reaches it (a wildcard listen address: 127.0.0.1)."""
    return config.local_url()


def dev_urls(config: NodeConfig, ttl: float = 12 * 3600.0) -> dict[str, str]:
    """The test page's URLs for two browser tabs in `DEV_ROOM` of a node on development
    credentials: one publishing its camera, one watching (tokens valid ``ttl`` s)."""
    from urllib.parse import urlencode

    from signalling.tokens import mint_token

    base = base_url(config)
    ws = base.replace("http", "ws", 1) + "/ws"
    urls = {}
    for mode, identity, grants in (("publish", "warehouse-cam-1", ("publish", "message")),
                                   ("subscribe", "seller-1", ("subscribe", "message"))):
        token = mint_token(config.api_key, config.api_secret, identity, room=DEV_ROOM,
                           grants=grants, ttl=ttl)
        urls[mode] = f"{base}/web/test.html?" + urlencode(
            {"url": ws, "room": DEV_ROOM, "mode": mode, "token": token})
    return urls


def _print_dev_credentials(config: NodeConfig, created: bool) -> None:
    """The development pair, printed once: at the first start, and only on a terminal
    (stdout may be a log file); afterwards, where it is kept. On a terminal, every start
    also prints two browser URLs (publish, watch) with tokens for them."""
    path = config.data_path / "dev-credentials.json"
    command = dockcast_command()
    if created and sys.stdout.isatty():
        print(f"development credentials (kept in {path}, mode 0600; shown this once):\n"
              f"  api key:    {config.api_key}\n  api secret: {config.api_secret}\n"
              f"  mint a token: {command} token --api-key {config.api_key} "
              f"--api-secret={config.api_secret} --identity alice --room {DEV_ROOM} "
              "--grants publish,subscribe,message", flush=True)
    else:
        why = "stdout is not a terminal" if created else "shown at the first start only"
        print(f"development credentials: api key {config.api_key}; its secret is in {path} "
              f"(mode 0600), not printed ({why})", flush=True)
    if sys.stdout.isatty():
        urls = dev_urls(config)
        print(f"open in two browser tabs (room {DEV_ROOM}, tokens valid 12 h):\n"
              f"  publish your camera: {urls['publish']}\n  watch it:            {urls['subscribe']}\n"
              f"or the inspection console, with demo tokens for a call in two tabs: {base_url(config)}/dev",
              flush=True)


def _run_serve(args: argparse.Namespace) -> int:
    from .logs import configure_logging, register_secrets

    flags = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        config = load_config(flags)
    except ConfigError as exc:
        print(f"dockcast serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    from .workers import Supervisor, WorkerRole, worker_count

    try:
        role = WorkerRole.from_env()
    except ConfigError as exc:
        print(f"dockcast serve: {exc}", file=sys.stderr)
        return 2
    if role is not None:  # a worker: its supervisor holds the data directory
        register_secrets(secrets_of(config))
        return _run_node(config, role)
    # one data directory, one node (or one supervisor): held until the process ends
    lock = DataDirLock(config.data_path)
    try:
        lock.acquire()
    except DataDirLockError as exc:
        print(f"dockcast serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"dockcast serve: cannot use the data directory {config.data_dir}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    using_dev = config.api_key is None and not config.api_keys
    config, created = dev_credentials(config)
    register_secrets(secrets_of(config))  # no log line will show them, whatever logs it
    if using_dev:
        _print_dev_credentials(config, created)
    from .node import BUILTIN_PLUGINS

    described = describe(config)
    # the plugins that will load: the built-in ones, then those configured
    described["plugins"] = [*BUILTIN_PLUGINS, *(p for p in config.plugins if p not in BUILTIN_PLUGINS)]
    logger.info("configuration", extra=described)
    try:
        if worker_count(config) > 1:
            return Supervisor(config, flags).run()
        return _run_node(config, None)
    except ConfigError as exc:  # the supervisor's Redis
        print(f"dockcast serve: {exc}", file=sys.stderr)
        return 2
    finally:
        lock.release()


def _run_node(config: NodeConfig, role: Any) -> int:
    import uvloop

    from signalling.hooks import PluginError

    try:
        uvloop.run(serve(config, worker=role))
    except (PluginError, ConfigError) as exc:  # a plugin, a certificate: configuration errors
        print(f"dockcast serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the port is taken, the address is not ours, the disk refuses
        print(f"dockcast serve: cannot serve on {config.host}:{config.port} with data in "
              f"{config.data_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


#: The offline tools: ``dockcast NAME ...`` is ``dockcast.<module>``'s ``add_parser(sub)``
#: and ``run(args)``. They need none of the node's dependencies (no media stack loads).
OFFLINE_TOOLS = {"audit": "audit_cli", "export": "export_cli"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the harness has its own parser: `dockcast bench --help`
        try:
            from bench.cli import main as bench_main
        except ImportError as exc:  # `make serve` installs the server only
            print(f"dockcast bench needs the benchmark tools ({exc.name} is missing): run "
                  "`make bench`, or `make dev-venv` first", file=sys.stderr)
            return 2
        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="dockcast", description="Dockcast media server")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _token_parser(sub)
    sub.add_parser("bench", help="run a benchmark scenario (see `dockcast bench --help`)")
    tools = {name: importlib.import_module(f".{module}", __package__)
             for name, module in OFFLINE_TOOLS.items()}
    for tool in tools.values():
        tool.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _run_serve(args)
    if args.command == "token":
        return _run_token(args)
    if args.command in tools:
        return tools[args.command].run(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
