"""plugins.audit.verify: the offline verifier finds every change and names it.

Each tamper test changes one thing in a real session (``conftest.session``: 11 entries,
checkpoints at 4, 9 and 11, two segment files) and checks that the verifier exits 1 and
names the entry, checkpoint or file. The last tests run the verifier as the evidence
bundle ships it: a copy of the one file, in a Python where every other package of the
server (aiortc, msgpack, ..., dockcast) fails to import.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plugins.audit.verify as verify_module
from plugins.audit import AuditLog, Checkpoint, verify_path
from plugins.audit.verify import canonical_json

from .conftest import T0, make_session

VERIFY_PY = Path(verify_module.__file__)
# Everything the server needs that the verifier must not: importing these fails in the
# subprocess runs below.
BLOCKED = ("aiortc", "aioice", "av", "msgpack", "jwt", "websockets", "numpy", "prometheus_client",
           "uvloop", "signalling", "sfu", "dockcast", "bench")


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def _write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _line_of(data: bytes, pos: int) -> int:
    """The index of the line that byte ``pos`` belongs to (its newline included)."""
    return data[:pos].count(b"\n")


def _names(report, index: int) -> bool:
    d = report.difference
    return d.what == "entry" and d.index <= index <= (d.last if d.last is not None else d.index)


def test_a_clean_session_verifies(session):
    report = verify_path(session.path, session.public_key)
    assert report.ok and report.difference is None, report.difference
    assert (report.entries, report.checkpoints, report.covered, report.segments) == (11, 3, 11, 2)
    assert report.notes == []


def test_flipping_any_byte_of_any_entry_line_is_found(session):
    data = session.entries.read_bytes()
    for pos in range(len(data)):
        session.entries.write_bytes(data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1:])
        report = verify_path(session.path, session.public_key)
        assert not report.ok and _names(report, _line_of(data, pos)), (pos, report.difference)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_replacing_any_byte_with_any_other_is_found(session, data):
    original = session.entries.read_bytes()
    pos = data.draw(st.integers(0, len(original) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[pos]))
    try:
        session.entries.write_bytes(original[:pos] + bytes([byte]) + original[pos + 1:])
        report = verify_path(session.path, session.public_key)
        assert not report.ok
        # a new newline splits a line: either half may be the one named
        assert _names(report, _line_of(original, pos)) or (
            byte == 0x0A and _names(report, _line_of(original, pos) + 1)), report.difference
    finally:
        session.entries.write_bytes(original)


def test_deleting_any_entry_is_found(session):
    lines = _lines(session.entries)
    for k in range(len(lines)):
        _write_lines(session.entries, lines[:k] + lines[k + 1:])
        report = verify_path(session.path, session.public_key)
        assert not report.ok and _names(report, k), (k, report.difference)
        if k < len(lines) - 1:
            assert "its index i is" in str(report.difference)


def test_reordering_two_entries_is_found(session):
    lines = _lines(session.entries)
    for a, b in ((1, 2), (3, 7), (5, 6), (9, 10)):
        swapped = list(lines)
        swapped[a], swapped[b] = swapped[b], swapped[a]
        _write_lines(session.entries, swapped)
        report = verify_path(session.path, session.public_key)
        assert not report.ok and _names(report, a), report.difference


def test_renumbered_entries_after_a_deletion_are_found_by_the_root(session):
    objs = [json.loads(line) for line in _lines(session.entries)]
    del objs[5]
    for i, obj in enumerate(objs):
        obj["i"] = i
    _write_lines(session.entries, [canonical_json(obj) for obj in objs])
    report = verify_path(session.path, session.public_key)
    assert not report.ok and _names(report, 5)
    assert "Merkle root of the first 9 entries does not match checkpoint 2" in str(report.difference)


def test_an_entry_appended_after_the_last_checkpoint_is_found(session):
    extra = canonical_json({"i": 11, "ts": T0 + 11, "type": "verdict", "verdict": "resellable",
                            "refund": 0, "note": "", "by": "x"})
    with open(session.entries, "ab") as f:
        f.write(extra + b"\n")
    report = verify_path(session.path, session.public_key)
    assert not report.ok and report.difference.what == "entry" and report.difference.index == 11
    assert "not covered by a checkpoint" in str(report.difference)
    assert "normal after a crash" in str(report.difference)
    lenient = verify_path(session.path, session.public_key, allow_uncovered_tail=True)
    assert lenient.ok and lenient.covered == 11 and lenient.entries == 12
    assert any("entry 11: not covered" in note for note in lenient.notes)


def test_a_crashed_session_verifies_up_to_its_last_checkpoint(data_dir, signer):
    session = make_session(data_dir, signer, close=False)
    with open(session.entries, "ab") as f:
        f.write(b'{"i":10,"ts":1')  # the torn line of a write the crash interrupted
    report = verify_path(session.path, session.public_key)
    assert not report.ok and str(report.difference).startswith("entry 9: not covered")
    lenient = verify_path(session.path, session.public_key, allow_uncovered_tail=True)
    assert lenient.ok and lenient.covered == 9
    assert any("incomplete line of 14 bytes" in note for note in lenient.notes)


def test_truncating_the_log_below_the_last_checkpoint_is_found(session):
    lines = _lines(session.entries)
    for keep in (10, 9, 5, 1):
        _write_lines(session.entries, lines[:keep])
        report = verify_path(session.path, session.public_key)
        assert not report.ok and report.difference.what == "entry", keep
        assert report.difference.index == keep and "truncated" in str(report.difference)
    session.entries.write_bytes(b"")
    assert str(verify_path(session.path, session.public_key).difference) == \
        "the log: entries.jsonl holds no complete entry"


def _edit_checkpoint(session, number: int, **change) -> None:
    lines = _lines(session.checkpoints)
    obj = json.loads(lines[number - 1])
    obj.update(change)
    lines[number - 1] = canonical_json(obj)
    _write_lines(session.checkpoints, lines)


@pytest.mark.parametrize("change", [
    {"size": 8}, {"size": 10}, {"root": "00" * 32}, {"ts": T0},
    {"signature": "A" * 86 + "=="}, {"session_id": "insp-2"},
])
def test_changing_a_checkpoint_is_found(session, change):
    _edit_checkpoint(session, 2, **change)
    report = verify_path(session.path, session.public_key)
    assert not report.ok and report.difference.what == "checkpoint" and report.difference.index == 2
    assert "signature does not verify" in str(report.difference)


def test_a_checkpoint_signed_by_another_key_is_refused_and_named(session):
    other = Ed25519PrivateKey.generate()
    entries = [json.loads(line) for line in _lines(session.entries)]
    good = Checkpoint.parse(json.loads(_lines(session.checkpoints)[2]))
    forged = Checkpoint.sign("insp-1", 11, good.root, T0 + 99, other)
    _write_lines(session.checkpoints, _lines(session.checkpoints)[:2] + [canonical_json(forged.to_json())])
    report = verify_path(session.path, session.public_key)
    assert str(report.difference) == f"checkpoint 3: signed by another key ({forged.key}), not the given one"
    assert len(entries) == 11
    # the key field claiming the right key does not help a forger
    _edit_checkpoint(session, 3, key=session.public_key)
    assert "signature does not verify" in str(verify_path(session.path, session.public_key).difference)


def test_a_whole_log_signed_by_another_key_is_refused(tmp_path):
    session = make_session(tmp_path / "d", Ed25519PrivateKey.generate())
    expected = Ed25519PrivateKey.generate()
    from plugins.audit import public_key_text

    report = verify_path(session.path, public_key_text(expected))
    assert not report.ok and str(report.difference).startswith("checkpoint 1: signed by another key")


def test_reordered_or_malformed_checkpoints_are_found(session):
    lines = _lines(session.checkpoints)
    _write_lines(session.checkpoints, [lines[1], lines[0], lines[2]])
    report = verify_path(session.path, session.public_key)
    assert str(report.difference).startswith("checkpoint 2: its size 4 does not grow past")
    _write_lines(session.checkpoints, [lines[0], b"{not json", lines[2]])
    assert str(verify_path(session.path, session.public_key).difference).startswith(
        "checkpoint 2: not a checkpoint")
    session.checkpoints.unlink()  # no checkpoint at all: nothing is covered
    report = verify_path(session.path, session.public_key)
    assert str(report.difference).startswith("entries 0-10: not covered by a checkpoint")


def test_flipping_any_byte_of_a_segment_file_is_found(session):
    segment = session.segments[1]
    data = segment.read_bytes()
    for pos in range(0, len(data), 7):
        segment.write_bytes(data[:pos] + bytes([data[pos] ^ 0x80]) + data[pos + 1:])
        report = verify_path(session.path, session.public_key)
        assert not report.ok
        assert str(report.difference).startswith(
            "segment rec-1/video-1-0002.mjr (entry 6): its SHA-256 is"), pos
    segment.write_bytes(data + b"x")
    assert "its size is 309 bytes, entry 6 says 308" in str(verify_path(session.path, session.public_key).difference)


def test_a_missing_segment_file_is_found(session):
    session.segments[0].unlink()
    report = verify_path(session.path, session.public_key)
    assert not report.ok and report.difference.what == "segment" and report.difference.index == 4
    assert str(report.difference).startswith("segment rec-1/video-1-0001.mjr (entry 4): missing")
    assert str(session.segments[0]) in str(report.difference)  # where it was looked for


def test_segments_are_found_in_a_recordings_directory_given_or_beside_the_log(session, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.move(session.data_dir / "recordings", moved)
    assert not verify_path(session.path, session.public_key).ok
    assert verify_path(session.path, session.public_key, recordings=str(moved)).ok
    shutil.copytree(moved, session.path / "segments")  # the bundle layout, unpacked
    assert verify_path(session.path, session.public_key).ok


def test_a_segment_name_that_leaves_the_recordings_directory_is_refused(data_dir, signer):
    log = AuditLog.create(data_dir / "audit", "insp-9", signer, T0)
    secret = data_dir / "keys" / "audit-ed25519.pem"
    import hashlib

    content = secret.read_bytes()
    log.append("segment", {"recording_id": "..", "track": "t", "file": "keys/audit-ed25519.pem",
                           "sha256": hashlib.sha256(content).hexdigest(), "size": len(content),
                           "packets": 0}, T0)
    log.close(T0)
    from plugins.audit import public_key_text

    report = verify_path(log.directory, public_key_text(signer))
    assert str(report.difference) == \
        "segment ../keys/audit-ed25519.pem (entry 1): its name is not a plain relative path"


def make_bundle(session, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.write(session.entries, "audit/entries.jsonl")
        z.write(session.checkpoints, "audit/checkpoints.jsonl")
        for segment in session.segments:
            z.write(segment, f"segments/rec-1/{segment.name}")
        z.writestr("public-key.txt", session.public_key + "\n")
        z.write(VERIFY_PY, "verify.py")
        z.writestr("README.md", "how to verify\n")
    return path


def test_an_evidence_bundle_verifies_and_its_changes_are_found(session, tmp_path):
    bundle = make_bundle(session, tmp_path / "evidence.zip")
    shutil.rmtree(session.data_dir / "recordings")  # the bundle needs nothing outside it
    report = verify_path(bundle, session.public_key)
    assert report.ok and report.segments == 2
    # a changed segment inside the bundle (stored, so the CRC catches it first)
    data = bundle.read_bytes()
    at = data.index(b"MJR00002" + bytes(300)) + 100
    bundle.write_bytes(data[:at] + b"\x01" + data[at + 1:])
    report = verify_path(bundle, session.public_key)
    assert str(report.difference).startswith("segment rec-1/video-1-0002.mjr (entry 6): unreadable or damaged")
    # a bundle rebuilt with a changed segment (a forger recomputes the CRC)
    with zipfile.ZipFile(bundle, "w") as z:
        z.write(session.entries, "audit/entries.jsonl")
        z.write(session.checkpoints, "audit/checkpoints.jsonl")
        z.writestr("segments/rec-1/video-1-0001.mjr", b"MJR00002" + bytes(range(200)))
        z.writestr("segments/rec-1/video-1-0002.mjr", b"MJR00002" + bytes(299) + b"\x01")
    assert str(verify_path(bundle, session.public_key).difference).startswith(
        "segment rec-1/video-1-0002.mjr (entry 6): its SHA-256 is")


@pytest.mark.parametrize("make, match", [
    (lambda tmp: tmp / "nothing-here", "no entries.jsonl"),
    (lambda tmp: tmp, "no entries.jsonl"),
    (lambda tmp: (tmp / "x.zip").write_bytes(b"PK not a zip") and tmp / "x.zip", "not a readable zip"),
])
def test_unreadable_input_raises(tmp_path, session, make, match):
    with pytest.raises(verify_module.UnreadableInput, match=match):
        verify_path(make(tmp_path), session.public_key)
    with pytest.raises(verify_module.InvalidPublicKey):
        verify_path(session.path, "nope")


# --- as a program: exit statuses, and the standalone file in a bare Python -------------

BLOCKER = textwrap.dedent(f"""
    import sys
    BLOCKED = {BLOCKED!r}
    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError("blocked in this test: " + name)
    sys.meta_path.insert(0, Blocker())
""")


def _run(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + code, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def _standalone(tmp_path: Path) -> Path:
    copy = tmp_path / "bundle-copy" / "verify.py"
    copy.parent.mkdir()
    shutil.copy(VERIFY_PY, copy)
    return copy


def test_the_standalone_file_runs_in_a_bare_python(session, tmp_path):
    copy = _standalone(tmp_path)
    code = "import runpy; sys.argv = ['verify.py'] + sys.argv[1:]; runpy.run_path('verify.py', run_name='__main__')"
    ok = _run(code, str(session.path), "--public-key", session.public_key, cwd=copy.parent)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "verified: 11 entries, 11 covered by 3 signed checkpoints, 2 segment files re-hashed"
    session.segments[0].write_bytes(b"changed")
    bad = _run(code, str(session.path), "--public-key", session.public_key, cwd=copy.parent)
    assert bad.returncode == 1
    assert bad.stderr.startswith("verify.py: segment rec-1/video-1-0001.mjr (entry 4): its size is 7 bytes")
    usage = _run(code, str(session.path), cwd=copy.parent)
    assert usage.returncode == 2 and "--public-key" in usage.stderr
    key = _run(code, str(session.path), "--public-key", "AAAA", cwd=copy.parent)
    assert key.returncode == 2 and "decodes to 3 bytes" in key.stderr
    missing = _run(code, str(tmp_path / "nope"), "--public-key", session.public_key, cwd=copy.parent)
    assert missing.returncode == 2 and "no entries.jsonl" in missing.stderr


def test_the_package_module_imports_nothing_of_the_server(session, tmp_path):
    repo = Path(__file__).resolve().parents[3]
    code = ("import plugins.audit.verify as v, plugins.audit as a; "
            "sys.exit(v.main(sys.argv[1:]))")
    done = _run(code, str(session.path), "--public-key", session.public_key, cwd=repo)
    assert done.returncode == 0, done.stderr
    bundle = make_bundle(session, tmp_path / "evidence.zip")
    lines = _lines(session.entries)
    _write_lines(session.entries, lines[:3] + [lines[3].replace(b'"chat"', b'"chit"')] + lines[4:])
    changed = _run(code, str(session.path), "--public-key", session.public_key, cwd=repo)
    assert changed.returncode == 1
    assert "entries 0-3: the Merkle root of the first 4 entries does not match checkpoint 1 (size 4)" \
        in changed.stderr
    done = _run(code, str(bundle), "--public-key", session.public_key, cwd=repo)
    assert done.returncode == 0, done.stderr
