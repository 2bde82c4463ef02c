"""The browser client (signalling/web/dockcast.js) under Node against real nodes.

Each ``tests/web/*.test.mjs`` runs with ``node --test`` (Debian's nodejs; Node 20 needs
``--experimental-websocket`` for its WebSocket) against two nodes started here: one with
the default limits, one with a burst of 2 requests (rate limits). The JS tests read the
nodes' URLs, the API key and secret (to mint their own tokens), the first node's data
directory and this Python (to read its message cursors) from the environment. A failing
JS test fails its file here, with node's output.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from e2e.conftest import API_KEY, API_SECRET, NodeFactory

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

HERE = pathlib.Path(__file__).resolve().parent
JS_TESTS = sorted(HERE.glob("*.test.mjs"))
NODE = shutil.which("node")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    factory = NodeFactory(tmp_path_factory.mktemp("web"))
    plain = factory.start("plain")
    limited = factory.start("limited", env={"DOCKCAST_REQUEST_BURST": "2", "DOCKCAST_REQUEST_RATE": "50"})
    yield plain, limited
    factory.stop_all()


@pytest.mark.parametrize("script", JS_TESTS, ids=lambda p: p.name)
def test_js(script, nodes):
    if NODE is None:
        pytest.fail("node is not installed: `make test` installs it (scripts/system-deps.sh)")
    plain, limited = nodes
    env = dict(os.environ, DOCKCAST_URL=plain.url, DOCKCAST_RATE_URL=limited.url, DOCKCAST_API_KEY=API_KEY,
               DOCKCAST_API_SECRET=API_SECRET, DOCKCAST_DATA_DIR=str(plain.data_dir),
               DOCKCAST_PYTHON=sys.executable)
    proc = subprocess.run([NODE, "--experimental-websocket", "--no-warnings", "--test", str(script)],
                          check=False, cwd=HERE, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout[-12000:]}\n{proc.stderr[-4000:]}"
    assert "# fail 0" in proc.stdout and "# pass 0" not in proc.stdout, proc.stdout[-4000:]
