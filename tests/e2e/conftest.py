"""End-to-end fixtures: a real ``dockcast serve`` process on a free loopback port."""

from __future__ import annotations

import os
import pathlib
import signal
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

    def __init__(self, data_dir: pathlib.Path, extra_env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.data_dir = data_dir
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.http = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir.parent / "node.log"
        env = dict(os.environ, **(extra_env or {}))
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dockcast.cli", "serve", "--port", str(self.port),
             "--data-dir", str(data_dir), "--api-key", API_KEY, "--api-secret", API_SECRET,
             "--ice-address", "127.0.0.1", "--log-level", "info"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.http + "/healthz", timeout=1) as r:
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


@pytest.fixture
def node(tmp_path):
    proc = NodeProcess(tmp_path / "data")
    yield proc
    code = proc.stop()
    log = proc.log_path.read_text()
    assert code == 0, f"node exited with {code}:\n{log[-4000:]}"
    assert "Traceback" not in log, f"node logged a traceback:\n{log[-6000:]}"
