"""The examples run against a real node, the way examples/README.md says to run them."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

from .conftest import API_KEY, API_SECRET

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.timeout(90)]


def test_warehouse_opens_rooms_pushes_events_and_prints_them(node):
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "warehouse.py"), "--pace", "0.05"],
        env={"PATH": "/usr/bin:/bin", "DOCKCAST_URL": node.url, "DOCKCAST_API_KEY": API_KEY,
             "DOCKCAST_API_SECRET": API_SECRET},
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    for sid in ("SZX-LAX-1001", "NGB-LGB-2002"):
        room = f"inbound-{sid}"
        assert f"opened room {room}" in out
        assert f"{sid}: export_customs > in_transit > import_customs_hold > customs_cleared" in out
        lines = [line for line in out.splitlines() if f" {room} " in line]
        kinds = [line.split()[2] for line in lines]
        assert kinds.count("shipment_status") == 6 and kinds.count("alert") == 1, lines
        assert kinds.count("message") == 3 and "participant_joined" in kinds
        assert kinds[-2:] == ["participant_left", "room_closed"], lines
    assert "ALERT warning: shipment SZX-LAX-1001: import customs hold: commercial invoice missing" in out


@pytest.mark.slow
def test_publish_and_watch_through_a_node(node, tmp_path):
    """examples/publish.py sends a test pattern, examples/watch.py decodes it and saves
    a clip: aiortc on loopback through a real node, with the documented --loopback."""
    publisher = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "publish.py"), "--url", node.url, "--loopback",
         "--token", node.token("dock-cam", "dock-7", ("publish",)), "--seconds", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        assert "joined dock-7" in publisher.stdout.readline()
        assert "publishing video" in publisher.stdout.readline()
        clip = tmp_path / "clip.webm"
        watch = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "watch.py"), "--url", node.url, "--loopback",
             "--token", node.token("seller", "dock-7", ("subscribe",)), "--frames", "20",
             "--timeout", "40", "--save", str(clip)],
            capture_output=True, text=True, timeout=90, cwd=ROOT)
        assert watch.returncode == 0, watch.stdout + watch.stderr
        decoded = re.search(r"decoded (\d+) video frames \(320x240\)", watch.stdout)
        assert decoded and int(decoded.group(1)) >= 20, watch.stdout
        assert clip.stat().st_size > 1000
    finally:
        publisher.terminate()
        publisher.wait(timeout=20)
