"""Janus's own post-processor, an independent reader, converts the segments we write:
VP8 to WebM, Opus to Ogg Opus, each decoding (PyAV) to the frames that were sent, also
a segment torn by a crash."""

from __future__ import annotations

import os
import shutil
import subprocess

import av
import pytest

from plugins.recorder import RecordingWriter, read_mjr

from .media import AUDIO_INFO, T0, VIDEO_INFO, opus_packets, vp8_packets

JANUS_PP_REC = shutil.which("janus-pp-rec")
pytestmark = pytest.mark.skipif(JANUS_PP_REC is None,
                                reason="janus-pp-rec missing (Debian package janus-tools)")


def convert(source, target) -> subprocess.CompletedProcess:
    done = subprocess.run([JANUS_PP_REC, str(source), str(target)], capture_output=True, check=False,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def decoded_frames(path) -> list:
    with av.open(str(path)) as container:
        return list(container.decode(container.streams[0]))


@pytest.fixture
def recording(tmp_path):
    writer = RecordingWriter(tmp_path / "rec", "rec", segment_seconds=1.0,
                             max_segment_seconds=2.0, started_at=T0)
    video = writer.track("alice/camera/video", VIDEO_INFO)
    for p in vp8_packets(60, keyframes=(40,)):
        video.rtp(p.data, T0 + p.frame / 30, p.keyframe)
    audio = writer.track("alice/microphone/audio", AUDIO_INFO)
    for p in opus_packets(75):
        audio.rtp(p.data, T0 + p.frame / 50, False)
    writer.stop(at=T0 + 3)
    return writer


def test_vp8_segments_convert_to_webm(recording, tmp_path):
    segments = recording.manifest.track("alice/camera/video").segments
    assert len(segments) == 2  # rolled at the keyframe of frame 40
    for segment, frames in zip(segments, (40, 20)):
        out = tmp_path / f"{segment.file}.webm"
        convert(recording.directory / segment.file, out)
        decoded = decoded_frames(out)
        assert len(decoded) == frames
        assert decoded[0].key_frame
        assert (decoded[0].width, decoded[0].height) == (160, 120)


def test_opus_segments_convert_to_ogg_opus(recording, tmp_path):
    segments = recording.manifest.track("alice/microphone/audio").segments
    assert [s.packets for s in segments] == [50, 25]
    for segment in segments:
        out = tmp_path / f"{segment.file}.opus"
        convert(recording.directory / segment.file, out)
        decoded = decoded_frames(out)
        assert len(decoded) == segment.packets
        assert decoded[0].sample_rate == 48000


def test_our_header_keys_are_kept_by_janus_pp_rec(recording):
    segment = recording.manifest.track("alice/camera/video").segments[0]
    done = subprocess.run([JANUS_PP_REC, "--json", str(recording.directory / segment.file)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert '"x-dockcast"' in done.stdout and '"c":"vp8"' in done.stdout


def test_a_torn_segment_still_converts(recording, tmp_path):
    segment = recording.manifest.track("alice/camera/video").segments[0]
    torn = tmp_path / "torn.mjr"
    shutil.copy(recording.directory / segment.file, torn)
    os.truncate(torn, torn.stat().st_size - 7)
    found = read_mjr(torn)
    assert not found.complete
    out = tmp_path / "torn.webm"
    convert(torn, out)
    assert len(decoded_frames(out)) == 39  # frame 39 was one packet: the torn one
