"""The playback page's pure modules (signalling/web/playback/*.js) under ``node --test``:
``tests/web/playback/*.test.mjs`` (no node needed: no network)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

HERE = pathlib.Path(__file__).resolve().parent / "playback"
NODE = shutil.which("node")


@pytest.mark.parametrize("script", sorted(HERE.glob("*.test.mjs")), ids=lambda p: p.name)
def test_playback_units(script):
    if NODE is None:
        pytest.fail("node is not installed: `make test` installs it (scripts/system-deps.sh)")
    proc = subprocess.run([NODE, "--test", str(script)], cwd=HERE, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout[-8000:]}\n{proc.stderr[-2000:]}"
    assert "# fail 0" in proc.stdout and "# pass 0" not in proc.stdout, proc.stdout[-2000:]
