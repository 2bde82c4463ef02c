"""``dockcast export``: exit statuses, where recordings are looked for, the progress bar."""

from __future__ import annotations

import os
import pathlib
import pty
import subprocess
import sys

import pytest

from dockcast import cli, export_cli
from tests.plugins.playback import media

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
