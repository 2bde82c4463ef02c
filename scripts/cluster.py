"""Run a cluster on this machine: one redis-server and three nodes in three regions.

    make cluster            # or: .venv/bin/python scripts/cluster.py [--base-port 8765]

Each node gets its own data directory under ``cluster-data/`` and port (base, base+10,
base+20; each trunk on the next port), all on 127.0.0.1, with the same development
key; Redis runs with the configuration the cluster needs (AOF with fsync on every
write, no eviction) on base-1. Ctrl-C stops them all. The URLs and a token command are
printed.

Between real regions the nodes are on different machines. Here ``--wan 75,5,1`` (``make
cluster WAN=75,5,1``) stands the benchmark's WAN emulator between them: a relay process
(``bench.wanrelay``) in front of each node's trunk port, on the port after it, which the
node advertises as its ``--trunk-address``; every trunk then crosses one emulated WAN
(75 ms each way, ±5 ms jitter, 1% loss: a 150 ms round trip), and the clients reach
their own node directly.
"""

from __future__ import annotations

import argparse
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
REGIONS = ("us-west", "asia", "eu")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Redis and three Dockcast nodes on this machine.")
    parser.add_argument("--base-port", type=int, default=8765, help="the first node's port")
    parser.add_argument("--data", type=pathlib.Path, default=ROOT / "cluster-data",
                        help="where the nodes and Redis keep their files")
    parser.add_argument("--nodes", type=int, default=3, choices=(1, 2, 3),
                        help="how many nodes (regions us-west, asia, eu in that order)")
    parser.add_argument("--api-key", default="devkey", help="the API key every node shares")
    parser.add_argument("--api-secret", help="its secret (default: one made and kept in --data)")
    parser.add_argument("--log-level", default="info", help="the nodes' log level")
    parser.add_argument("--wan", help="the WAN between the nodes: delay_ms,jitter_ms,loss_pct[,rate_kbps] "
                                      "one way (75,5,1: 150 ms RTT); default none (plain loopback)")
    parser.add_argument("--wan-seed", type=int, help="random seed of the relays' loss and jitter")
    parser.add_argument("--keep-going", action="store_true",
                        help="when a node exits (a failover drill: kill one), keep the others "
                             "running instead of stopping them all")
    args = parser.parse_args(argv)
    if args.wan:
        sys.path.insert(0, str(ROOT))
        from bench.wan import WanProfile

        try:
            WanProfile.parse(args.wan)
        except ValueError as exc:
            parser.error(str(exc))
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("redis-server is not installed: apt-get install redis-server", file=sys.stderr)
        return 2
    args.data.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_file = args.data / "dev-key"
    if args.api_secret is None and not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    secret = args.api_secret or key_file.read_text().strip()
    redis_port = args.base_port - 1
    procs = [subprocess.Popen(
        [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction",
         "--dir", str(args.data)], stdout=subprocess.DEVNULL)]
    time.sleep(0.5)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    for i, region in enumerate(REGIONS[:args.nodes]):
        port = args.base_port + 10 * i
        trunk = []
        if args.wan:
            seed = [] if args.wan_seed is None else ["--seed", str(args.wan_seed + i)]
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "bench.wanrelay", "--listen", f"127.0.0.1:{port + 2}",
                 "--target", f"127.0.0.1:{port + 1}", "--wan", args.wan, *seed,
                 "--stats", str(args.data / f"wan-{region}.json")], cwd=ROOT))
            trunk = ["--trunk-address", f"127.0.0.1:{port + 2}"]
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dockcast.cli", "serve", "--port", str(port),
             "--trunk-port", str(port + 1), *trunk, "--data-dir", str(args.data / region),
             "--region", region, "--node-id", f"node-{region}", "--redis", redis_url,
             "--ice-address", "127.0.0.1", "--api-key", args.api_key, f"--api-secret={secret}",
             "--log-level", args.log_level],
            cwd=ROOT))
        print(f"node-{region}: ws://127.0.0.1:{port}/ws"
              + (f" (trunks through the WAN emulator at 127.0.0.1:{port + 2})" if args.wan else ""),
              flush=True)
    print(f"tokens: {sys.executable} -m dockcast.cli token --api-key {args.api_key} "
          f"--api-secret={secret} --identity alice --room dock-7 --grants publish,subscribe,message",
          flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            gone = [p for p in procs if p.poll() is not None]
            if gone and not (args.keep_going and procs[0].poll() is None
                             and any(p.poll() is None for p in procs[1:])):
                break
            time.sleep(0.5)
        print("a process of the cluster exited: stopping the others", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    # the nodes first, Redis last: a node leaving deregisters from the directory, and
    # with Redis gone first it waited on it (a stop once took over a minute in CI)
    _stop(procs[1:])
    _stop(procs[:1])
    return 0


def _stop(procs: list[subprocess.Popen], grace: float = 20.0) -> None:
    """SIGTERM ``procs``, wait ``grace`` seconds for them all, SIGKILL what is left."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"pid {proc.pid} did not stop within {grace:.0f} s of SIGTERM: killed",
                  file=sys.stderr, flush=True)
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
