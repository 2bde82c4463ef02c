"""One data directory, one node: the lock on ``<data-dir>/node.lock``, in one process and
between real ``dockcast serve`` processes (a SIGKILLed node leaves no stale lock)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from dockcast.lock import DataDirLock, DataDirLockError

SECRET = "lock-test-secret-0123456789abcdef0123"


def test_a_second_lock_on_the_same_directory_is_refused(tmp_path):
    first = DataDirLock(tmp_path / "d")
    first.acquire()  # makes the directory
    try:
        assert (tmp_path / "d" / "node.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(DataDirLockError, match=f"in use by another node \\(pid {os.getpid()}\\)"):
            DataDirLock(tmp_path / "d").acquire()
    finally:
        first.release()
    again = DataDirLock(tmp_path / "d")
    again.acquire()  # released: free again
    again.release()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(data_dir, port, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dockcast.cli", "serve", "--port", str(port), "--data-dir", str(data_dir),
         "--api-key", "k", "--api-secret", SECRET, "--ice-address", "127.0.0.1", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _wait_healthy(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the node did not become healthy")


@pytest.mark.timeout(180)
def test_a_second_node_on_the_same_data_dir_refuses_and_a_killed_one_leaves_no_lock(tmp_path):
    data = tmp_path / "data"
    port = _port()
    first = _serve(data, port)
    try:
        _wait_healthy(first, port)
        second = _serve(data, _port())
        out, err = second.communicate(timeout=60)
        assert second.returncode == 2, err
        assert f"data directory {data}" in err and "in use by another node" in err
        assert f"pid {first.pid}" in err and "Traceback" not in err
        assert first.poll() is None  # the first one serves on
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        third = _serve(data, port)  # the kernel released the lock with the killed process
        try:
            _wait_healthy(third, port)
        finally:
            third.send_signal(signal.SIGTERM)
            _, err = third.communicate(timeout=60)
            assert third.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
