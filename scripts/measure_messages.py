"""Room message throughput and delivery delay on one node (a measurement, not a test).

Starts ``dockcast serve`` on a free port with a fresh data directory (SQLite in WAL,
``synchronous=FULL``: every ``sent`` is an fsync'd commit, shared by the writes that
queue meanwhile), puts ``--members`` clients in one room, and has ``--senders`` of them
send ``--count`` messages: as fast as the node answers (``--rate 0``, each sender
keeping ``--window`` requests in flight) or paced at ``--rate`` messages per second in
all. All clients run in this process (uvloop), so send and receipt times share a clock.

    .venv/bin/python scripts/measure_messages.py                      # saturation
    .venv/bin/python scripts/measure_messages.py --rate 500           # delay at 500/s

Reports messages per second (first send to last receipt at every member), the
``send`` -> ``sent`` latency, and the delivery delay (``send`` -> ``message`` at each
member) p50/p99/max. The node's per-connection rate limit is raised for the run.

``--limited``: the node keeps its per-connection rate limit (default 50 requests/s,
burst 100; ``--node-rate``/``--node-burst`` set others), and one client sends
``--count`` messages as fast as it may, ``--window`` requests in flight, following the
``rate_limited`` errors' ``retry_after_ms`` (``signalling.client``). Reports the
messages, the duration, the ``rate_limited`` answers seen, the closes and the messages
lost (not answered ``sent``, a ``seq`` twice, or not received exactly once by another
member); the exit status is 1 unless closes and lost are 0.

    .venv/bin/python scripts/measure_messages.py --limited              # 10,000: ~200 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import uvloop

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from signalling.client import DockcastClient  # noqa: E402
from signalling.tokens import mint_token  # noqa: E402

KEY, SECRET = "measure", "measure-secret-0123456789abcdef-0123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(data_dir: str, rate: str = "1000000", burst: str = "1000000", *,
               env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """``dockcast serve`` on a free port (``env`` added to its environment, ``args`` to
    its flags), once it answers ``/healthz``: the process and its websocket URL."""
    port = _free_port()
    env = dict(os.environ, DOCKCAST_REQUEST_RATE=rate, DOCKCAST_REQUEST_BURST=burst, **(env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockcast.cli", "serve", "--port", str(port), "--data-dir", data_dir,
         "--api-key", KEY, "--api-secret", SECRET, "--log-level", "warning", *args],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc, f"ws://127.0.0.1:{port}/ws"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the node did not start")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def measure(url: str, args: argparse.Namespace) -> None:
    delays: list[float] = []
    received = [0] * args.members
    done = asyncio.Event()
    clients = []
    for i in range(args.members):
        token = mint_token(KEY, SECRET, f"member-{i}", room="measure", grants=["message"])
        client = await DockcastClient.connect(url, token, subprotocol=args.subprotocol)

        def on_message(event, i=i):
            delays.append(time.monotonic() - event["payload"]["t"])
            received[i] += 1
            if all(n >= args.count for n in received):
                done.set()

        client.on("message", on_message)
        for kind in ("participant_joined", "participant_left"):
            client.on(kind, lambda event: None)
        await client.join("measure")
        clients.append(client)
    senders = clients[: args.senders]
    acks: list[float] = []

    # Paced sends stay under the node's cap on requests waiting per connection (256).
    in_flight = {id(c): asyncio.Semaphore(200) for c in senders}

    async def send(client: DockcastClient, n: int) -> None:
        async with in_flight[id(client)]:
            await _send(client, n)

    async def _send(client: DockcastClient, n: int) -> None:
        t = time.monotonic()
        await client.send("load", {"t": t, "n": n, "body": "x" * args.size}, f"m-{n}")
        acks.append(time.monotonic() - t)

    started = time.monotonic()
    if args.rate > 0:
        tasks = []
        for n in range(args.count):
            due = started + n / args.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.ensure_future(send(senders[n % len(senders)], n)))
        await asyncio.gather(*tasks)
    else:
        queue = iter(range(args.count))

        async def worker(client: DockcastClient) -> None:
            for n in queue:
                await _send(client, n)

        await asyncio.gather(*(worker(c) for c in senders for _ in range(args.window)))
    await asyncio.wait_for(done.wait(), timeout=120)
    elapsed = time.monotonic() - started
    for client in clients:
        await client.close()
    ms = [d * 1000 for d in delays]
    ack_ms = [a * 1000 for a in acks]
    mode = f"paced at {args.rate:g}/s" if args.rate > 0 else f"saturation, window {args.window}/sender"
    print(f"{args.count} messages, {args.members} members ({args.senders} sending), {mode}, "
          f"{args.subprotocol}, payload ~{args.size + 40} B")
    print(f"  throughput: {args.count / elapsed:,.0f} messages/s stored "
          f"({args.count * args.members / elapsed:,.0f} deliveries/s), {elapsed:.2f} s")
    print(f"  send -> sent:     p50 {pct(ack_ms, 50):.2f} ms  p99 {pct(ack_ms, 99):.2f} ms")
    print(f"  send -> message:  p50 {pct(ms, 50):.2f} ms  p99 {pct(ms, 99):.2f} ms  "
          f"max {max(ms):.2f} ms  (mean {statistics.fmean(ms):.2f})")


async def measure_limited(url: str, args: argparse.Namespace) -> bool:
    """One sender under the node's rate limit, following retry_after_ms; True if no
    message was lost and no connection closed."""
    sender_token = mint_token(KEY, SECRET, "sender", room="measure", grants=["message"])
    member_token = mint_token(KEY, SECRET, "member", room="measure", grants=["message"])
    member = await DockcastClient.connect(url, member_token, subprotocol=args.subprotocol)
    sender = await DockcastClient.connect(url, sender_token, subprotocol=args.subprotocol)
    received: dict[str, int] = {}
    done = asyncio.Event()

    def on_message(event: dict) -> None:
        received[event["msg_id"]] = received.get(event["msg_id"], 0) + 1
        if len(received) >= args.count:
            done.set()

    member.on("message", on_message)
    for client in (member, sender):
        for kind in ("participant_joined", "participant_left"):
            client.on(kind, lambda event: None)
    sender.on("message", lambda event: None)
    await member.join("measure")
    await sender.join("measure")
    seqs: dict[str, int] = {}
    failures: list[str] = []
    queue = iter(range(args.count))

    async def worker() -> None:
        for n in queue:
            msg_id = f"m-{n}"
            try:
                reply = await sender.send("load", {"n": n, "body": "x" * args.size}, msg_id)
            except Exception as exc:  # reported as lost
                failures.append(f"{msg_id}: {exc}")
                if sender.closed:
                    return
                continue
            seqs[msg_id] = reply["seq"]

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(args.window)))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=60)
    elapsed = time.monotonic() - started
    closes = sum(client.closed for client in (member, sender))
    expected = {f"m-{n}" for n in range(args.count)}
    lost = (len(expected - set(seqs)) + (len(seqs) - len(set(seqs.values())))
            + sum(1 for m in expected if received.get(m) != 1))
    for client in (member, sender):
        await client.close()
    print(f"{args.count} messages from one client under the node's rate limit "
          f"({args.node_rate}/s, burst {args.node_burst}), window {args.window}, {args.subprotocol}")
    print(f"  duration: {elapsed:.1f} s ({args.count / elapsed:.1f} messages/s)")
    print(f"  rate_limited answers seen: {sender.rate_limited_seen}")
    print(f"  closes: {closes}")
    print(f"  lost: {lost} (sent answered: {len(seqs)}, distinct seqs: {len(set(seqs.values()))}, "
          f"received once by the other member: {sum(1 for m in expected if received.get(m) == 1)})")
    for failure in failures[:5]:
        print(f"  failed: {failure}")
    return closes == 0 and lost == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--senders", type=int, default=3)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s in all; 0: as fast as answered")
    parser.add_argument("--window", type=int, default=32, help="requests in flight per sender at saturation")
    parser.add_argument("--size", type=int, default=100, help="payload body characters")
    parser.add_argument("--subprotocol", default="msgpack", choices=("msgpack", "json"))
    parser.add_argument("--limited", action="store_true",
                        help="keep the node's rate limit; one sender follows retry_after_ms")
    parser.add_argument("--node-rate", default="50", help="with --limited: the node's request_rate")
    parser.add_argument("--node-burst", default="100", help="with --limited: the node's request_burst")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="dockcast-measure-") as data_dir:
        if args.limited:
            proc, url = start_node(data_dir, args.node_rate, args.node_burst)
        else:
            proc, url = start_node(data_dir)
        try:
            if args.limited:
                ok = uvloop.run(measure_limited(url, args))
            else:
                uvloop.run(measure(url, args))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
