"""``dockcast export``: exit statuses, where recordings are looked for, the progress bar,
C2PA on MP4 exports and ``--bundle``."""

from __future__ import annotations

import os
import pathlib
import pty
import subprocess
import sys
import zipfile

import c2pa
import pytest

from dockcast import cli, export_cli
from plugins.audit import load_or_create_signing_key
from plugins.playback import node_credentials
from tests.plugins.playback import evidence, media

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> pathlib.Path:
    """A data directory with one VP8 + Opus recording, ``REC_1``."""
    data = tmp_path_factory.mktemp("data")
    media.record(data / "recordings", {"alice/camera/video": [media.video(1, [0.5])],
                                       "alice/microphone/audio": [media.audio(1, [0.5])]})
    return data


def test_export_writes_the_file_and_says_what_is_in_it(data_dir, tmp_path, capsys):
    out = tmp_path / "rec.webm"
    assert cli.main(["export", "REC_1", "--out", str(out), "--data-dir", str(data_dir)]) == 0
    printed = capsys.readouterr()
    assert out.stat().st_size > 0
    assert f"{out}: webm, 1.0" in printed.out
    assert "alice/camera/video: video/VP8 320x240, 30 frames" in printed.out
    assert printed.err == ""


def test_data_dir_from_the_environment_and_recordings_dir(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKCAST_DATA_DIR", str(data_dir))
    assert export_cli.main(["REC_1", "--out", str(tmp_path / "a.webm")]) == 0
    monkeypatch.setenv("DOCKCAST_DATA_DIR", str(tmp_path / "elsewhere"))
    assert export_cli.main(["REC_1", "--out", str(tmp_path / "b.webm"),
                            "--recordings-dir", str(data_dir / "recordings")]) == 0
    assert (tmp_path / "a.webm").exists() and (tmp_path / "b.webm").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["NOPE", "--out", "x.webm"], "no recording NOPE in"),
    (["../REC_1", "--out", "x.webm"], "'../REC_1' is not a recording id"),
    (["REC_1", "--out", "x.avi"], "the extension must be one of .webm, .mp4, .ogg"),
])
def test_usage_and_unknown_recordings_exit_2(data_dir, tmp_path, capsys, argv, message):
    argv = [a if a != "x.webm" and a != "x.avi" else str(tmp_path / a) for a in argv]
    assert export_cli.main([*argv, "--data-dir", str(data_dir)]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_missing_out_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        export_cli.main(["REC_1"])
    assert info.value.code == 2
    assert "--out" in capsys.readouterr().err


def test_a_recording_that_cannot_go_into_the_container_exits_1(data_dir, tmp_path, capsys):
    assert export_cli.main(["REC_1", "--out", str(tmp_path / "x.mp4"),
                            "--data-dir", str(data_dir)]) == 1
    err = capsys.readouterr().err
    assert ".mp4 (mp4) cannot hold video/VP8" in err and "use .webm" in err
    assert export_cli.main(["REC_1", "--out", str(tmp_path / "x.ogg"),
                            "--data-dir", str(data_dir)]) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_recording_with_no_frame_exits_1(tmp_path, capsys):
    directory = media.record(tmp_path / "recordings", {"alice/microphone/audio": [media.audio(0.2, [])]})
    for segment in directory.glob("*.mjr"):
        segment.write_bytes(segment.read_bytes()[:30])  # the header only, torn
    assert export_cli.main(["REC_1", "--out", str(tmp_path / "x.webm"),
                            "--data-dir", str(tmp_path)]) == 1
    assert "has no frame to export" in capsys.readouterr().err


def test_progress_bar_only_on_a_terminal(data_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100", "TERM": "xterm"}
    argv = [sys.executable, "-m", "dockcast.export_cli", "REC_1", "--data-dir", str(data_dir)]
    piped = subprocess.run([*argv, "--out", str(tmp_path / "piped.webm")], env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert piped.returncode == 0 and piped.stderr == ""
    master, slave = pty.openpty()
    with subprocess.Popen([*argv, "--out", str(tmp_path / "tty.webm")], env=env,
                          stdout=subprocess.DEVNULL, stderr=slave) as proc:
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        assert proc.wait(timeout=60) == 0
    os.close(master)
    assert b"exporting" in shown


# --- C2PA on MP4, --bundle --------------------------------------------------------------

@pytest.fixture(scope="module")
def h264_data(tmp_path_factory) -> evidence.Evidence:
    """A data directory with an H.264 + Opus recording REC_1 and its session's audit log."""
    return evidence.make(tmp_path_factory.mktemp("data"), "H264")


def _manifest(path: pathlib.Path) -> dict:
    with open(path, "rb") as f:
        return c2pa.Reader("video/mp4", f).get_active_manifest()


def test_an_mp4_export_is_c2pa_signed_with_the_node_certificate(h264_data, tmp_path, capsys):
    out = tmp_path / "rec.mp4"
    assert export_cli.main(["REC_1", "--out", str(out), "--data-dir", str(h264_data.data)]) == 0
    printed = capsys.readouterr().out
    assert ("C2PA manifest urn:c2pa:" in printed and "session SE_1, the checkpoint of 6 entries; "
            "signed by Dockcast node C2PA signer" in printed)
    assert _manifest(out)["signature_info"]["common_name"] == "Dockcast node C2PA signer"
    assert (h264_data.data / "keys" / "c2pa-signing.pem").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.mp4"]


def test_c2pa_credentials_from_the_command_line(h264_data, tmp_path, capsys):
    deployment = node_credentials(tmp_path / "their-ca")  # a chain and key of someone else's
    (tmp_path / "chain.pem").write_bytes(deployment.chain_pem)
    (tmp_path / "signer.key").write_bytes(deployment.key_pem)
    out = tmp_path / "rec.mp4"
    assert export_cli.main(["REC_1", "--out", str(out), "--data-dir", str(h264_data.data),
                            "--c2pa-cert", str(tmp_path / "chain.pem"),
                            "--c2pa-key", str(tmp_path / "signer.key")]) == 0
    signed = _manifest(out)["signature_info"]["cert_serial_number"]
    assert signed == str(deployment.certificate.serial_number)
    (tmp_path / "signer.key").write_bytes(node_credentials(tmp_path / "other").key_pem)
    assert export_cli.main(["REC_1", "--out", str(tmp_path / "no.mp4"), "--data-dir",
                            str(h264_data.data), "--c2pa-cert", str(tmp_path / "chain.pem"),
                            "--c2pa-key", str(tmp_path / "signer.key")]) == 1
    assert "the private key is not the first certificate's" in capsys.readouterr().err
    assert not (tmp_path / "no.mp4").exists()


def test_no_c2pa_and_webm_exports_carry_no_manifest(h264_data, data_dir, tmp_path, capsys):
    out = tmp_path / "plain.mp4"
    assert export_cli.main(["REC_1", "--out", str(out), "--data-dir", str(h264_data.data),
                            "--no-c2pa"]) == 0
    with pytest.raises(c2pa.C2paError):
        _manifest(out)
    assert "C2PA" not in capsys.readouterr().out
    assert export_cli.main(["REC_1", "--out", str(tmp_path / "x.webm"), "--data-dir",
                            str(data_dir)]) == 0
    assert "no C2PA manifest: C2PA signs MP4 exports only" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["--out", "x.zip"], "a .zip is an evidence bundle; add --bundle"),
    (["--out", "x.webm", "--bundle"], "an evidence bundle (--bundle) is a .zip"),
    (["--out", "x.mp4", "--c2pa-cert", "c.pem"], "--c2pa-cert and --c2pa-key go together"),
])
def test_bundle_and_c2pa_usage_errors_exit_2(h264_data, tmp_path, capsys, argv, message):
    argv = [str(tmp_path / a) if a.startswith("x.") else a for a in argv]
    assert export_cli.main(["REC_1", *argv, "--data-dir", str(h264_data.data)]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bundle_writes_a_verified_zip_and_says_what_is_in_it(h264_data, tmp_path, capsys):
    out = tmp_path / "evidence.zip"
    assert cli.main(["export", "REC_1", "--out", str(out), "--bundle",
                     "--data-dir", str(h264_data.data)]) == 0
    printed = capsys.readouterr()
    assert f"{out}: evidence bundle of recording REC_1, session SE_1, 9 files" in printed.out
    assert "REC_1.mp4: mp4, 2.0" in printed.out and "C2PA manifest urn:c2pa:" in printed.out
    assert "verified: 6 entries, 6 covered by 2 signed checkpoints, 2 segment files re-hashed" \
        in printed.out
    assert printed.err == ""
    with zipfile.ZipFile(out) as zf:
        assert zf.read("public-key.txt").decode().strip() == h264_data.public_key


def test_bundle_without_the_nodes_key_or_audit_log_exits_1(data_dir, tmp_path, capsys):
    argv = ["REC_1", "--out", str(tmp_path / "b.zip"), "--bundle"]
    assert export_cli.main([*argv, "--data-dir", str(data_dir)]) == 1
    assert "no audit signing key at" in capsys.readouterr().err
    assert not (data_dir / "keys" / "audit-ed25519.pem").exists()  # not made by a bundle
    keyed = tmp_path / "keyed"
    load_or_create_signing_key(keyed)
    assert export_cli.main([*argv, "--data-dir", str(keyed),
                            "--recordings-dir", str(data_dir / "recordings")]) == 1
    assert "no audit log of session SE_1 (recording REC_1)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyed"]


def test_bundle_of_a_live_session_warns_that_it_does_not_verify_yet(tmp_path, capsys):
    data = tmp_path / "data"
    recording = evidence.record(data)
    log = evidence.log_session(data, [recording], close=False)
    log.append("participant_left", {"participant_id": "p1", "identity": "alice"}, 1_700_000_099.0)
    try:
        assert export_cli.main(["REC_1", "--out", str(tmp_path / "b.zip"), "--bundle",
                                "--data-dir", str(data)]) == 0
    finally:
        log.release()
    err = capsys.readouterr().err
    assert "warning: the bundle does not verify: entry 5: not covered by a checkpoint" in err
