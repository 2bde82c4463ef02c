"""Each ``dockcast bench`` scenario, run briefly against a real node (seconds, tiny N).

These prove that the scenarios work end to end and write their reports; no test here
asserts a speed. The node is a ``dockcast serve`` subprocess on a free port with a
temporary data dir; one test lets the harness start its own.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from bench.cli import main
from bench.corpus import CorpusParams, load_or_generate

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
API_KEY = "bench-test"
API_SECRET = secrets.token_hex(32)
CORPUS_SECONDS = "2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("corpus")
    load_or_generate(path, CorpusParams(seconds=float(CORPUS_SECONDS)))
    return path


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    port = _free_port()
    data = tmp_path_factory.mktemp("node")
    log = open(data / "node.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockcast.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data / "data"), "--api-key", API_KEY, "--api-secret", API_SECRET,
         "--ice-address", "127.0.0.1", "--log-level", "warning"],
        cwd=ROOT, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"dockcast serve did not start:\n{(data / 'node.log').read_text()[-2000:]}")
            time.sleep(0.1)
    yield {"url": f"ws://127.0.0.1:{port}/ws", "pid": proc.pid}
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def _bench(tmp_path, corpus_dir, node, *args: str) -> dict:
    out = tmp_path / "results"
    argv = [*args, "--out", str(out), "--corpus-dir", str(corpus_dir),
            "--corpus-seconds", CORPUS_SECONDS, "--settle", "0.2"]
    if node is not None:
        argv += ["--url", node["url"], "--api-key", API_KEY, "--api-secret", API_SECRET,
                 "--server-pid", str(node["pid"])]
    assert main(argv) == 0
    assert (out / "summary.md").exists()
    return json.loads((out / "results.json").read_text())


def _system(data: dict, system: str = "dockcast") -> dict:
    result = data["results"][0]["systems"][system]
    if "error" in result:
        pytest.fail(f"{system} failed in the scenario: {result['error']}")
    return result


def _rows(data: dict, system: str = "dockcast") -> list[dict]:
    return _system(data, system)["rows"]


JANUS = shutil.which("janus") is not None and os.geteuid() == 0


def test_forward_against_dockcast_and_the_baselines(tmp_path, corpus_dir):
    # the harness starts its own node here; Janus runs when it is installed
    data = _bench(tmp_path, corpus_dir, None, "forward", "--sizes", "1,2", "--duration", "0.5",
                  "--baselines", "naive,janus,recording,cascade")
    dock = _rows(data)
    # the same node recording every room: it forwards as well, and its recording is on disk
    recording = _rows(data, "dockcast-recording")
    assert [r["subscribers"] for r in recording] == [1, 2]
    assert all(r["forwarded_packets"] > 0 for r in recording)
    assert list(tmp_path.glob("**/dockcast-recording-data/recordings/RC_*/*.mjr"))
    # two nodes cascaded: publishers on one, subscribers on the other, every packet over
    # the trunk between them
    cascade = _rows(data, "cascade")
    assert [r["subscribers"] for r in cascade] == [1, 2]
    assert all(r["forwarded_packets"] > 0 and r["receiving"] == r["subscribers"] for r in cascade)
    assert [r["subscribers"] for r in dock] == [1, 2]
    assert all(r["forwarded_packets"] > 0 and r["receiving"] == r["subscribers"] for r in dock)
    assert dock[-1]["latency_ms"]["p50"] is not None and dock[-1]["cpu_us_per_packet"] is not None
    # every subscriber read its socket natively (bench.receive): kernel receive stamps
    assert all(r["native_receive"] == r["subscribers"] for r in dock + cascade)
    assert "kernel receive stamp" in dock[-1]["latency_method"]
    if JANUS:
        assert all(r["native_receive"] == r["subscribers"] for r in _rows(data, "janus"))
    naive = _rows(data, "naive")
    assert naive and naive[0]["forwarded_packets"] > 0
    janus = data["results"][0]["systems"]["janus"]
    if JANUS:
        assert _rows(data, "janus")[0]["forwarded_packets"] > 0
    else:
        assert janus["skipped"].startswith("janus")
    assert {"latency_cdf.png", "cpu_per_packet.png", "latency_vs_subscribers.png"} <= set(data["plots"])
    assert data["machine"]["cores"] >= 1 and data["targets"]


def test_forward_with_the_python_receive_path(tmp_path, corpus_dir, node):
    """--receive python: the subscribers read through the transport's hook, as before."""
    data = _bench(tmp_path, corpus_dir, node, "forward", "--sizes", "2", "--duration", "0.5",
                  "--baselines", "none", "--receive", "python")
    row = _rows(data)[0]
    assert row["native_receive"] == 0 and row["receiving"] == 2 and row["forwarded_packets"] > 0
    assert "stamped when read" in row["latency_method"]


def test_connect(tmp_path, corpus_dir, node):
    data = _bench(tmp_path, corpus_dir, node, "connect", "--joins", "2", "--join-interval", "0.1",
                  "--baselines", "none")
    dock = _system(data)
    assert dock["failed"] == 0 and len(dock["joins"]) == 2
    assert dock["summary_ms"]["first_keyframe"]["p50"] > 0


def test_connect_across_the_wan(tmp_path, corpus_dir, node):
    data = _bench(tmp_path, corpus_dir, node, "connect", "--joins", "1", "--baselines", "none",
                  "--wan", "20,1,0")
    dock = _system(data)
    assert dock["failed"] == 0
    # the websocket and the media both cross the emulated 40 ms round trip
    assert dock["summary_ms"]["joined"]["p50"] >= 40


def test_rooms(tmp_path, corpus_dir, node):
    data = _bench(tmp_path, corpus_dir, node, "rooms", "--rooms", "2", "--room-size", "2",
                  "--duration", "1", "--baselines", "none")
    (row,) = _rows(data)
    assert row["rooms"] == 2 and row["subscribers"] == 2 and row["receiving"] == 2


def test_fanout_limit(tmp_path, corpus_dir, node):
    data = _bench(tmp_path, corpus_dir, node, "fanout-limit", "--start", "1", "--max", "2",
                  "--duration", "1", "--max-p99-ms", "10000", "--max-loss-pct", "100",
                  "--baselines", "none")
    dock = _system(data)
    assert [r["subscribers"] for r in dock["rows"]] == [1, 2]
    assert dock["limit"] == 2


def test_messages(tmp_path, corpus_dir, node):
    data = _bench(tmp_path, corpus_dir, node, "messages", "--members", "2", "--senders", "2",
                  "--messages", "40", "--rate", "80", "--drop-every", "0.1", "--down-time", "0.05",
                  "--catch-up", "1", "--baselines", "none")
    dock = _system(data)
    if "skipped" in dock:
        assert "does not support messages" in dock["skipped"]
    else:
        result = dock["result"]
        assert result["sent"] == 40 and result["drops"] > 0
        # what was lost or duplicated is the scenario's finding, reported, not asserted
        assert {"lost", "duplicated", "live_delay_ms"} <= set(result)


def test_soak(tmp_path, corpus_dir):
    # a few seconds of churn against a node the harness starts; the report's structure,
    # not the verdict (a run this short is "too short to tell")
    data = _bench(tmp_path, corpus_dir, None, "soak", "--minutes", "0.1", "--churn-rooms", "2",
                  "--room-size", "2", "--cycle-s", "1", "--hold-s", "0.3", "--cycle-messages", "1",
                  "--sample-s", "0.5", "--drain-s", "0.5", "--baselines", "naive")
    assert data["options"]["baselines"] == []  # the soak runs Dockcast alone
    result = data["results"][0]
    assert result["scenario"] == "soak" and set(result["systems"]) == {"dockcast"}
    dock = _system(data)
    counters = dock["counters"]
    assert counters["cycles"] >= 1 and counters["joined"] >= 2
    assert {"sent", "received", "lost", "join_failed", "cycle_errors"} <= set(counters)
    phases = [s["phase"] for s in dock["samples"]]
    assert phases[0] == "idle" and phases[-2:] == ["end", "drained"] and "churn" in phases
    churn = [s for s in dock["samples"] if s["phase"] == "churn"]
    assert all(s["rss_mib"] > 0 and s["fds"] > 0 and s["threads"] >= 1 and s["tasks"] >= 1
               for s in churn)
    resources = dock["analysis"]["resources"]
    assert set(resources) >= {"rss_mib", "fds", "threads", "tasks"}
    assert all(resources[k]["flat"] is None for k in resources)  # under ten minutes
    assert resources["rss_mib"]["max"] >= resources["rss_mib"]["first"] > 0
    assert "soak.png" in data["plots"] and (tmp_path / "results" / "soak.png").stat().st_size > 0
    live = (tmp_path / "results" / "soak-samples.jsonl").read_text().splitlines()
    assert len(live) == len(dock["samples"])
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "growth per hour" in summary and "Baselines: none" in summary
    assert any(t["target"].startswith("Soak:") for t in data["targets"])
