"""Exports of real recordings (aiortc-encoded RTP, written by the recorder's writer),
decoded back with PyAV: frame counts, durations, key frames, and every flash within
40 ms of its beep."""

from __future__ import annotations

import os
import stat

import av
import pytest

from plugins.playback import (
    CONTAINERS,
    ExportError,
    RecordingNotFound,
    UnsupportedContainer,
    export_recording,
)

from . import media

SYNC = 0.040  # the bound between a flash and its beep
FRAME = 1 / media.FPS
VIDEO, AUDIO = "alice/camera/video", "alice/microphone/audio"


def assert_in_sync(decoded: dict, expected: list[float], shift: float = 0.0) -> None:
    """Each mark shows up as one flash and one beep, within 40 ms of each other, at the
    mark's place on the export's clock (``shift``: where the mark's zero is)."""
    assert len(decoded["flashes"]) == len(expected), decoded["flashes"]
    assert len(decoded["beeps"]) == len(expected), decoded["beeps"]
    for mark, flash, beep in zip(expected, decoded["flashes"], decoded["beeps"]):
        assert abs(flash - beep) < SYNC, (mark, flash, beep)
        assert abs(flash - (mark + shift)) < FRAME, (mark, flash)


@pytest.fixture(scope="module")
def av_recording(tmp_path_factory):
    """6 s of VP8 + Opus; audio arrives 70 ms later than video (sender reports must
    undo that); sequence numbers and RTP timestamps wrap during the recording."""
    marks = [1.0, 2.5, 4.0, 5.5]
    video = media.video(6, marks, delay=0.02, seq=65500, ts=2**32 - 90000)
    audio = media.audio(6, marks, delay=0.09, seq=65530, ts=2**32 - 48000)
    directory = media.record(tmp_path_factory.mktemp("rec"), {VIDEO: [video], AUDIO: [audio]})
    return directory, marks, video, audio


def test_webm_has_every_frame_and_flashes_meet_their_beeps(av_recording, tmp_path):
    directory, marks, video, _ = av_recording
    result = export_recording(directory, tmp_path / "out.webm")
    decoded = media.decode_marks(tmp_path / "out.webm")
    assert decoded["streams"] == [("video", "vp8"), ("audio", "opus")]
    assert decoded["video_frames"] == video.frames == 180
    assert decoded["first_keyframe"] is True
    assert decoded["duration"] == pytest.approx(6.0, abs=FRAME)
    assert decoded["video_end"] == pytest.approx(6.0 - FRAME, abs=FRAME)
    assert decoded["audio_end"] == pytest.approx(6.0, abs=0.03)
    assert_in_sync(decoded, marks)
    assert result.container == "webm"
    assert result.frames == {VIDEO: 180, AUDIO: 300}
    assert [(s.kind, s.codec, s.size) for s in result.streams] == [
        ("video", "video/VP8", (320, 240)), ("audio", "audio/opus", None)]
    assert result.duration == pytest.approx(6.0, abs=FRAME)
    assert result.problems == ()


def test_opus_head_says_stereo_and_pre_skip_312(av_recording, tmp_path):
    directory, *_ = av_recording
    export_recording(directory, tmp_path / "out.webm")
    with av.open(str(tmp_path / "out.webm")) as container:
        head = container.streams.audio[0].codec_context.extradata
        titles = [s.metadata.get("title") for s in container.streams]
    assert head[:8] == b"OpusHead" and head[9] == 2
    assert int.from_bytes(head[10:12], "little") == 312
    assert titles == [VIDEO, AUDIO]


def test_without_sender_reports_arrival_times_keep_sync(tmp_path):
    marks = [0.8, 2.2]
    video = media.video(3, marks, delay=0.03)
    audio = media.audio(3, marks, delay=0.03)
    directory = media.record(tmp_path, {VIDEO: [video], AUDIO: [audio]}, reports=False)
    export_recording(directory, tmp_path / "out.webm")
    assert_in_sync(media.decode_marks(tmp_path / "out.webm"), marks)


def test_a_publisher_that_came_back_leaves_the_gap(tmp_path):
    first = [media.video(3, [1.0]), media.audio(3, [1.0])]
    back = media.START + 5.0  # two seconds away; new SSRC, sequence and timestamp bases
    second = [media.video(3, [1.0], start=back, ssrc=0x3333, seq=9000, ts=777, track_id="TR_v2"),
              media.audio(3, [1.0], start=back, ssrc=0x4444, seq=40000, ts=5, track_id="TR_a2")]
    directory = media.record(tmp_path, {VIDEO: [first[0], second[0]], AUDIO: [first[1], second[1]]})
    result = export_recording(directory, tmp_path / "out.webm")
    decoded = media.decode_marks(tmp_path / "out.webm")
    assert decoded["video_frames"] == 180
    assert_in_sync(decoded, [1.0, 6.0])  # the second mark 5 s after the first
    assert decoded["duration"] == pytest.approx(8.0, abs=FRAME)
    audio = result.streams[1]
    assert audio.silent_frames >= 95  # the 2 s without audio, filled in 20 ms frames
    assert decoded["audio_end"] == pytest.approx(8.0, abs=0.03)


def test_opus_dtx_keeps_audio_timing(tmp_path):
    marks = [0.5, 2.5, 4.5]
    video = media.video(5, marks)
    audio = media.audio(5, marks, dtx=[(1.0, 2.2), (3.0, 4.1)])
    directory = media.record(tmp_path, {VIDEO: [video], AUDIO: [audio]})
    result = export_recording(directory, tmp_path / "out.webm")
    decoded = media.decode_marks(tmp_path / "out.webm")
    assert audio.frames == 250 - 60 - 55
    assert_in_sync(decoded, marks)
    assert decoded["audio_end"] == pytest.approx(5.0, abs=0.03)
    assert result.streams[1].frames == audio.frames
    assert result.streams[1].silent_frames == 60 + 55  # 2.3 s of DTX in 20 ms frames


def test_a_lost_packet_drops_its_frame_and_the_frames_until_the_next_keyframe(tmp_path):
    video = media.video(3, [], texture=True, keyframes=(0, 60))
    frame_of = {}  # packet index -> frame index, from the RTP timestamps
    stamps = sorted({p.data[4:8] for p in video.packets}, key=lambda b: int.from_bytes(b, "big"))
    for n, p in enumerate(video.packets):
        frame_of[n] = stamps.index(p.data[4:8])
    in_frame_30 = [n for n, f in frame_of.items() if f == 30]
    assert len(in_frame_30) >= 2  # a frame of several packets
    del video.packets[in_frame_30[1]]
    directory = media.record(tmp_path, {VIDEO: [video]})
    result = export_recording(directory, tmp_path / "out.webm")
    decoded = media.decode_marks(tmp_path / "out.webm")
    assert decoded["video_frames"] == 90 - 30  # frames 30..59 dropped, 60 is a key frame
    assert decoded["first_keyframe"] is True
    assert result.streams[0].dropped == 30
    assert decoded["duration"] == pytest.approx(3.0, abs=FRAME)  # the stream went on


def test_h264_goes_into_mp4_and_decodes(tmp_path):
    marks = [0.7, 2.0]
    video = media.video(3, marks, codec="H264", delay=0.02)
    audio = media.audio(3, marks, delay=0.06)
    directory = media.record(tmp_path, {VIDEO: [video], AUDIO: [audio]})
    result = export_recording(directory, tmp_path / "out.mp4")
    decoded = media.decode_marks(tmp_path / "out.mp4")
    assert result.container == "mp4"
    assert decoded["streams"] == [("video", "h264"), ("audio", "opus")]
    assert decoded["video_frames"] == 90
    assert decoded["first_keyframe"] is True
    assert_in_sync(decoded, marks)


@pytest.mark.parametrize("extension", [".webm", ".mp4"])
def test_vp9_goes_into_webm_and_mp4(tmp_path, extension):
    video = media.video(2, [1.0], codec="VP9")
    audio = media.audio(2, [1.0])
    directory = media.record(tmp_path, {VIDEO: [video], AUDIO: [audio]})
    export_recording(directory, tmp_path / f"out{extension}")
    decoded = media.decode_marks(tmp_path / f"out{extension}")
    assert decoded["streams"][0] == ("video", "vp9")
    assert decoded["video_frames"] == 60
    assert_in_sync(decoded, [1.0])


def test_ogg_of_an_audio_only_recording_keeps_dtx_timing(tmp_path):
    marks = [0.5, 2.5]
    audio = media.audio(3, marks, dtx=[(1.0, 2.3)])
    directory = media.record(tmp_path, {AUDIO: [audio]})
    result = export_recording(directory, tmp_path / "out.ogg")
    decoded = media.decode_marks(tmp_path / "out.ogg")
    assert decoded["streams"] == [("audio", "opus")]
    assert result.streams[0].silent_frames == 65  # 1.3 s of DTX in 20 ms frames
    # Ogg has no per-packet time: only the silent fill keeps the second beep in place
    assert [round(b - 0.0065, 2) for b in decoded["beeps"]] == marks
    assert decoded["audio_end"] == pytest.approx(3.0, abs=0.03)


def test_several_video_tracks_each_become_a_stream(tmp_path):
    tracks = {
        VIDEO: [media.video(2, [0.5])],
        "bob/camera/video": [media.video(2, [1.5], identity="bob", ssrc=0x5555,
                                         track_id="TR_b", start=media.START + 0.5)],
        AUDIO: [media.audio(2, [0.5])],
    }
    directory = media.record(tmp_path, tracks)
    result = export_recording(directory, tmp_path / "out.webm")
    with av.open(str(tmp_path / "out.webm")) as container:
        kinds = [(s.type, s.metadata.get("title")) for s in container.streams]
        bob = [f.time for f in container.decode(video=1)]
    assert sorted(kinds) == sorted([("video", VIDEO), ("video", "bob/camera/video"), ("audio", AUDIO)])
    assert result.frames["bob/camera/video"] == 60
    assert bob[0] == pytest.approx(0.5 + 0.0065, abs=FRAME)  # bob started half a second later


@pytest.mark.parametrize(("codec", "extension", "names"), [
    ("VP8", ".mp4", ["video/VP8", ".mp4", ".webm"]),
    ("H264", ".webm", ["video/H264", ".webm", ".mp4"]),
    ("VP8", ".ogg", ["video/VP8", ".ogg"]),
])
def test_a_codec_the_container_cannot_hold_is_refused_by_name(tmp_path, codec, extension, names):
    directory = media.record(tmp_path, {VIDEO: [media.video(0.5, [], codec=codec)]})
    with pytest.raises(UnsupportedContainer) as info:
        export_recording(directory, tmp_path / f"out{extension}")
    for name in names:
        assert name in str(info.value)
    assert not (tmp_path / f"out{extension}").exists()


def test_an_output_that_cannot_be_written_is_an_export_error(av_recording, tmp_path):
    directory, *_ = av_recording
    with pytest.raises(ExportError, match="cannot write .*missing/out.webm"):
        export_recording(directory, tmp_path / "missing" / "out.webm")


def test_unknown_extension_and_missing_recording(tmp_path, av_recording):
    directory, *_ = av_recording
    with pytest.raises(UnsupportedContainer, match=r"\.avi.*\.webm, \.mp4, \.ogg"):
        export_recording(directory, tmp_path / "out.avi")
    with pytest.raises(RecordingNotFound) as info:
        export_recording(tmp_path / "nothing", tmp_path / "out.webm")
    assert info.value.code == "not_found"
    assert set(CONTAINERS) == {".webm", ".mp4", ".ogg"}


def test_output_is_private_and_progress_reaches_the_total(av_recording, tmp_path):
    directory, *_ = av_recording
    seen = []
    export_recording(directory, tmp_path / "out.webm", progress=lambda done, total: seen.append((done, total)))
    assert stat.S_IMODE(os.stat(tmp_path / "out.webm").st_mode) == 0o600
    total = seen[0][1]
    assert total == 2 * len(list(directory.glob("*.mjr")))
    assert [d for d, _ in seen] == list(range(1, total + 1))
    assert [p.name for p in tmp_path.iterdir()] == ["out.webm"]  # no temporary file left


def test_a_recording_without_a_keyframe_has_nothing_to_export(tmp_path):
    video = media.video(1, [])
    directory = media.record(tmp_path, {VIDEO: [video]})
    for segment in directory.glob("*.mjr"):  # keep the header and the frames after the key frame
        data = segment.read_bytes()
        header = 10 + int.from_bytes(data[8:10], "big")
        frames = data[header:]
        first = 10 + int.from_bytes(frames[8:10], "big")  # MEET, offset, length, packet
        segment.write_bytes(data[:header] + frames[first:])
    with pytest.raises(ExportError, match="no frame to export.*no key frame"):
        export_recording(directory, tmp_path / "out.webm")
    assert not (tmp_path / "out.webm").exists()


def test_a_torn_segment_after_a_crash_exports_what_survived(tmp_path):
    video = media.video(2, [0.5])
    directory = media.record(tmp_path, {VIDEO: [video]})
    (segment,) = directory.glob("*.mjr")
    with open(segment, "r+b") as f:
        f.truncate(segment.stat().st_size - 1)  # the last byte of the last frame is gone
    result = export_recording(directory, tmp_path / "out.webm")
    decoded = media.decode_marks(tmp_path / "out.webm")
    assert decoded["video_frames"] == 59
    assert any("stops at byte" in p for p in result.problems)
