"""End-to-end fixtures: a real ``dockcast serve`` process on a free loopback port.

``node`` is one node for the test. ``node_factory.start(...)`` starts more, with extra
environment or flags (a ``--config`` TOML file); ``node_factory.restart(proc)`` starts
one again on the same port and data directory (after ``proc.kill()``: SIGKILL).
"""

from __future__ import annotations

import os
import pathlib
import signal
import ssl
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from signalling.tokens import mint_token

ROOT = pathlib.Path(__file__).resolve().parents[2]
API_KEY = "e2e-key"
API_SECRET = "e2e-secret-0123456789abcdef0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeProcess:
    """A node started the way a user starts one, with its stderr kept for the test."""

    def __init__(self, data_dir: pathlib.Path, extra_env: dict[str, str] | None = None,
                 extra_args: tuple[str, ...] = (), port: int | None = None,
                 scheme: str = "http") -> None:
        self.port = port or _free_port()
        self.data_dir = data_dir
        self.extra_env = dict(extra_env or {})
        self.extra_args = tuple(extra_args)
        self.url = f"{'wss' if scheme == 'https' else 'ws'}://127.0.0.1:{self.port}/ws"
        self.http = f"{scheme}://127.0.0.1:{self.port}"
        # the health probe only: the tests check certificates themselves
        self._probe_tls = ssl._create_unverified_context() if scheme == "https" else None
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir.parent / f"{data_dir.name}-node.log"
        env = dict(os.environ, **self.extra_env)
        self._log = open(self.log_path, "a")  # a restarted node appends to the same log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dockcast.cli", "serve", "--port", str(self.port),
             "--data-dir", str(data_dir), "--api-key", API_KEY, "--api-secret", API_SECRET,
             "--ice-address", "127.0.0.1", "--log-level", "info", *self.extra_args],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.http + "/healthz", timeout=1,
                                            context=self._probe_tls) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"node did not become healthy:\n{self.log()}")

    def token(self, identity: str, room: str | None = "dock-1",
              grants: tuple[str, ...] = ("publish", "subscribe", "message"), ttl: float = 600) -> str:
        return mint_token(API_KEY, API_SECRET, identity, room=room, grants=grants, ttl=ttl)

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.http + "/metrics", timeout=5) as r:
            text = r.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def kill(self) -> None:
        """SIGKILL: no drain, no flush; what was answered must already be on disk."""
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def restart(self) -> NodeProcess:
        """A new node on the same port and data directory (this one must have exited)."""
        assert self.proc.poll() is not None, "stop or kill the node first"
        return NodeProcess(self.data_dir, self.extra_env, self.extra_args, port=self.port)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def _check_clean_exit(proc: NodeProcess) -> None:
    code = proc.stop()
    log = proc.log_path.read_text()
    assert code == 0, f"node exited with {code}:\n{log[-4000:]}"
    assert "Traceback" not in log, f"node logged a traceback:\n{log[-6000:]}"


@pytest.fixture
def node(tmp_path):
    proc = NodeProcess(tmp_path / "data")
    yield proc
    _check_clean_exit(proc)


class NodeFactory:
    """Starts nodes under one directory and stops them all at the end of the test."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.procs: list[NodeProcess] = []

    def start(self, name: str = "data", env: dict[str, str] | None = None,
              args: tuple[str, ...] = ()) -> NodeProcess:
        """A node with its own data dir ``root/name``, extra environment and flags."""
        return self._track(NodeProcess(self.root / name, env, args))

    def restart(self, proc: NodeProcess) -> NodeProcess:
        """``proc`` again (same port, data dir, environment, flags) once it exited."""
        return self._track(proc.restart())

    def _track(self, proc: NodeProcess) -> NodeProcess:
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        """Nodes still running must exit 0 with no traceback logged. Every node is
        stopped first; then the first one that did not exit cleanly fails the test."""
        failures = []
        for proc in self.procs:
            if proc.proc.poll() is None:
                try:
                    _check_clean_exit(proc)
                except AssertionError as exc:
                    failures.append(exc)
        if failures:
            raise failures[0]


@pytest.fixture
def node_factory(tmp_path):
    factory = NodeFactory(tmp_path)
    yield factory
    factory.stop_all()
