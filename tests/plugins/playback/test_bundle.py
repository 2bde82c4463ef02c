"""Evidence bundles of real recordings and audit logs: the files and their order, the
standalone verify.py run from the bundle in a bare Python (exit 0; a changed segment
byte exits 1 and names the file), the signed MP4 inside, the other recordings of the
session, and what cannot be bundled."""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import stat
import subprocess
import sys
import zipfile

import pytest

from plugins.audit import verify as verify_module
from plugins.playback import (
    ASSERTION_LABEL,
    BundleError,
    ExportError,
    RecordingNotFound,
    export_bundle,
    media_extension,
    node_credentials,
)
from plugins.recorder import Manifest

from . import evidence

TOOL = {"name": "dockcast export", "version": "test"}


def bundle(ev: evidence.Evidence, out: pathlib.Path, **kwargs):
    return export_bundle(ev.recording, out, audit_root=ev.data / "audit",
                         public_key=ev.public_key, tool=TOOL, **kwargs)


def run_verify(bundle_path: pathlib.Path, key: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    """The bundle's own verify.py, taken out of it and run as README.md says, by a Python
    that sees neither this repository nor its packages beyond ``cryptography`` (-I:
    isolated mode, no script directory or PYTHONPATH on sys.path)."""
    with zipfile.ZipFile(bundle_path) as zf:
        (cwd / "verify.py").write_bytes(zf.read("verify.py"))
    return subprocess.run([sys.executable, "-I", "verify.py", str(bundle_path), "--public-key", key],
                          cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def rebuilt(source: pathlib.Path, dest: pathlib.Path, change: dict[str, bytes]) -> None:
    """A copy of the zip with some members' bytes replaced (a forger rebuilding it)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, change.get(info.filename, zin.read(info.filename)))


@pytest.fixture(scope="module")
def vp8(tmp_path_factory) -> evidence.Evidence:
    return evidence.make(tmp_path_factory.mktemp("data"), "VP8")


@pytest.fixture(scope="module")
def vp8_bundle(vp8, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "evidence.zip"
    return out, bundle(vp8, out)


def test_the_bundle_holds_every_file_in_a_stable_order(vp8, vp8_bundle, tmp_path):
    out, result = vp8_bundle
    segments = sorted(p.name for p in vp8.recording.glob("*.mjr"))
    expected = ["README.md", "public-key.txt", "verify.py", "recording.json", "REC_1.webm",
                "audit/entries.jsonl", "audit/checkpoints.jsonl",
                *(f"segments/REC_1/{name}" for name in segments)]
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == expected == list(result.members)
        assert zf.read("public-key.txt").decode() == vp8.public_key + "\n"
        assert zf.read("verify.py") == pathlib.Path(verify_module.__file__).read_bytes()
        assert zf.read("recording.json") == (vp8.recording / "recording.json").read_bytes()
        assert zf.read("audit/entries.jsonl") == (vp8.audit / "entries.jsonl").read_bytes()
        assert zf.read("audit/checkpoints.jsonl") == (vp8.audit / "checkpoints.jsonl").read_bytes()
        for name in segments:
            assert zf.read(f"segments/REC_1/{name}") == (vp8.recording / name).read_bytes()
        assert all(info.external_attr >> 16 == 0o100600 for info in zf.infolist())
    again = bundle(vp8, tmp_path / "again.zip")
    assert again.members == result.members
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(p.name for p in out.parent.iterdir()) == ["evidence.zip"]  # no temp files left
    assert len(result.media.streams) == 2 and result.media.frames[evidence.VIDEO] == 60
    assert result.c2pa is None and result.session_id == "SE_1" and result.problems == ()


def test_the_bundle_verifies_when_written(vp8_bundle):
    report = vp8_bundle[1].verification
    assert report.ok and report.difference is None
    assert (report.entries, report.covered, report.checkpoints, report.segments) == (6, 6, 2, 2)


def test_the_bundles_verify_py_passes_it_alone_and_a_changed_segment_byte_fails(vp8, vp8_bundle,
                                                                                 tmp_path):
    out = vp8_bundle[0]
    ok = run_verify(out, vp8.public_key, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "2 segment files re-hashed" in ok.stdout
    name = next(m for m in vp8_bundle[1].members if m.startswith("segments/"))
    with zipfile.ZipFile(out) as zf:
        data = bytearray(zf.read(name))
    data[len(data) // 2] ^= 0x01
    rebuilt(out, tmp_path / "changed.zip", {name: bytes(data)})
    changed = run_verify(tmp_path / "changed.zip", vp8.public_key, tmp_path)
    assert changed.returncode == 1
    assert f"segment {name.removeprefix('segments/')}" in changed.stderr
    assert hashlib.sha256(bytes(data)).hexdigest() in changed.stderr


def test_the_readme_says_how_to_check_and_why_the_key_comes_from_elsewhere(vp8_bundle):
    with zipfile.ZipFile(vp8_bundle[0]) as zf:
        readme = " ".join(zf.read("README.md").decode().split())  # one line: wrapping aside
    assert "pip install cryptography" in readme
    assert 'python3 verify.py evidence.zip --public-key "KEY"' in readme
    assert '"$(cat public-key.txt)"' in readme
    assert "another channel" in readme and "replace that file with a key of their own" in readme
    assert "`REC_1.webm` plays in any common player" in readme
    assert "WebM files carry no C2PA manifest" in readme
    assert "| inspection session | `SE_1` |" in readme and "| room | `dock-7` |" in readme
    assert "| shipment | — |" in readme
    assert "janus-pp-rec segments/REC_1/" in readme


def test_an_h264_recording_bundles_a_c2pa_signed_mp4(tmp_path):
    import c2pa

    ev = evidence.make(tmp_path / "data", "H264")
    result = bundle(ev, tmp_path / "h264.zip", credentials=node_credentials(ev.data))
    assert "REC_1.mp4" in result.members and result.verification.ok
    with zipfile.ZipFile(tmp_path / "h264.zip") as zf:
        mp4 = zf.read("REC_1.mp4")
        readme = " ".join(zf.read("README.md").decode().split())
        assert zf.getinfo("REC_1.mp4").compress_type == zipfile.ZIP_STORED
    reader = c2pa.Reader("video/mp4", io.BytesIO(mp4))
    ours = next(a["data"] for a in reader.get_active_manifest()["assertions"]
                if a["label"] == ASSERTION_LABEL)
    assert ours["session_id"] == "SE_1" and ours["checkpoint"]["size"] == 6
    assert result.c2pa["label"] == reader.get_active_manifest()["label"]
    assert "signingCredential.untrusted" in readme and "assertion.bmffHash.mismatch" in readme


def test_segments_of_the_sessions_other_recordings_come_too(tmp_path):
    data = tmp_path / "data"
    first, second = evidence.record(data, recording_id="REC_1"), evidence.record(data, recording_id="REC_2")
    evidence.log_session(data, [first, second])
    ev = evidence.of(data, first)
    result = bundle(ev, tmp_path / "b.zip")
    own = [m for m in result.members if m.startswith("segments/REC_1/")]
    other = [m for m in result.members if m.startswith("segments/REC_2/")]
    assert len(own) == len(other) == 2
    assert result.members.index(own[-1]) < result.members.index(other[0])
    assert result.verification.ok and result.verification.segments == 4


def test_a_segment_the_log_names_that_is_gone_is_said_and_the_check_fails(tmp_path):
    data = tmp_path / "data"
    first, second = evidence.record(data, recording_id="REC_1"), evidence.record(data, recording_id="REC_2")
    evidence.log_session(data, [first, second])
    gone = sorted(second.glob("*.mjr"))[0]
    gone.unlink()
    ev = evidence.of(data, first)
    result = bundle(ev, tmp_path / "b.zip")
    assert any(f"REC_2/{gone.name}, named by the audit log, is not in" in p for p in result.problems)
    assert not result.verification.ok
    assert result.verification.difference.file == f"REC_2/{gone.name}"


def test_a_live_session_bundles_what_is_written_and_says_what_is_not_covered(tmp_path):
    data = tmp_path / "data"
    recording = evidence.record(data)
    log = evidence.log_session(data, [recording], close=False)
    log.append("verdict", {"verdict": "accepted", "refund": 0, "note": "", "by": "seller"},
               evidence.media.START + 20)
    ev = evidence.of(data, recording)
    result = bundle(ev, tmp_path / "b.zip")
    log.release()
    assert not result.verification.ok
    assert "not covered by a checkpoint" in str(result.verification.difference)


def test_h264_beside_vp8_bundles_without_media(tmp_path):
    data = tmp_path / "data"
    recording = evidence.media.record(data / "recordings", {
        "alice/camera/video": [evidence.media.video(1, [], codec="H264")],
        "bob/camera/video": [evidence.media.video(1, [], codec="VP8", ssrc=0x3333, track_id="TR_v2",
                                                  identity="bob")]})
    evidence.log_session(data, [recording])
    assert media_extension(Manifest.load(recording)) is None
    ev = evidence.of(data, recording)
    result = bundle(ev, tmp_path / "b.zip")
    assert result.media is None and not any(m.endswith((".mp4", ".webm")) for m in result.members)
    assert "holds H.264 and VP8" in result.problems[0]
    assert result.verification.ok


def test_no_session_no_audit_log_and_no_recording_are_refused_by_name(tmp_path):
    data = tmp_path / "data"
    recording = evidence.record(data)
    ev = evidence.Evidence(data, recording, "A" * 43 + "=")
    with pytest.raises(BundleError, match=r"no audit log of session SE_1 \(recording REC_1\) in"):
        bundle(ev, tmp_path / "b.zip")
    manifest = Manifest.load(recording)
    manifest.fields.pop("session_id")
    manifest.save(recording)
    with pytest.raises(BundleError, match="recording REC_1 names no inspection session"):
        bundle(ev, tmp_path / "b.zip")
    with pytest.raises(RecordingNotFound):
        export_bundle(data / "recordings" / "NOPE", tmp_path / "b.zip", audit_root=data / "audit",
                      public_key=ev.public_key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_an_unwritable_output_leaves_nothing(vp8, tmp_path):
    with pytest.raises(ExportError, match="cannot write"):
        bundle(vp8, tmp_path / "missing-dir" / "b.zip")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(("rid", "file"), [
    ("..", "keys/audit-ed25519.pem"),
    ("REC_1", "../../keys/audit-ed25519.pem"),
    ("REC_1", "/etc/passwd"),
])
def test_a_log_naming_files_outside_the_recordings_never_brings_them_in(tmp_path, rid, file):
    """A changed log cannot make the export copy the node's private key into a bundle."""
    data = tmp_path / "data"
    recording = evidence.record(data)
    evidence.log_session(data, [recording])
    entries = data / "audit" / evidence.SESSION / "entries.jsonl"
    line = json.dumps({"file": file, "i": 6, "packets": 1, "recording_id": rid, "sha256": "0" * 64,
                       "size": 1, "track": "x", "ts": 1.0, "type": "segment"},
                      sort_keys=True, separators=(",", ":"))
    entries.write_bytes(entries.read_bytes() + line.encode() + b"\n")
    result = bundle(evidence.of(data, recording), tmp_path / "b.zip")
    assert not any("keys" in m or "passwd" in m for m in result.members)
    assert any(f"segment {rid}/{file}, named by the audit log, is not in" in p for p in result.problems)
    assert not result.verification.ok
