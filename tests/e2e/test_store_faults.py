"""The node's stores under faults: a corrupt room log stops the start with a clear
error (exit 2) and is left as it was; nothing else is touched."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import API_KEY, API_SECRET, ROOT, _free_port


def test_a_corrupt_room_log_is_a_clear_error_and_exit_2(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "messages.db").write_bytes(b"not a database, a truncated copy" * 64)
    proc = subprocess.run(
        [sys.executable, "-m", "dockcast.cli", "serve", "--port", str(_free_port()), "--data-dir", str(data),
         "--api-key", API_KEY, "--api-secret", API_SECRET, "--ice-address", "127.0.0.1"],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "messages.db" in proc.stderr and "corrupt or not a SQLite file" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (data / "messages.db").read_bytes().startswith(b"not a database")
