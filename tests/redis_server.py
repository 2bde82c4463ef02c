"""A private ``redis-server`` for the tests: on a free 127.0.0.1 port, configured the way
``docs/cluster.md`` says a cluster's Redis must be (AOF with ``appendfsync always``, no
eviction, no RDB snapshots), in a directory of its own.

`RedisServer` can be stopped (SIGTERM or SIGKILL) and started again on the same port and
directory, so a test sees Redis go away and come back with what its AOF kept. The
``redis_server`` fixture of ``tests/conftest.py`` shares one for the whole session;
tests isolate themselves with a key prefix of their own instead of flushing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Self

__all__ = ["RedisServer", "unique_prefix"]

START_TIMEOUT_S = 10.0


def unique_prefix(what: str = "test") -> str:
    """A key prefix no other test uses: tests sharing a server never see each other's keys."""
    return f"{what}-{uuid.uuid4().hex[:12]}:"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(port: int) -> bool:
    """PING over a raw socket: no client library, so this also works while one is broken."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))  # up (with a password or not)
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process in ``directory`` (its AOF lives there)."""

    def __init__(self, directory: Path, *extra_args: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (scripts/system-deps.sh installs it)")
        self.binary = binary
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.port = _free_port()
        self.extra_args = extra_args
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
            "--maxmemory-policy", "noeviction", "--dir", str(self.directory),
            "--protected-mode", "yes", *self.extra_args,
        ]
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ping(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: "
                                   f"{(self.directory / 'redis.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGKILL: as a crash would, losing nothing the AOF fsynced)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop(signal.SIGKILL)
