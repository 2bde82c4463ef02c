"""A worker per core: ``dockcast serve --workers N`` runs N nodes on one machine, one
port for clients.

One Dockcast node is one event loop on one core. ``--workers N`` (0: one per core) makes
the ``serve`` process a supervisor of N such nodes (the *workers*), each a process of its
own (``python -m dockcast.cli serve`` with the same settings):

- one port for clients: every worker listens on ``--port`` with ``SO_REUSEPORT`` (the
  kernel spreads new connections over them), and on a port of its own, ``port + 2 + 2i``
  for worker ``i`` (its trunk port is the next one). The own port is the worker's public
  URL, where ``welcome.redirect`` sends a client;
- rooms placed on workers: a room's home is the live worker that rendezvous hashing of
  the room name picks (every worker computes the same answer without asking anyone). A
  client whose token names a room homed on another worker gets ``welcome.redirect`` to
  it (as a cluster's placement, `PROTOCOL.md`), so the members of a room share a worker
  and its media never crosses between them. A room open here stays here;
- the workers form a cluster (`dockcast.cluster`): their directory and room log are a
  Redis, ``--redis`` or else a private ``redis-server`` the supervisor starts on a Unix
  socket in ``<data-dir>/run`` (append-only file, fsync on every write: room messages
  are as durable as in the single node's SQLite). An admin token's connection (no room)
  or a room that spans workers after a restart is served as in any cluster, media over
  the trunk between them;
- the data directory is the supervisor's (it holds the lock); the workers share it (the
  keys, the recordings, the plugins' stores), worker 0 started first so that it makes
  whatever a first start makes before the others read it;
- a worker that exits is started again (1 s, doubling to 30 s while it keeps failing);
  SIGTERM or SIGINT stops the workers (each drains as a node does), then the Redis; a
  supervisor killed outright takes its children with it (``PR_SET_PDEATHSIG``).

The worker's side is `WorkerRole` (the supervisor passes it in ``DOCKCAST_WORKER``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

from .config import ConfigError, NodeConfig

__all__ = ["WorkerRole", "Supervisor", "worker_count", "home_worker", "port_free", "ROLE_ENV"]

logger = logging.getLogger("dockcast.workers")

ROLE_ENV = "DOCKCAST_WORKER"
"""How the supervisor tells a worker who it is: ``group,index,count,port,supervisor_pid``."""
READY_TIMEOUT_S = 60.0
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
SECRET_FLAGS = ("api_secret", "api_keys")
STOP_GRACE_S = 20.0
"""How long the supervisor waits for the workers to drain before it kills them."""


def worker_count(config: NodeConfig) -> int:
    """``config.workers`` with 0 turned into this machine's cores."""
    return config.workers or os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """Worker ``index`` of ``count`` in ``group``, its own port ``port``."""

    group: str
    index: int
    count: int
    port: int
    supervisor: int

    @property
    def node_id(self) -> str:
        return worker_node_id(self.group, self.index)

    @property
    def sibling_ids(self) -> list[str]:
        return [worker_node_id(self.group, i) for i in range(self.count)]

    def to_env(self) -> str:
        return f"{self.group},{self.index},{self.count},{self.port},{self.supervisor}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> WorkerRole | None:
        """The role the supervisor gave this process, or None (not a worker). A value
        that does not parse, or names another parent than ours, is a ConfigError: a
        worker must never run as something else."""
        value = (os.environ if environ is None else environ).get(ROLE_ENV)
        if not value:
            return None
        try:
            group, index, count, port, supervisor = value.split(",")
            role = cls(group, int(index), int(count), int(port), int(supervisor))
        except ValueError:
            raise ConfigError(f"{ROLE_ENV}={value!r} is not group,index,count,port,pid") from None
        if not (0 <= role.index < role.count and 0 < role.port < 65536 and role.group):
            raise ConfigError(f"{ROLE_ENV}={value!r} is out of range")
        if role.supervisor != os.getppid():
            raise ConfigError(f"{ROLE_ENV} names supervisor {role.supervisor}, but this process's "
                              f"parent is {os.getppid()}: a worker runs under its supervisor only")
        return role


def worker_node_id(group: str, index: int) -> str:
    return f"{group}-w{index}"


def worker_port(port: int, index: int) -> int:
    """Worker ``index``'s own websocket port (its trunk port is the next one)."""
    return port + 2 + 2 * index


def home_worker(room: str, node_ids: list[str]) -> str | None:
    """The room's home among ``node_ids`` by rendezvous hashing: the node whose hash with
    the room is highest. A node that goes only moves its own rooms; one that comes back
    takes back only its own."""
    if not node_ids:
        return None
    return max(node_ids, key=lambda n: hashlib.blake2b(f"{room}\0{n}".encode(), digest_size=8).digest())


def worker_url(config: NodeConfig, port: int) -> str:
    """The URL clients use for a worker listening on ``port``: ``public_url`` with its
    port replaced, or one made from the host."""
    if config.public_url:
        parts = urllib.parse.urlsplit(config.public_url)
        host = parts.hostname or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return urllib.parse.urlunsplit((parts.scheme, f"{host}:{port}", parts.path or "/ws", "", ""))
    return config.local_url(port, "ws") + "/ws"


class PrivateRedis:
    """A ``redis-server`` for this machine's workers only: a Unix socket in
    ``<data-dir>/run`` (0700), no TCP port, every write appended and fsynced."""

    def __init__(self, data_path: Path) -> None:
        self.dir = data_path / "run"
        self.socket = self.dir / "redis.sock"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 15.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigError("workers: more than one worker needs a Redis for their directory and "
                              "room log: install redis-server (Debian: apt install redis-server) "
                              "or give --redis URL")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        self.socket.unlink(missing_ok=True)
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ConfigError(f"workers: redis-server exited at start ({self.proc.returncode}); "
                                  f"see {self.dir / 'redis.log'}")
            if _answers(self.socket):
                logger.info("workers: private redis-server on %s (pid %d)", self.socket, self.proc.pid)
                return
            time.sleep(0.05)
        self.stop()
        raise ConfigError(f"workers: redis-server did not answer on {self.socket} in {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _die_with_parent() -> None:
    """In a child before it runs: SIGTERM it when the supervisor dies, even by SIGKILL
    (``prctl(PR_SET_PDEATHSIG)``), so no worker or Redis outlives it holding the ports."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # 1: PR_SET_PDEATHSIG


def _answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(str(path))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def port_free(host: str, port: int) -> bool:
    """Nobody listens on TCP ``port`` nor has UDP ``port`` (bound without SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def _healthy(config: NodeConfig, port: int) -> bool:
    import ssl
    import urllib.request

    url = config.local_url(port) + "/healthz"
    context = ssl._create_unverified_context() if url.startswith("https") else None  # our own node
    try:
        with urllib.request.urlopen(url, timeout=1.0, context=context) as reply:
            return reply.status == 200
    except OSError:
        return False


def _listening(config: NodeConfig, port: int) -> bool:
    try:
        with socket.create_connection((config.local_host, port), timeout=1.0):
            return True
    except OSError:
        return False


class Supervisor:
    """Runs ``count`` workers with ``flags`` (the ``serve`` flags as parsed) until
    SIGTERM or SIGINT. See the module docstring."""

    def __init__(self, config: NodeConfig, flags: dict[str, Any]) -> None:
        self.config = config
        self.flags = {k: v for k, v in flags.items() if v is not None}
        self.count = worker_count(config)
        self.group = config.node_id or "node-" + uuid.uuid4().hex[:8]
        self.redis: PrivateRedis | None = None
        self.procs: list[subprocess.Popen | None] = [None] * self.count
        self.failures = [0] * self.count
        self.next_start = [0.0] * self.count
        self._stop = threading.Event()

    def command(self, index: int, redis_url: str) -> tuple[list[str], dict[str, str]]:
        """Worker ``index``'s command line and environment."""
        port = worker_port(self.config.port, index)
        flags = dict(self.flags, node_id=worker_node_id(self.group, index), redis=redis_url,
                     trunk_port=port + 1, public_url=worker_url(self.config, port),
                     api_key=self.config.api_key, api_secret=self.config.api_secret)
        argv = [sys.executable, "-m", "dockcast.cli", "serve"]
        for name, value in flags.items():
            if value is None:
                continue
            argv += [f"--{name.replace('_', '-')}", str(value)]
        role = WorkerRole(self.group, index, self.count, port, os.getpid())
        env = dict(os.environ, **{ROLE_ENV: role.to_env()})
        for name in SECRET_FLAGS:  # in the environment, not on a command line others can read
            flag = f"--{name.replace('_', '-')}"
            if flag in argv:
                i = argv.index(flag)
                env[f"DOCKCAST_{name.upper()}"] = argv[i + 1]
                del argv[i:i + 2]
        return argv, env

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        taken = [p for p in [self.config.port] + [worker_port(self.config.port, i) + k
                                                   for i in range(self.count) for k in (0, 1)]
                 if not port_free(self.config.host, p)]
        if taken:  # SO_REUSEPORT would let a second server share the port unnoticed
            raise ConfigError(f"workers: port(s) {', '.join(map(str, taken))} on {self.config.host} "
                              f"are in use; {self.count} workers on --port {self.config.port} need "
                              f"it and {worker_port(self.config.port, 0)}-"
                              f"{worker_port(self.config.port, self.count - 1) + 1}")
        redis_url = self.config.redis
        if redis_url is None:
            self.redis = PrivateRedis(self.config.data_path)
            self.redis.start()
            redis_url = self.redis.url
        try:
            logger.info("workers: starting %d on port %d (own ports %d-%d)", self.count, self.config.port,
                        worker_port(self.config.port, 0), worker_port(self.config.port, self.count - 1) + 1,
                        extra={"group": self.group})
            self._start(0, redis_url)  # first: it makes what a first start makes
            if not self._wait_ready(0):
                return 2
            for i in range(1, self.count):
                self._start(i, redis_url)
            for i in range(self.count):
                self._wait_healthy(i)
            logger.info("workers: %d serving on %s:%d", self.count, self.config.host, self.config.port)
            while not self._stop.wait(0.2):
                self._supervise(redis_url)
            return 0
        finally:
            self._stop_all()
            if self.redis is not None:
                self.redis.stop()

    def _start(self, index: int, redis_url: str) -> None:
        argv, env = self.command(index, redis_url)
        self.procs[index] = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                             preexec_fn=_die_with_parent)
        logger.info("workers: worker %d started (pid %d)", index, self.procs[index].pid,
                    extra={"node": worker_node_id(self.group, index)})

    def _wait_healthy(self, index: int) -> bool:
        """Worker ``index`` has started (its ``/healthz`` says ok: it serves on the common
        port too)."""
        return self._wait(index, _healthy, "was not healthy")

    def _wait_ready(self, index: int) -> bool:
        """Worker ``index`` listens on its own port (the next one may start)."""
        return self._wait(index, _listening, "did not listen")

    def _wait(self, index: int, check: Any, failed: str) -> bool:
        port = worker_port(self.config.port, index)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and not self._stop.is_set():
            proc = self.procs[index]
            if proc is None or proc.poll() is not None:
                logger.error("workers: worker %d exited while starting (%s)", index,
                             proc.returncode if proc else "not started")
                return False
            if check(self.config, port):
                return True
            time.sleep(0.1)
        logger.error("workers: worker %d %s on port %d in %.0f s", index, failed, port, READY_TIMEOUT_S)
        return False

    def _supervise(self, redis_url: str) -> None:
        if self.redis is not None and self.redis.proc is not None and self.redis.proc.poll() is not None:
            logger.error("workers: the private redis-server exited (%s); starting it again",
                         self.redis.proc.returncode)
            try:
                self.redis.start()
            except ConfigError as exc:
                logger.error("workers: %s", exc)
        now = time.monotonic()
        for i, proc in enumerate(self.procs):
            if proc is None:
                if now >= self.next_start[i]:
                    self._start(i, redis_url)
                continue
            code = proc.poll()
            if code is None:
                if self.failures[i] and now - self.next_start[i] > RESTART_MAX_S:
                    self.failures[i] = 0  # it has run a while: the next failure waits 1 s
                continue
            wait = min(RESTART_FIRST_S * 2 ** self.failures[i], RESTART_MAX_S)
            self.failures[i] += 1
            self.next_start[i] = now + wait
            self.procs[i] = None
            logger.error("workers: worker %d exited with %s; starting it again in %.0f s", i, code, wait,
                         extra={"node": worker_node_id(self.group, i)})

    def _stop_all(self) -> None:
        running = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in running:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                logger.warning("workers: worker pid %d did not stop in %.0f s; killing it", proc.pid,
                               STOP_GRACE_S)
                proc.kill()
                proc.wait()
        logger.info("workers: stopped")
