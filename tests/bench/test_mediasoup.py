"""mediasoup as a third system: what it needs, its npm cache, and a short forwarding run
beside Janus, both on loopback with the same load clients.

The run needs the shared build beside the repository (``../shared/baselines/mediasoup``),
node, npm (once: the modules are cached for the session) and Janus; each part is skipped
with the reason the harness gives when it cannot run here.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from bench.cli import main
from bench.corpus import CorpusParams, load_or_generate
from bench.janus import JanusSystem
from bench.mediasoup import (
    MEDIASOUP_VERSION,
    MediasoupError,
    MediasoupSystem,
    baseline_dir,
    ensure_node_modules,
    installed_version,
    missing,
)

MEDIASOUP_MISSING = missing()


def _fake_modules(cache: pathlib.Path, version: str, names=("mediasoup", "ws", "sdp-transform")) -> None:
    for name in names:
        folder = cache / "node_modules" / name
        folder.mkdir(parents=True)
        (folder / "package.json").write_text(json.dumps({"name": name, "version": version}))


def test_the_baseline_is_found_beside_the_repository():
    repo = pathlib.Path(__file__).resolve().parents[2]
    assert baseline_dir(repo) == repo.parent / "shared" / "baselines" / "mediasoup"


def test_missing_names_the_folder_the_file_or_the_program(tmp_path, monkeypatch):
    assert "does not exist" in missing(tmp_path / "nowhere") and "nowhere" in missing(tmp_path / "nowhere")
    assert missing(tmp_path) == f"the mediasoup baseline has no mediasoup-worker in {tmp_path}"
    (tmp_path / "mediasoup-worker").write_bytes(b"\x7fELF")
    (tmp_path / "server.js").write_text("")
    (tmp_path / "mediasoup-worker").chmod(0o644)
    assert missing(tmp_path).endswith("mediasoup-worker is not executable")
    (tmp_path / "mediasoup-worker").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no node on it
    assert missing(tmp_path) == "node not installed (apt-get install nodejs)"
    system = MediasoupSystem(tmp_path / "cache", folder=tmp_path)
    assert system.skipped == "node not installed (apt-get install nodejs)"


def test_installed_version_needs_all_three_modules(tmp_path):
    assert installed_version(tmp_path) is None
    _fake_modules(tmp_path / "a", MEDIASOUP_VERSION)
    assert installed_version(tmp_path / "a") == MEDIASOUP_VERSION
    _fake_modules(tmp_path / "b", MEDIASOUP_VERSION, names=("mediasoup", "ws"))
    assert installed_version(tmp_path / "b") is None


async def test_a_cache_in_place_needs_no_npm(tmp_path, monkeypatch):
    _fake_modules(tmp_path, MEDIASOUP_VERSION)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert await ensure_node_modules(tmp_path, tmp_path / "npm.log") == tmp_path / "node_modules"


async def test_without_npm_the_install_says_so(tmp_path, monkeypatch):
    _fake_modules(tmp_path, "3.0.0")  # another version: must be installed again
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(MediasoupError, match=r"npm not installed \(apt-get install npm\)"):
        await ensure_node_modules(tmp_path, tmp_path / "npm.log")


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> dict[str, pathlib.Path]:
    """A corpus and an npm cache for this module's runs."""
    corpus = tmp_path_factory.mktemp("corpus")
    load_or_generate(corpus, CorpusParams(seconds=2.0))
    return {"corpus": corpus, "npm": tmp_path_factory.mktemp("mediasoup-npm")}


@pytest.mark.slow
def test_forward_through_janus_and_mediasoup_on_loopback(tmp_path, shared):
    out = tmp_path / "results"
    assert main(["forward", "--sizes", "1,2", "--duration", "0.5", "--baselines", "janus,mediasoup",
                 "--out", str(out), "--corpus-dir", str(shared["corpus"]), "--corpus-seconds", "2",
                 "--settle", "0.2", "--mediasoup-dir", str(shared["npm"])]) == 0
    data = json.loads((out / "results.json").read_text())
    systems = data["results"][0]["systems"]
    how = data["systems"]  # the header: how each system was reached
    assert set(how) == {"dockcast", "janus", "mediasoup"}
    assert all("loopback (127.0.0.1)" in text for text in how.values())
    expected_skip = {"janus": JanusSystem().skipped, "mediasoup": MEDIASOUP_MISSING}
    for name in ("janus", "mediasoup"):
        result = systems[name]
        assert "error" not in result, f"{name}: {result.get('error')}"
        if expected_skip[name] is not None:
            assert result["skipped"] == expected_skip[name]
            continue
        assert "skipped" not in result, f"{name} skipped: {result['skipped']}"
        rows = result["rows"]
        assert [r["subscribers"] for r in rows] == [1, 2]
        # every subscriber received, over 127.0.0.1 (the only address the clients gather)
        assert all(r["forwarded_packets"] > 0 and r["receiving"] == r["subscribers"] for r in rows)
        assert rows[-1]["latency_ms"]["p50"] is not None
    if expected_skip["janus"] is None:
        # Janus on loopback: the shim built into the run's folder, ICE on lo only
        assert (out / "janus-shim" / "getifaddrs_noloop.so").is_file()
        assert 'ice_enforce_list = "lo"' in (out / "janus-conf" / "janus.jcfg").read_text()
    if expected_skip["mediasoup"] is None:
        assert installed_version(shared["npm"]) == MEDIASOUP_VERSION
        assert "worker pid" in (out / "logs" / "mediasoup.log").read_text()

