"""The harness: systems under test, load-client worker processes, and a run's folder.

A :class:`System` is something the load clients can talk to: a ``dockcast serve`` the
harness starts (or one already running, ``--url``), the naive aiortc relay, Janus
(:mod:`bench.janus`) or mediasoup (:mod:`bench.mediasoup`). Each gives a websocket URL,
the pid whose CPU is measured (with its child processes), which signalling the workers
speak, and how it is reached (``how``: every system on loopback unless told otherwise). A :class:`WorkerProcess` is one ``python -m bench.loadclient`` process
driven by JSON lines. A :class:`Run` owns the results folder, the corpus, the logs and
the progress display.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .corpus import CorpusParams, load_or_generate
from .cpu import CpuMeter, MachineLoad, machine_facts, process_tree

__all__ = ["System", "DockcastSystem", "NaiveSystem", "WorkerProcess", "Workers", "Run",
           "RunOptions", "free_port", "free_port_range", "port_free", "NODE_ENV"]

REPO = pathlib.Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port_range(count: int, host: str = "127.0.0.1") -> int:
    """A port P with P..P+count-1 free for TCP and UDP (``serve --workers``' ports)."""
    while True:
        base = free_port(host)
        if base + count < 65535 and all(port_free(host, base + k) for k in range(count)):
            return base


def port_free(host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


async def _wait_port(host: str, port: int, proc: asyncio.subprocess.Process | None,
                     timeout: float, log: pathlib.Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.returncode is not None:
            tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode} before serving:\n{tail}")
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:g} s") from None
            await asyncio.sleep(0.1)


async def _stop_process(proc: asyncio.subprocess.Process | None, timeout: float = 10.0) -> None:
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


# -- systems under test -------------------------------------------------------------------


NODE_ENV = {"DOCKCAST_MAX_PARTICIPANTS_PER_ROOM": "0"}
"""What a node started by the harness runs with beyond its defaults: no cap on a room's
participants (the default, 100, would refuse the 100th subscriber of a room whose
publisher is the 101st participant; fan-out steps go to 500 and beyond)."""

class System:
    """A server the load clients talk to. ``signal``: what the workers speak;
    ``python``: whether py-spy can profile it; ``how``: its network path, for the report."""

    name = "system"
    label = "System"
    signal = "dockcast"
    join_subscribes = False
    """Its subscribers join with ``subscribe: true`` (Dockcast's one round trip fewer);
    the baselines' subscribers join, then subscribe."""
    python = True
    how = "on loopback (127.0.0.1)"

    def __init__(self) -> None:
        self.url = ""
        self.sub_url: str | None = None  # where subscribers connect, when not ``url``
        self.pid: int | None = None
        self.api_key = "bench"
        self.api_secret = secrets.token_hex(32)
        self.ice_address = "127.0.0.1"
        self.skipped: str | None = None
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, run: Run) -> None:
        raise NotImplementedError

    def network(self) -> dict | None:
        """What the emulated network inside this system did (a cascade's WAN between its
        nodes), read after it stopped; ``None``: nothing emulated inside."""
        return None

    async def _launch(self, args: list[str], log: pathlib.Path, host: str, port: int,
                      env: dict | None = None) -> None:
        """Start the server process (output to ``log``) and wait until it listens."""
        with open(log, "ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=str(REPO), env=env)
        self.pid = self.proc.pid
        await _wait_port(host, port, self.proc, 60, log)

    async def stop(self) -> None:
        await _stop_process(self.proc)
        self.proc = None

    def worker_config(self) -> dict:
        return {"system": self.signal, "url": self.url, "api_key": self.api_key,
                "api_secret": self.api_secret, "ice_address": self.ice_address,
                "join_subscribes": self.join_subscribes}

    def describe(self) -> dict:
        return {"name": self.name, "label": self.label, "url": self.url, "pid": self.pid,
                "skipped": self.skipped, "how": self.how}


class DockcastSystem(System):
    """``dockcast serve`` on a free loopback port with a fresh data dir, or (with
    ``url``) a node that is already running (``pid`` then says whose CPU to measure)."""

    name = "dockcast"
    label = "Dockcast"
    join_subscribes = True

    def __init__(self, url: str | None = None, api_key: str | None = None,
                 api_secret: str | None = None, pid: int | None = None,
                 recording: bool = False, workers: int = 1) -> None:
        super().__init__()
        self.recording = recording
        self.workers = workers
        if recording:  # the same node recording every room: the recorder's cost
            self.name, self.label = "dockcast-recording", "Dockcast, recording"
        if workers > 1:  # `serve --workers N`: the supervisor's children are measured too
            self.name, self.label = f"dockcast-{workers}w", f"Dockcast, {workers} workers"
            self.how = (f"on loopback (127.0.0.1): `dockcast serve --workers {workers}`, one port, "
                        "rooms placed on the workers, a private redis-server")
        self.attached = url is not None
        if url is not None:
            self.url = url
            self.pid = pid
            self.api_key = api_key or self.api_key
            self.api_secret = api_secret or self.api_secret

    async def start(self, run: Run) -> None:
        if self.attached:
            return
        port = free_port() if self.workers == 1 else free_port_range(2 + 2 * self.workers)
        self.url = f"ws://127.0.0.1:{port}/ws"
        extra: list[str] = ["--workers", str(self.workers)]
        if self.recording:
            config = run.out / f"{self.name}.toml"
            config.write_text("[plugins.inspection]\nrecord_all = true\n")
            extra += ["--config", str(config)]
        await self._launch(
            [sys.executable, "-m", "dockcast.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--data-dir", str(run.out / f"{self.name}-data"),
             "--api-key", self.api_key, "--api-secret", self.api_secret,
             "--ice-address", self.ice_address, "--log-level", "warning", *extra],
            run.logs / f"{self.name}-server.log", "127.0.0.1", port,
            env=dict(os.environ, PYTHONUNBUFFERED="1", **NODE_ENV))


class NaiveSystem(System):
    """The naive aiortc relay of :mod:`bench.baselines.naive_relay`."""

    name = "naive"
    label = "naive aiortc relay"
    signal = "naive"

    async def start(self, run: Run) -> None:
        port = free_port()
        self.url = f"ws://127.0.0.1:{port}/ws"
        await self._launch(
            [sys.executable, "-m", "bench.baselines.naive_relay", "--port", str(port),
             "--ice-address", self.ice_address],
            run.logs / "naive-relay.log", "127.0.0.1", port)


# -- load-client workers ------------------------------------------------------------------


class WorkerError(RuntimeError):
    pass


class WorkerProcess:
    """One ``python -m bench.loadclient`` process; :meth:`call` sends one command."""

    def __init__(self, config: dict, log: pathlib.Path, name: str) -> None:
        self.config = config
        self.log = log
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.pid: int | None = None
        self.clients = 0  # subscribers placed on it
        self._lock = asyncio.Lock()

    async def start(self, timeout: float = 60.0) -> WorkerProcess:
        with open(self.log, "ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.loadclient", json.dumps(self.config),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
                cwd=str(REPO), limit=1 << 26)
        ready = await self._read(timeout)
        self.pid = ready.get("pid", self.proc.pid)
        return self

    async def _read(self, timeout: float) -> dict:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise WorkerError(f"load-client worker {self.name} exited:\n{tail}")
        return json.loads(line)

    async def call(self, cmd: str, timeout: float = 120.0, **fields: Any) -> dict:
        async with self._lock:
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
            await self.proc.stdin.drain()
            reply = await self._read(timeout)
        if not reply.get("ok"):
            raise WorkerError(f"{self.name} {cmd}: {reply.get('error')}")
        return reply

    async def close(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            await self.call("close", timeout=30)
        except (WorkerError, TimeoutError, OSError, json.JSONDecodeError):
            pass
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            await _stop_process(self.proc, 5)


class Workers:
    """The workers of one system in one scenario: publishers apart from subscribers."""

    def __init__(self, run: Run, system: System, *, sub_wan: str | None, pub_wan: str | None,
                 label: str = "") -> None:
        self.run = run
        self.system = system
        self.label = label  # names the workers' logs
        self.sub_wan = sub_wan
        self.pub_wan = pub_wan
        self.publishers: list[WorkerProcess] = []
        self.subscribers: list[WorkerProcess] = []
        self._count = 0

    def _config(self, wan: str | None, role: str = "pub") -> dict:
        config = {**self.system.worker_config(), "corpus": str(self.run.corpus_path), "wan": wan,
                  "receive": self.run.options.receive}
        if role == "sub" and self.system.sub_url:  # a cascade: subscribers on another node
            config["url"] = self.system.sub_url
        return config

    async def _spawn(self, wan: str | None, role: str) -> WorkerProcess:
        self._count += 1
        name = "-".join(x for x in (self.label, self.system.name, f"{role}{self._count}") if x)
        worker = WorkerProcess(self._config(wan, role), self.run.logs / f"{name}.log", name)
        return await worker.start()

    async def publisher(self) -> WorkerProcess:
        worker = await self._spawn(self.pub_wan, "pub")
        self.publishers.append(worker)
        return worker

    async def publish(self, rooms: list[str], per_worker: int = 25) -> dict[str, list[dict]]:
        """One publisher (VP8 + Opus) per room, ``per_worker`` to a process."""
        tracks: dict[str, list[dict]] = {}
        chunks = [rooms[i:i + per_worker] for i in range(0, len(rooms), per_worker)]
        workers = [await self.publisher() for _ in chunks]
        replies = await asyncio.gather(*(w.call("publish", rooms=c, timeout=60 + 5 * len(c))
                                         for w, c in zip(workers, chunks)))
        for reply in replies:
            tracks.update(reply["tracks"])
        return tracks

    async def add_subscribers(self, groups: list[dict], per_worker: int,
                              concurrency: int = 10) -> dict:
        """Place ``[{"room", "tracks", "count"}]`` on workers with room left, spawning more."""
        placements: dict[WorkerProcess, list[dict]] = {}
        for group in groups:
            left = int(group["count"])
            while left > 0:
                worker = next((w for w in self.subscribers if w.clients < per_worker), None)
                if worker is None:
                    worker = await self._spawn(self.sub_wan, "sub")
                    self.subscribers.append(worker)
                take = min(left, per_worker - worker.clients)
                worker.clients += take
                placements.setdefault(worker, []).append({**group, "count": take})
                left -= take
        replies = await asyncio.gather(*(
            w.call("subscribe", groups=g, concurrency=concurrency,
                   timeout=120 + 2 * sum(x["count"] for x in g))
            for w, g in placements.items()))
        merged = {"started": 0, "failed": 0, "errors": [], "connect": [], "seconds": 0.0}
        for reply in replies:
            merged["started"] += reply["started"]
            merged["failed"] += reply["failed"]
            merged["errors"] += reply["errors"]
            merged["connect"] += reply["connect"]
            merged["seconds"] = max(merged["seconds"], reply["seconds"])
        return merged

    async def drop_subscribers(self, count: int) -> None:
        """Close ``count`` subscribers, from the most recently filled worker back."""
        for worker in reversed(self.subscribers):
            if count <= 0:
                break
            take = min(count, worker.clients)
            if take:
                await worker.call("drop", count=take)
                worker.clients -= take
                count -= take

    @property
    def all(self) -> list[WorkerProcess]:
        return self.publishers + self.subscribers

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.all if w.pid]

    async def measure(self, duration: float, progress: Any = None, label: str = "") -> dict:
        """Reset every counter, wait ``duration``, collect: the server's CPU and reports.

        With ``--profile``, py-spy samples a Python server over the window (a flame graph
        in ``profiles/``; ``--nonblocking``: the server is never paused).
        """
        await asyncio.gather(*(w.call("mark") for w in self.all))
        profiler = await self._profile(duration, label)
        pids = {"server": self.system.pid} if self.system.pid else {}
        pids.update({w.name: w.pid for w in self.all if w.pid})
        # the server's children count as the server (mediasoup's worker process)
        meter = CpuMeter(pids, with_children=("server",))
        load = MachineLoad((process_tree(self.system.pid) if self.system.pid else []) + self.pids)
        meter.start()
        load.start()
        await self.run.sleep(duration, progress)
        reports = await asyncio.gather(*(w.call("report", timeout=120) for w in self.all))
        cpu = meter.stop()
        result = {"cpu": cpu, "machine": load.stop(),
                  "publishers": reports[:len(self.publishers)],
                  "subscribers": reports[len(self.publishers):]}
        if profiler is not None:
            proc, path = profiler
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                await _stop_process(proc, 5)
            if path.exists():
                result["profile"] = str(path.relative_to(self.run.out))
        return result

    async def _profile(self, duration: float, label: str) -> tuple[Any, pathlib.Path] | None:
        if not self.run.options.profile or not self.system.pid or not self.system.python:
            return None
        spy = shutil.which("py-spy") or str(pathlib.Path(sys.executable).parent / "py-spy")
        if not os.path.exists(spy):
            self.run.console.print("[yellow]--profile: py-spy is not installed")
            return None
        folder = self.run.out / "profiles"
        folder.mkdir(exist_ok=True)
        name = "-".join(x for x in (label, self.system.name) if x).replace(" ", "_")
        path = folder / f"{name}.svg"
        with open(self.run.logs / "py-spy.log", "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                spy, "record", "--pid", str(self.system.pid), "--duration", str(max(1, round(duration))),
                "--rate", "250", "--nonblocking", "--format", "flamegraph", "--output", str(path),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        return proc, path

    async def close(self) -> None:
        await asyncio.gather(*(w.close() for w in self.all), return_exceptions=True)
        self.publishers, self.subscribers = [], []


# -- a run ------------------------------------------------------------------------------


@dataclass
class RunOptions:
    out: pathlib.Path
    duration: float = 10.0
    wan: str | None = None
    wan_side: str = "subscribers"  # which clients sit across the emulated WAN
    trunk_wan: str | None = None  # the WAN emulated between a cascade's nodes
    corpus_dir: pathlib.Path | None = None
    corpus_seconds: float = 10.0
    subs_per_worker: int = 100
    receive: str = "native"  # how subscribers read: "native" (bench.receive) or "python"
    baselines: tuple[str, ...] = ("naive", "janus", "mediasoup")
    janus_netns: bool = False  # Janus in a network namespace instead of on loopback
    workers: int = 2  # the `workers` baseline: `dockcast serve --workers N`
    mediasoup_dir: pathlib.Path | None = None  # npm cache (default: beside ``out``)
    naive_max: int = 50  # the naive relay is not run above this many subscribers
    settle: float = 1.0  # seconds between connecting subscribers and measuring
    profile: bool = False  # py-spy flame graphs of the (Python) server per window
    url: str | None = None
    api_key: str | None = None
    api_secret: str | None = None
    server_pid: int | None = None
    command: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def sub_wan(self) -> str | None:
        return self.wan if self.wan_side in ("subscribers", "all") else None

    @property
    def pub_wan(self) -> str | None:
        return self.wan if self.wan_side in ("publishers", "all") else None


class Run:
    """A results folder with its corpus, logs, progress display and machine facts."""

    def __init__(self, options: RunOptions, console: Any = None) -> None:
        from rich.console import Console

        self.options = options
        self.out = pathlib.Path(options.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.logs = self.out / "logs"
        self.logs.mkdir(exist_ok=True)
        self.console = console or Console(stderr=True)
        self.corpus_path: pathlib.Path | None = None
        self.corpus_summary: dict = {}
        self.started = time.time()
        self.facts = machine_facts()
        self.how: dict[str, str] = {}  # system name -> its network path, for the report

    def prepare_corpus(self) -> None:
        cache = self.options.corpus_dir or (self.out.parent / "corpus")
        params = CorpusParams(seconds=self.options.corpus_seconds)
        with self.console.status("encoding the VP8/Opus corpus (once; cached)"):
            corpus = load_or_generate(cache, params)
        self.corpus_path = pathlib.Path(cache) / f"corpus-{params.key()}.bin"
        self.corpus_summary = corpus.summary()

    def systems(self) -> list[System]:
        """Dockcast, then each requested baseline (Janus and mediasoup say why they are
        skipped when they cannot run here); with ``recording``, Dockcast a second time
        recording every room (not when attached to a running node)."""
        o = self.options
        systems: list[System] = [DockcastSystem(o.url, o.api_key, o.api_secret, o.server_pid)]
        if "recording" in o.baselines and o.url is None:
            systems.append(DockcastSystem(recording=True))
        if "workers" in o.baselines and o.url is None:
            systems.append(DockcastSystem(workers=o.workers))
        if "cascade" in o.baselines and o.url is None:
            from .cascade import CascadeSystem

            systems.append(CascadeSystem(trunk_wan=o.trunk_wan))
        if "naive" in o.baselines:
            systems.append(NaiveSystem())
        if "janus" in o.baselines:
            from .janus import JanusSystem

            systems.append(JanusSystem(netns=o.janus_netns))
        if "mediasoup" in o.baselines:
            from .mediasoup import MediasoupSystem

            systems.append(MediasoupSystem(o.mediasoup_dir or self.out.parent / "mediasoup-npm"))
        self.how.update({s.name: s.how for s in systems})
        return systems

    async def sleep(self, seconds: float, progress: Any = None) -> None:
        """Sleep, advancing ``progress`` (a ``(Progress, task_id)`` pair) as it goes."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if progress is not None:
                bar, task = progress
                bar.update(task, completed=seconds - max(0.0, left))
            if left <= 0:
                return
            await asyncio.sleep(min(0.25, left))

    def progress(self) -> Any:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                        console=self.console, transient=True)

    def header(self, scenario: str) -> dict:
        commit = ""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                    capture_output=True, text=True, timeout=5).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=REPO, capture_output=True, text=True, timeout=5).stdout
            if dirty.strip():
                commit += " (with uncommitted changes)"
        o = self.options
        return {
            "scenario": scenario,
            "command": o.command,
            "commit": commit,
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)),
            "machine": self.facts,
            "corpus": self.corpus_summary,
            "systems": dict(self.how),
            "options": {"duration": o.duration, "wan": o.wan, "wan_side": o.wan_side,
                        "trunk_wan": o.trunk_wan,
                        "baselines": list(o.baselines), "naive_max": o.naive_max,
                        "janus_netns": o.janus_netns, "workers": o.workers,
                        "subs_per_worker": o.subs_per_worker, "receive": o.receive,
                        "settle": o.settle, **o.extra},
        }
