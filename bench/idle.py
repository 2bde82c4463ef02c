"""What an idle subscriber costs a node: ``python -m bench.idle --subscribers 50 --seconds 20``.

One publisher offers VP8 and Opus and never sends a packet; N aiortc subscribers join
its room with ``join {subscribe: true}`` and complete ICE and DTLS, then sit idle. The
node's CPU (utime + stime of its process tree from ``/proc``, and the exact time on a
CPU from ``schedstat``) and its wakeups (the voluntary context switches of all its
threads: each return from ``epoll_wait`` to run a timer or a datagram follows one) are
read over a window with the publisher alone, then over one with the N subscribers; the
difference, per subscriber and per second, is the fixed cost of one subscriber peer
connection: consent checks (ours and the peer's), aiortc's per-sender and
per-transport tasks, the participant's RTCP and bandwidth timers.

Why a silent publisher rather than peers with no subscription: without a track there
is no subscriber peer connection at all, and a real idle subscriber has m-lines (two
here) whose senders and consumers exist while nothing flows. Nothing being forwarded,
what is measured is what a connection costs by itself.

The clients run in this process (idle, they cost the node nothing but their consent
checks and RTCP); the node is a ``dockcast serve`` started on a free loopback port
(``--url`` with ``--pid`` measures one already running). ``--profile FILE.svg`` also
records the node with py-spy over the loaded window (py-spy sees no frame inside
uvloop's C loop: wakeups show up there, as ``run``). Entry point: :func:`main`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import sys
import tempfile
import time
import types
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from .cpu import process_cpu, process_tree
from .soak import parse_metrics

__all__ = ["Sample", "Window", "build_parser", "main", "measure", "parse_args", "parse_schedstat",
           "parse_switches", "per_subscriber", "run", "sample"]


# -- reading the node ----------------------------------------------------------------------


def parse_switches(status: str) -> int:
    """The voluntary context switches of one ``/proc/.../status`` text: each is a thread
    going to sleep (the event loop in ``epoll_wait``) and so, once it runs again, one
    wakeup. Involuntary ones are other processes preempting it: the machine's noise."""
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key == "voluntary_ctxt_switches":
            return int(value.split()[0])
    raise ValueError("no voluntary_ctxt_switches line in the status text")


def parse_schedstat(text: str) -> float:
    """Seconds on a CPU from one ``/proc/.../schedstat`` text (its first field, in ns):
    exact, where utime and stime are sampled at the scheduler's tick and so miss or
    overcharge short wakeups."""
    return int(text.split()[0]) / 1e9


def _threads(pid: int) -> tuple[int, float]:
    """Voluntary context switches and seconds on a CPU of every thread of ``pid`` so
    far (threads gone meanwhile are not counted: the node's threads are long-lived)."""
    switches, run = 0, 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            task = pathlib.Path(f"/proc/{pid}/task/{tid}")
            switches += parse_switches((task / "status").read_text())
            run += parse_schedstat((task / "schedstat").read_text())
    return switches, run


@dataclass(frozen=True)
class Sample:
    """The node's counters at one moment: CPU seconds and context switches of its
    process tree, and the monotonic time they were read."""

    at: float
    cpu_s: float  # utime + stime
    switches: int
    system_s: float = 0.0  # stime
    run_s: float = 0.0  # on a CPU, from schedstat (ns)


def sample(pid: int) -> Sample:
    """Read :class:`Sample` for ``pid`` and its children now."""
    cpu, system, switches, run = 0.0, 0.0, 0, 0.0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            times = process_cpu(p)
            cpu, system = cpu + times.total, system + times.system
            more_switches, more_run = _threads(p)
            switches, run = switches + more_switches, run + more_run
    return Sample(time.monotonic(), cpu, switches, system, run)


@dataclass(frozen=True)
class Window:
    """What the node did between two samples, per second."""

    seconds: float
    cpu_ms_per_s: float
    wakeups_per_s: float
    tasks: int | None = None  # asyncio tasks at the end (from /metrics)
    system_ms_per_s: float = 0.0  # the kernel's part of cpu_ms_per_s
    run_ms_per_s: float = 0.0  # on a CPU, from schedstat: the exact figure

    @classmethod
    def between(cls, start: Sample, end: Sample, tasks: int | None = None) -> Window:
        seconds = end.at - start.at
        if seconds <= 0:
            raise ValueError("a window must end after it starts")
        return cls(seconds, 1000 * (end.cpu_s - start.cpu_s) / seconds,
                   (end.switches - start.switches) / seconds, tasks,
                   1000 * (end.system_s - start.system_s) / seconds,
                   1000 * (end.run_s - start.run_s) / seconds)


def per_subscriber(baseline: Window, loaded: Window, subscribers: int) -> dict[str, float | None]:
    """The cost of one idle subscriber: the loaded window less the baseline, over N."""
    if subscribers < 1:
        raise ValueError("per_subscriber needs at least one subscriber")
    tasks = None
    if loaded.tasks is not None and baseline.tasks is not None:
        tasks = (loaded.tasks - baseline.tasks) / subscribers
    return {"cpu_ms_per_s": (loaded.cpu_ms_per_s - baseline.cpu_ms_per_s) / subscribers,
            "system_ms_per_s": (loaded.system_ms_per_s - baseline.system_ms_per_s) / subscribers,
            "run_ms_per_s": (loaded.run_ms_per_s - baseline.run_ms_per_s) / subscribers,
            "wakeups_per_s": (loaded.wakeups_per_s - baseline.wakeups_per_s) / subscribers,
            "tasks": tasks}


def _metrics_url(ws_url: str) -> str:
    scheme = "https" if ws_url.startswith("wss") else "http"
    return f"{scheme}://{ws_url.split('//', 1)[1].split('/', 1)[0]}/metrics"


async def _tasks(ws_url: str) -> int | None:
    def get() -> str:
        with urllib.request.urlopen(_metrics_url(ws_url), timeout=5) as reply:
            return reply.read().decode()

    try:
        return parse_metrics(await asyncio.to_thread(get)).get("tasks")
    except OSError:
        return None


async def measure(pid: int, ws_url: str, seconds: float) -> Window:
    start = sample(pid)
    await asyncio.sleep(seconds)
    end = sample(pid)  # before the scrape, which costs the node CPU
    return Window.between(start, end, await _tasks(ws_url))


# -- the clients ---------------------------------------------------------------------------


class _Peer:
    """A signalling connection and one peer connection (``role`` "pub" or "sub")."""

    def __init__(self, url: str, key: str, secret: str, role: str, name: str) -> None:
        from sfu.ice import rtc_configuration
        from sfu.transport import WebRtcTransport

        from .loadclient import DockcastSignal

        self.signal = DockcastSignal(url, key, secret)
        self.name = name
        self.transport = WebRtcTransport(role, configuration=rtc_configuration(), name=name)

    async def publish_silently(self, room: str) -> list[dict]:
        """Publish VP8 and Opus m-lines whose tracks never yield: nothing is ever sent."""
        from sfu.transport import IdleTrack

        await self.signal.connect(self.name, room)
        await self.signal.join(room)
        mids = {kind: self.transport.pc.addTransceiver(IdleTrack(kind), direction="sendonly")
                for kind in ("video", "audio")}
        offer = await self.transport.create_offer()
        tracks = [{"mid": t.mid, "kind": kind, "source": "camera" if kind == "video" else "microphone"}
                  for kind, t in mids.items()]
        answer, published = await self.signal.publish(offer, tracks)
        await self.transport.accept_answer(answer)
        await self.transport.connected.wait()
        return published

    async def subscribe(self, room: str, tracks: list[dict]) -> None:
        await self.signal.connect(self.name, room)
        await self.signal.join_subscribing(room, tracks, self.transport.accept_offer)
        await self.transport.connected.wait()

    async def close(self) -> None:
        await self.transport.close()
        await self.signal.close()


# -- the run -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, default=20, help="idle subscribers (default 20)")
    p.add_argument("--seconds", type=float, default=10.0, help="each window's length (default 10)")
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds between the last subscriber connecting and the window (default 3)")
    p.add_argument("--url", help="a running node's websocket URL (with --pid, --api-key, --api-secret)")
    p.add_argument("--pid", type=int, help="the running node's pid, whose CPU is read")
    p.add_argument("--api-key", default="bench")
    p.add_argument("--api-secret")
    p.add_argument("--profile", type=pathlib.Path, help="py-spy profile of the node over the loaded window: a flame graph "
                   "(.svg) or collapsed stacks (any other suffix)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.subscribers < 1 or args.seconds <= 0 or args.settle < 0:
        parser.error("--subscribers must be at least 1, --seconds positive, --settle not negative")
    if (args.url is None) != (args.pid is None) or (args.url is not None and not args.api_secret):
        parser.error("--url, --pid and --api-secret go together")
    return args


async def _profile(pid: int, seconds: float, out: pathlib.Path) -> asyncio.subprocess.Process:
    spy = pathlib.Path(sys.executable).with_name("py-spy")
    return await asyncio.create_subprocess_exec(
        str(spy), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
        "--rate", "200", "--nonblocking", "-o", str(out),
        "--format", "flamegraph" if out.suffix == ".svg" else "raw",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start (or attach to) the node, measure both windows, close everything."""
    from sfu.ice import use_host_addresses

    from .harness import DockcastSystem

    use_host_addresses(["127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="dockcast-idle-") as tmp:
        system = DockcastSystem(url=args.url, api_key=args.api_key, api_secret=args.api_secret,
                                pid=args.pid)
        await system.start(types.SimpleNamespace(out=pathlib.Path(tmp), logs=pathlib.Path(tmp)))
        peers: list[_Peer] = []
        try:
            return await _measure(system, args, peers)
        finally:
            for peer in reversed(peers):  # subscribers first: no offers while closing
                with contextlib.suppress(Exception):
                    await peer.close()
            await system.stop()


async def _measure(system: Any, args: argparse.Namespace, peers: list[_Peer]) -> dict[str, Any]:
    def peer(role: str, name: str) -> _Peer:
        peers.append(_Peer(system.url, system.api_key, system.api_secret, role, name))
        return peers[-1]

    room = f"idle-{os.getpid()}"
    tracks = await asyncio.wait_for(peer("pub", "publisher").publish_silently(room), 30)
    await asyncio.sleep(args.settle)
    baseline = await measure(system.pid, system.url, args.seconds)
    gate = asyncio.Semaphore(10)

    async def one(i: int) -> None:
        async with gate:
            await asyncio.wait_for(peer("sub", f"idle-{i}").subscribe(room, tracks), 30)

    await asyncio.gather(*(one(i) for i in range(args.subscribers)))
    await asyncio.sleep(args.settle)
    spy = await _profile(system.pid, args.seconds, args.profile) if args.profile else None
    loaded = await measure(system.pid, system.url, args.seconds)
    if spy is not None:
        await spy.wait()
    return {"subscribers": args.subscribers, "baseline": asdict(baseline), "loaded": asdict(loaded),
            "per_subscriber": per_subscriber(baseline, loaded, args.subscribers),
            "profile": str(args.profile) if args.profile else None}


def _row(label: str, row: dict[str, Any]) -> str:
    tasks = "?" if row["tasks"] is None else f"{row['tasks']:g}"
    return (f"{label:<27}{row['cpu_ms_per_s']:8.3f} CPU ms/s ({row['system_ms_per_s']:.3f} in the "
            f"kernel; {row['run_ms_per_s']:.3f} by schedstat)  {row['wakeups_per_s']:8.2f} wakeups/s  "
            f"{tasks} asyncio tasks")


def _print(result: dict[str, Any]) -> None:
    print(_row("node, publisher only:", result["baseline"]))
    print(_row(f"node, {result['subscribers']} idle subscribers:", result["loaded"]))
    print(_row("per idle subscriber:", result["per_subscriber"]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2)) if args.json else _print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
