"""The README's first steps, run as written against a node on development credentials:
the token command, the browser URL and the Python snippet (only the port differs: the
test's node cannot count on 8765 being free)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import ROOT, _free_port
from .peer import Participant

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

README = (ROOT / "README.md").read_text()


def blocks(language: str = "") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


@pytest.fixture
def dev_node(tmp_path):
    port = _free_port()
    data = tmp_path / "data"
    log = open(tmp_path / "node.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockcast.cli", "serve", "--port", str(port), "--data-dir", str(data),
         "--ice-address", "127.0.0.1"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "node.log").read_text()
            time.sleep(0.1)
    secret = json.loads((data / "dev-credentials.json").read_text())["api_secret"]
    yield port, secret
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def as_here(text: str, port: int) -> str:
    return text.replace("127.0.0.1:8765", f"127.0.0.1:{port}")


def run_token_command(secret: str, **changes: str) -> str:
    [command] = [b for b in blocks() if "dockcast token" in b]
    words = shlex.split(command.replace("\\\n", " ").replace("<secret>", secret))
    assert words[0] == ".venv/bin/dockcast"
    words[0] = os.path.join(os.path.dirname(sys.executable), "dockcast")
    for flag, value in changes.items():
        words[words.index(f"--{flag}") + 1] = value
    run = subprocess.run(words, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


async def test_the_readme_first_steps_work_as_written(dev_node):
    port, secret = dev_node
    token = run_token_command(secret)
    assert token.count(".") == 2
    # the browser URL serves the test page
    [url] = re.findall(r"`(http://127\.0\.0\.1:8765/web/test\.html\?[^`]+)`", README)
    assert "room=dock-7" in url
    with urllib.request.urlopen(as_here(url, port).replace("<token>", token), timeout=10) as page:
        assert page.status == 200 and b"DockcastClient" in page.read()
    # the developer's page the README names, on this node's development credentials
    [dev] = re.findall(r"`(http://127\.0\.0\.1:8765/dev)`", README)
    with urllib.request.urlopen(as_here(dev, port), timeout=10) as page:
        assert page.status == 200 and b"/web/dev.js" in page.read()
    # a publisher in the room, then the Python snippet as written
    publisher = Participant(f"ws://127.0.0.1:{port}/ws", token)
    await publisher.connect()
    await publisher.join("dock-7")
    await publisher.publish()
    try:
        viewer_token = run_token_command(secret, identity="seller-1")
        [snippet] = blocks("python")
        script = as_here(snippet, port).replace("<token>", viewer_token)
        run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert run.returncode == 0, run.stderr
        assert "the node offers 2 tracks: 2 m-lines" in run.stdout, run.stdout
    finally:
        await publisher.close()
