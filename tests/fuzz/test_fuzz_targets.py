"""The fuzz targets of ``scripts/fuzz.py``, briefly: each target over its committed
seed corpus, every recorded crash (``tests/data/fuzz/crashes/``) and a few thousand
atheris-free random mutations, plus one short atheris run through the script.

The targets check their own contracts (what may be raised; for the Cython twins, that
the compiled and the pure module agree) and raise ``ContractViolation`` otherwise.
The twin targets are marked ``twin``, so ``make test`` runs them in both modes.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "fuzz.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("dockcast_fuzz_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fuzz = _load_script()
MUTATIONS = 2000


def target_param(name: str):
    marks = [pytest.mark.twin] if fuzz.TARGETS[name].twin else []
    return pytest.param(name, marks=marks, id=name)


TARGET_PARAMS = [target_param(name) for name in fuzz.TARGETS]
#: Crashes whose fix belongs to a module being changed by someone else: reported, xfail
#: until fixed (strict, so the fix shows up as XPASS and this entry must go).
OPEN_CRASHES: dict[str, str] = {}


def crash_param(path: Path):
    marks = [pytest.mark.twin] if fuzz.TARGETS[path.name.split("-")[0]].twin else []
    if path.name in OPEN_CRASHES:
        issue = OPEN_CRASHES[path.name]
        marks.append(pytest.mark.xfail(strict=True, raises=fuzz.KnownIssue,
                                       reason=f"{issue}: {fuzz.KNOWN_ISSUES[issue]}"))
    return pytest.param(path, marks=marks, id=path.name)


CRASH_PARAMS = [crash_param(path) for path in fuzz.crash_files()]


def run_all(name: str, inputs, known_ok: bool = True) -> None:
    """Run target ``name`` on each input; a known open issue (``fuzz.KNOWN_ISSUES``)
    is tolerated in the corpus and mutation passes, which test everything else."""
    for data in inputs:
        try:
            fuzz.TARGETS[name].run(data)
        except fuzz.KnownIssue:
            if not known_ok:
                raise
        except Exception as exc:
            raise AssertionError(f"{name} failed on {data[:200]!r}: {exc}") from exc


@pytest.mark.parametrize("name", TARGET_PARAMS)
def test_committed_corpus_passes(name):
    files = fuzz.corpus_files(name, committed_only=True)
    assert files, f"no seeds in tests/data/fuzz/{name}/ (scripts/fuzz.py --write-seeds)"
    run_all(name, (p.read_bytes() for p in files))


@pytest.mark.parametrize("name", TARGET_PARAMS)
def test_random_mutations_pass(name):
    seeds = [p.read_bytes() for p in fuzz.corpus_files(name, committed_only=True)]
    run_all(name, fuzz.mutations(seeds, MUTATIONS, seed=8, max_len=fuzz.TARGETS[name].max_len))


@pytest.mark.parametrize("path", CRASH_PARAMS)
def test_recorded_crash_is_fixed(path):
    """Every input a campaign found crashing replays without a contract violation."""
    run_all(path.name.split("-")[0], [path.read_bytes()], known_ok=False)


def test_seed_corpus_stays_small():
    for name in fuzz.TARGETS:
        files = fuzz.corpus_files(name, committed_only=True)
        assert len(files) <= fuzz.MAX_CORPUS_FILES, name
    committed = [p for name in fuzz.TARGETS for p in fuzz.corpus_files(name, committed_only=True)]
    committed += fuzz.crash_files()
    assert sum(p.stat().st_size for p in committed) < 200_000


@pytest.mark.twin
def test_both_twins_are_run_when_built():
    """The agreement check is real: with the extensions built, each twin target runs
    the public module and the other twin."""
    m = fuzz.modules()
    for public, pure, compiled in ((m.rtp, m.rtp_pure, m.rtp_compiled),
                                   (m.rtcp, m.rtcp_pure, m.rtcp_compiled),
                                   (m.vp8, m.vp8_pure, m.vp8_compiled)):
        if compiled is None:
            pytest.skip("the Cython extensions are not built")
        assert {id(mod) for mod in fuzz.twins(public, pure, compiled)} == {id(pure), id(compiled)}


def test_a_disagreement_is_a_violation():
    with pytest.raises(fuzz.ContractViolation):
        fuzz.agree("x", [("ok", 1), ("raised", "MalformedPacket")])
    with pytest.raises(fuzz.ContractViolation):
        fuzz.outcome((ValueError,), lambda: [][1])


def test_atheris_runs_a_target(tmp_path):
    pytest.importorskip("atheris")
    env = {k: v for k, v in os.environ.items() if k != "DOCKCAST_PUREPYTHON"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "vp8", "--runs", "1500", "--quiet",
         "--corpus", str(tmp_path / "corpus"), "--crashes", str(tmp_path / "crashes")],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^fuzz vp8 \(compiled\): 1500 inputs .* crashes 0$", proc.stdout, re.M), proc.stdout
    assert any((tmp_path / "corpus").iterdir())  # coverage guidance grew the corpus
