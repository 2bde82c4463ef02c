"""The examples run against a real node, the way examples/README.md says to run them."""

from __future__ import annotations

import pathlib
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
