"""plugins.recorder.manifest: recording.json, and what a crash leaves behind recovered.

A crash is simulated by copying a recording directory while its writer is mid-recording
(the copy is what a SIGKILL would leave: drained bytes are in the files), and once for
real: a child process SIGKILLs itself while recording.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.recorder import (
    Manifest,
    ManifestError,
    RecordingNotFound,
    RecordingWriter,
    ntp_to_unix,
    read_mjr,
    safe_name,
)
from plugins.recorder.manifest import write_atomically

from .media import AUDIO, AUDIO_INFO, T0, VIDEO, VIDEO_INFO, opus_packets, vp8_packets

REPO = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture
def writer(tmp_path):
    writer = RecordingWriter(tmp_path / "rec-1", "rec-1", started_at=T0,
                             manifest_fields={"room": "dock-7"})
    yield writer
    writer.stop(at=T0 + 100)


def record(writer, video_frames=30, audio_frames=50):
    video = writer.track(VIDEO, VIDEO_INFO)
    for p in vp8_packets(video_frames):
        video.rtp(p.data, T0 + p.frame / 30, p.keyframe)
    audio = writer.track(AUDIO, AUDIO_INFO)
    for p in opus_packets(audio_frames):
        audio.rtp(p.data, T0 + p.frame / 50, False)
    writer.drain_once()


def crash_image(writer, tmp_path) -> pathlib.Path:
    """What a SIGKILL now would leave on disk."""
    image = tmp_path / "crashed"
    shutil.copytree(writer.directory, image)
    return image


def test_a_stopped_recording_loads_as_written(writer):
    record(writer)
    writer.stop(at=T0 + 10)
    loaded = Manifest.load(writer.directory)
    assert loaded == Manifest.read(writer.directory)
    assert loaded.state == "stopped" and loaded.fields == {"room": "dock-7"}
    assert Manifest.recover(writer.directory) == []


def test_after_a_crash_load_says_how_many_packets_survived(writer, tmp_path):
    record(writer)
    image = crash_image(writer, tmp_path)
    video_file = image / f"{safe_name(VIDEO)}-0001.mjr"
    whole = read_mjr(video_file)
    size = video_file.stat().st_size
    last_frame_at = size - 10 - len(whole.packets[-1].rtp)
    os.truncate(video_file, size - 5)  # the last frame torn mid-packet

    loaded = Manifest.load(image)
    assert loaded.state == "interrupted"
    video = loaded.track(VIDEO).segments[0].recovered
    assert (video.packets, video.stopped_at) == (len(whole.packets) - 1, last_frame_at)
    assert "incomplete frame" in video.problem
    audio = loaded.track(AUDIO).segments[0].recovered
    assert (audio.packets, audio.problem) == (50, None)
    assert audio.last_at == pytest.approx(T0 + 49 / 50)
    assert Manifest.read(image).state == "recording"  # load writes nothing


def test_recover_closes_the_recovered_segments_for_good(writer, tmp_path):
    record(writer)
    image = crash_image(writer, tmp_path)
    video_file = image / f"{safe_name(VIDEO)}-0001.mjr"
    os.truncate(video_file, video_file.stat().st_size - 5)

    closed = Manifest.recover(image)
    assert sorted(c.track_key for c in closed) == sorted([VIDEO, AUDIO])
    for event in closed:
        data = (image / event.file).read_bytes()
        assert event.sha256 == hashlib.sha256(data).hexdigest() and event.size == len(data)
        assert event.recording_id == "rec-1"
    by_key = {c.track_key: c for c in closed}
    assert by_key[AUDIO].packets == 50
    assert by_key[AUDIO].closed_at == pytest.approx(T0 + 49 / 50)
    on_disk = Manifest.read(image)
    assert on_disk.state == "interrupted"
    assert on_disk.stopped_at == pytest.approx(max(c.closed_at for c in closed))
    assert all(not s.open for t in on_disk.tracks for s in t.segments)
    assert on_disk.track(VIDEO).segments[0].recovered.problem.startswith("incomplete frame")
    assert Manifest.recover(image) == []  # once closed, closed


def test_segments_the_manifest_never_listed_are_found_by_their_header(tmp_path, writer):
    before = (writer.directory / "recording.json").read_bytes()  # no tracks yet
    record(writer)
    image = crash_image(writer, tmp_path)
    (image / "recording.json").write_bytes(before)  # killed before the manifest was saved

    loaded = Manifest.load(image)
    video = loaded.track(VIDEO)
    assert (video.kind, video.codec, video.clock_rate, video.payload_type) == (
        "video", "video/VP8", 90000, 96)
    assert (video.identity, video.source, video.track_ids) == ("alice", "camera", ["TR_v1"])
    assert video.segments[0].recovered.packets == len(vp8_packets(30))
    assert loaded.track(AUDIO).channels == 2
    assert len(Manifest.recover(image)) == 2


def test_files_that_are_not_mjr_are_named_and_hashed(writer, tmp_path):
    record(writer)
    image = crash_image(writer, tmp_path)
    (image / "stray.mjr").write_bytes(b"")  # opened, killed before the first write
    listed = image / f"{safe_name(AUDIO)}-0001.mjr"
    listed.write_bytes(b"MJR00002\x00")  # a torn header

    loaded = Manifest.load(image)
    assert loaded.unreadable == [{"file": "stray.mjr", "problem": f"{image / 'stray.mjr'}: "
                                  "0 bytes, too short for an MJR00002 header"}]
    assert "too short" in loaded.track(AUDIO).segments[0].recovered.problem
    closed = Manifest.recover(image)
    assert {c.track_key: c.packets for c in closed} == {VIDEO: len(vp8_packets(30)), AUDIO: 0}
    stray = Manifest.read(image).unreadable[0]
    assert (stray["sha256"], stray["size"]) == (hashlib.sha256(b"").hexdigest(), 0)


def test_sigkill_loses_at_most_the_undrained_tail(tmp_path):
    child = textwrap.dedent(f"""
        import os, pathlib, signal, sys, time
        sys.path.insert(0, {str(REPO)!r})
        from plugins.recorder import RecordingWriter
        from tests.plugins.recorder.media import AUDIO_INFO, opus_packets
        writer = RecordingWriter(pathlib.Path({str(tmp_path / 'rec')!r}), "rec",
                                 flush_interval=0.01)
        sink = writer.track("alice/microphone/audio", AUDIO_INFO)
        packets = opus_packets(60)
        writer.start()
        for p in packets[:50]:
            sink.rtp(p.data, 1000.0 + p.frame / 50, False)
        while writer.stats.packets < 50:  # drained by the writer's own thread
            time.sleep(0.01)
        for p in packets[50:]:
            sink.rtp(p.data, 1000.0 + p.frame / 50, False)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", child], cwd=REPO, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL
    closed = Manifest.recover(tmp_path / "rec")
    [segment] = closed
    assert 50 <= segment.packets <= 60  # everything drained survived
    assert Manifest.read(tmp_path / "rec").state == "interrupted"


def test_manifest_round_trips(writer):
    record(writer)
    writer.track(AUDIO, AUDIO_INFO).sender_report(5 << 32, 960, T0 + 0.5)
    writer.drain_once()
    body = json.loads((writer.directory / "recording.json").read_bytes())
    assert Manifest.parse(body).to_json() == body
    assert body["version"] == 1 and body["recording_id"] == "rec-1" and body["room"] == "dock-7"
    assert body["tracks"][1]["anchors"] == [{"ntp": 5 << 32, "rtp_ts": 960, "arrival": T0 + 0.5,
                                             "segment": f"{safe_name(AUDIO)}-0001.mjr"}]


def test_no_manifest_is_recording_not_found(tmp_path):
    with pytest.raises(RecordingNotFound) as info:
        Manifest.load(tmp_path)
    assert info.value.code == "not_found" and str(tmp_path) in str(info.value)


@pytest.mark.parametrize("text, message", [
    (b"{", "not JSON"),
    (b"[]", "not a JSON object"),
    (b'{"version": 2}', "version 2"),
    (b'{"version": 1, "state": "paused"}', "state 'paused'"),
    (b'{"version": 1, "state": "stopped", "recording_id": "r", "started_at": 0, "tracks": [{}]}',
     "malformed"),
])
def test_a_broken_manifest_is_a_clear_error(tmp_path, text, message):
    (tmp_path / "recording.json").write_bytes(text)
    with pytest.raises(ManifestError, match=message):
        Manifest.read(tmp_path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"version": st.just(1), "state": st.just("stopped"),
                              "recording_id": json_values, "started_at": json_values,
                              "tracks": json_values}) | json_values)
def test_any_json_is_a_manifest_or_a_manifest_error(body):
    try:
        Manifest.parse(body)
    except ManifestError:
        pass


def test_ntp_to_unix():
    assert ntp_to_unix(2_208_988_800 << 32) == 0.0
    assert ntp_to_unix(((2_208_988_800 + 10) << 32) | (1 << 31)) == 10.5


def test_write_atomically_leaves_no_temporary_file_and_mode_0600(tmp_path):
    path = tmp_path / "x.json"
    write_atomically(path, b"one")
    write_atomically(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["x.json"]
    assert path.stat().st_mode & 0o777 == 0o600
