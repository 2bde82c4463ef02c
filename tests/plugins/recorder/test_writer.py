"""plugins.recorder.writer: real VP8/Opus RTP in, MJR segments and a manifest out.

Tests drive the writer with `drain_once` (the thread's loop body) and arrival times of
their own; no sleeps. One test runs the real thread to show the packet path does no I/O.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest
from aiortc.rtp import RtpPacket

from plugins.recorder import (
    Manifest,
    RecorderError,
    RecordingWriter,
    TrackInfo,
    read_mjr,
    safe_name,
    vp9_starts_keyframe,
)
from sfu.vp8 import vp8_is_keyframe

from .media import (
    AUDIO,
    AUDIO_INFO,
    T0,
    VIDEO,
    VIDEO_INFO,
    feed,
    opus_packets,
    vp8_packets,
)


def payload(rtp: bytes) -> bytes:
    return RtpPacket.parse(rtp).payload


def segments(writer, key):
    return writer.manifest.track(key).segments


def test_first_video_segment_starts_on_a_keyframe(make_writer):
    writer = make_writer()
    sink = writer.track(VIDEO, VIDEO_INFO)
    packets = vp8_packets(20, keyframes=(12,))
    joined_late = [p for p in packets if p.frame >= 3]  # recording starts mid-GOP
    feed(sink, joined_late)
    assert sink.waiting_for_keyframe
    writer.drain_once()
    assert not sink.waiting_for_keyframe
    [segment] = segments(writer, VIDEO)
    found = read_mjr(writer.directory / segment.file)
    assert vp8_is_keyframe(payload(found.packets[0].rtp)[:16])
    expected = [p.data for p in packets if p.frame >= 12]
    assert [p.rtp for p in found.packets] == expected
    assert writer.stats.dropped_before_keyframe == len(joined_late) - len(expected)
    assert segment.keyframe_first and segment.started_at == T0 + 12 / 30


def test_audio_needs_no_keyframe(make_writer):
    writer = make_writer()
    sink = writer.track(AUDIO, AUDIO_INFO)
    assert not sink.waiting_for_keyframe
    feed(sink, opus_packets(10), fps=50)
    writer.drain_once()
    assert len(read_mjr(writer.directory / segments(writer, AUDIO)[0].file).packets) == 10


def test_video_rolls_at_the_first_keyframe_after_segment_seconds(make_writer):
    writer = make_writer(segment_seconds=1.0, max_segment_seconds=3.0)
    sink = writer.track(VIDEO, VIDEO_INFO)
    packets = vp8_packets(80, keyframes=(20, 40, 70))  # keyframes at 0.67 s, 1.33 s, 2.33 s
    feed(sink, packets)
    writer.drain_once()
    first, second, third = segments(writer, VIDEO)
    frames = [sorted({p.frame for p in packets if p.data in {q.rtp for q in read_mjr(
        writer.directory / s.file).packets}}) for s in (first, second, third)]
    assert frames[0] == list(range(40))  # no roll at 20: under a second
    assert frames[1] == list(range(40, 70))  # 70 is 1 s after 40
    assert frames[2] == list(range(70, 80))
    assert all(s.keyframe_first for s in (first, second, third))
    assert first.closed_at == second.started_at == T0 + 40 / 30
    assert third.sha256 is None  # still open


def test_video_roll_is_forced_at_max_segment_seconds(make_writer):
    writer = make_writer(segment_seconds=1.0, max_segment_seconds=2.0)
    sink = writer.track(VIDEO, VIDEO_INFO)
    packets = vp8_packets(75)  # one keyframe only
    feed(sink, packets)
    writer.drain_once()
    first, second = segments(writer, VIDEO)
    assert first.keyframe_first and not second.keyframe_first
    assert second.started_at == T0 + 2.0
    header = read_mjr(writer.directory / second.file).info.extra["x-dockcast"]
    assert header["keyframe_first"] is False and header["n"] == 2
    assert first.packets + second.packets == len(packets)


def test_audio_rolls_at_segment_seconds(make_writer):
    writer = make_writer(segment_seconds=1.0, max_segment_seconds=2.0)
    sink = writer.track(AUDIO, AUDIO_INFO)
    feed(sink, opus_packets(120), fps=50)  # 2.4 s
    writer.drain_once()
    assert [s.packets for s in segments(writer, AUDIO)] == [50, 50, 20]
    assert [s.file for s in segments(writer, AUDIO)] == [
        f"{safe_name(AUDIO)}-{n:04d}.mjr" for n in (1, 2, 3)]


def test_offsets_are_milliseconds_since_the_first_packet_of_the_segment(make_writer):
    writer = make_writer()
    sink = writer.track(AUDIO, AUDIO_INFO)
    feed(sink, opus_packets(5), fps=50, start=T0 + 0.5)
    writer.drain_once()
    found = read_mjr(writer.directory / segments(writer, AUDIO)[0].file)
    assert [p.offset_ms for p in found.packets] == [0, 20, 40, 60, 80]
    assert found.info.first_us == (int(T0) * 1000 + 500) * 1000


def test_new_stream_leaves_a_gap_marker(make_writer):
    writer = make_writer()
    sink = writer.track(AUDIO, AUDIO_INFO)
    feed(sink, opus_packets(50), fps=50)  # last packet at T0 + 0.98
    sink.new_stream("TR_a2", "publisher_returned", at=T0 + 4.0)
    feed(sink, opus_packets(10, ssrc=0x9999), fps=50, start=T0 + 4.5)
    writer.drain_once()
    first, second = segments(writer, AUDIO)
    track = writer.manifest.track(AUDIO)
    [gap] = track.gaps
    assert (gap.start, gap.end, gap.reason) == (T0 + 0.98, T0 + 4.5, "publisher_returned")
    assert first.closed_at == T0 + 4.0 and first.track_id == "TR_a1"
    assert second.track_id == "TR_a2" and track.track_ids == ["TR_a1", "TR_a2"]
    body = json.loads((writer.directory / "recording.json").read_text())
    assert body["tracks"][0]["gaps"] == [{"from": T0 + 0.98, "to": T0 + 4.5,
                                          "reason": "publisher_returned"}]


def test_a_new_video_stream_waits_for_its_own_keyframe(make_writer):
    writer = make_writer()
    sink = writer.track(VIDEO, VIDEO_INFO)
    feed(sink, vp8_packets(10))
    writer.drain_once()
    sink.new_stream("TR_v2", "ssrc_changed", at=T0 + 1)
    assert sink.waiting_for_keyframe  # at once, before any drain: the plugin asks for one
    second_stream = vp8_packets(10, ssrc=0x4321, keyframes=(5,), start_frame=0)
    feed(sink, [p for p in second_stream if p.frame >= 1], start=T0 + 2)
    writer.drain_once()
    _, second = segments(writer, VIDEO)
    found = read_mjr(writer.directory / second.file)
    assert vp8_is_keyframe(payload(found.packets[0].rtp)[:16])
    assert {RtpPacket.parse(p.rtp).ssrc for p in found.packets} == {0x4321}
    assert writer.manifest.track(VIDEO).gaps[0].end == T0 + 2 + 5 / 30


def test_the_same_key_after_close_continues_the_track(make_writer):
    writer = make_writer()
    sink = writer.track(AUDIO, AUDIO_INFO)
    feed(sink, opus_packets(10), fps=50)
    sink.close(at=T0 + 1)
    writer.drain_once()
    info = TrackInfo(**{**AUDIO_INFO.__dict__, "track_id": "TR_a9"})
    again = writer.track(AUDIO, info)
    assert again is sink and not sink.closed
    feed(sink, opus_packets(10, ssrc=7), fps=50, start=T0 + 3)
    writer.drain_once()
    track = writer.manifest.track(AUDIO)
    assert [s.track_id for s in track.segments] == ["TR_a1", "TR_a9"]
    assert [(g.start, g.end, g.reason) for g in track.gaps] == [(T0 + 0.18, T0 + 3, "republished")]


def test_a_key_keeps_its_codec(make_writer):
    writer = make_writer()
    writer.track(VIDEO, VIDEO_INFO)
    h264 = TrackInfo("video", "video/H264", 90000, 102, None, "TR_v2")
    with pytest.raises(RecorderError, match="recorded as video/VP8, not video/H264"):
        writer.track(VIDEO, h264)
    republished = TrackInfo(**{**VIDEO_INFO.__dict__, "payload_type": 98, "track_id": "TR_v3"})
    assert writer.track(VIDEO, republished).info.payload_type == 98  # another payload type is fine


def test_packets_after_close_are_dropped(make_writer):
    writer = make_writer()
    sink = writer.track(AUDIO, AUDIO_INFO)
    sink.close(at=T0)
    feed(sink, opus_packets(3), fps=50)
    writer.drain_once()
    assert writer.manifest.track(AUDIO).segments == []
    assert writer.stats.dropped_after_close == 3


def test_sender_reports_are_kept_first_per_segment_then_one_per_five_seconds(make_writer):
    writer = make_writer(segment_seconds=8.0, max_segment_seconds=8.0)
    sink = writer.track(AUDIO, AUDIO_INFO)
    sink.sender_report(ntp=1 << 32, rtp_ts=0, arrival=T0 - 0.5)  # before any packet
    for second in range(12):
        feed(sink, [p for p in opus_packets(50)], fps=50, start=T0 + second)
        sink.sender_report(ntp=(second + 2) << 32, rtp_ts=48000 * (second + 1),
                           arrival=T0 + second + 0.99)
        writer.drain_once()
    track = writer.manifest.track(AUDIO)
    first, second = (s.file for s in track.segments)
    # -0.5 is the segment's first; 4.99 is 5 s later; 8.99 is the second segment's first
    assert [a.segment for a in track.anchors] == [first, first, second]
    assert [a.arrival - T0 for a in track.anchors] == pytest.approx([-0.5, 4.99, 8.99])
    assert track.anchors[1].wall_clock == 6 - 2_208_988_800


def test_files_are_0600_and_the_directory_0700(make_writer):
    writer = make_writer()
    feed(writer.track(AUDIO, AUDIO_INFO), opus_packets(3), fps=50)
    writer.drain_once()
    assert stat.S_IMODE(os.stat(writer.directory).st_mode) == 0o700
    names = sorted(os.listdir(writer.directory))
    assert names == sorted(["recording.json", f"{safe_name(AUDIO)}-0001.mjr"])
    for name in names:
        assert stat.S_IMODE(os.stat(writer.directory / name).st_mode) == 0o600


def test_on_segment_closed_carries_the_files_sha256(make_writer, closed):
    writer = make_writer(segment_seconds=1.0, max_segment_seconds=1.0)
    sink = writer.track(AUDIO, AUDIO_INFO)
    feed(sink, opus_packets(60), fps=50)
    writer.drain_once()
    [event] = closed
    data = (writer.directory / event.file).read_bytes()
    assert event.sha256 == hashlib.sha256(data).hexdigest()
    assert event.size == len(data) and event.packets == 50
    assert (event.recording_id, event.track_key) == ("rec-1", AUDIO)
    assert (event.started_at, event.closed_at) == (T0, T0 + 1.0)
    record = segments(writer, AUDIO)[0]
    assert (record.sha256, record.size) == (event.sha256, event.size)


def test_stop_closes_every_segment_and_is_idempotent(make_writer, closed):
    writer = make_writer()
    feed(writer.track(AUDIO, AUDIO_INFO), opus_packets(5), fps=50)
    feed(writer.track(VIDEO, VIDEO_INFO), vp8_packets(5))
    writer.stop(at=T0 + 2)  # what is queued is drained first
    writer.stop(at=T0 + 3)
    assert sorted(e.track_key for e in closed) == sorted([VIDEO, AUDIO])
    body = Manifest.read(writer.directory)
    assert body.state == "stopped" and body.stopped_at == T0 + 2
    assert all(not s.open for t in body.tracks for s in t.segments)
    with pytest.raises(RecorderError, match="stopped"):
        writer.track("bob/camera/video", VIDEO_INFO)


def test_manifest_fields_are_top_level_keys(make_writer):
    writer = make_writer(manifest_fields={"room": "dock-7", "shipment_id": "S1"})
    writer.update_fields(session_id="sess-1")
    writer.drain_once()
    body = json.loads((writer.directory / "recording.json").read_text())
    assert (body["room"], body["shipment_id"], body["session_id"]) == ("dock-7", "S1", "sess-1")
    assert Manifest.read(writer.directory).fields == {"room": "dock-7", "shipment_id": "S1",
                                                      "session_id": "sess-1"}


def test_manifest_is_replaced_not_rewritten_in_place(make_writer):
    writer = make_writer()
    path = writer.directory / "recording.json"
    before = os.stat(path).st_ino
    feed(writer.track(AUDIO, AUDIO_INFO), opus_packets(3), fps=50)
    writer.drain_once()
    assert os.stat(path).st_ino != before  # a new file renamed over the old one
    assert not (writer.directory / "recording.json.tmp").exists()
    assert Manifest.read(writer.directory).track(AUDIO).segments[0].packets == 3


@pytest.mark.parametrize("options, message", [
    ({"manifest_fields": {"tracks": []}}, "clash"),
    ({"segment_seconds": 90.0}, "at most max_segment_seconds"),
])
def test_bad_writer_arguments_are_refused(tmp_path, options, message):
    with pytest.raises(RecorderError, match=message):
        RecordingWriter(tmp_path / "r", "r", **options)


def test_a_directory_holding_a_recording_is_refused(make_writer, tmp_path):
    make_writer()
    with pytest.raises(RecorderError, match="already holds a recording"):
        RecordingWriter(tmp_path / "rec-1", "rec-1")


def test_codecs_janus_pp_rec_cannot_convert_are_refused(make_writer):
    writer = make_writer()
    with pytest.raises(RecorderError, match="cannot record"):
        writer.track("a/b/audio", TrackInfo("audio", "audio/PCMU", 8000, 0))


def test_safe_names_are_one_to_one():
    keys = ["a/b", "a+b", "a_b", "a_2fb", ".hidden/x", "居/camera/video", "a b"]
    names = [safe_name(k) for k in keys]
    assert len(set(names)) == len(keys)
    assert safe_name("alice/camera/video") == "alice+camera+video"
    assert all("/" not in n and not n.startswith(".") for n in names)




def vp9_rtp(seq: int, descriptor: bytes) -> bytes:
    return RtpPacket(payload_type=98, sequence_number=seq, timestamp=seq * 3000, ssrc=9,
                     payload=descriptor + b"\x00" * 20).serialize()


@pytest.mark.parametrize("descriptor, keyframe", [
    (bytes([0x08]), True),  # B: a frame starts, P clear: no inter prediction
    (bytes([0x48]), False),  # P set: predicted from an earlier frame
    (bytes([0x00]), False),  # not the start of a frame
    (bytes([0xA8, 0x81, 0x23, 0x00]), True),  # I (15-bit id), L: spatial layer 0
    (bytes([0xA8, 0x05, 0x02]), False),  # I (7-bit id), L: spatial layer 1
])
def test_vp9_keyframes_are_found_by_the_writer(descriptor, keyframe):
    assert vp9_starts_keyframe(vp9_rtp(1, descriptor)) is keyframe


def test_a_vp9_track_starts_on_the_keyframe_the_writer_finds(make_writer):
    writer = make_writer()
    info = TrackInfo("video", "video/VP9", 90000, 98, None, "TR_9")
    sink = writer.track("bob/camera/video", info)
    packets = [vp9_rtp(1, bytes([0x48])), vp9_rtp(2, bytes([0x08])), vp9_rtp(3, bytes([0x48]))]
    for i, data in enumerate(packets):
        sink.rtp(data, T0 + i / 30, False)  # the node cannot tell VP9 keyframes
    writer.drain_once()
    [segment] = segments(writer, "bob/camera/video")
    assert [p.rtp for p in read_mjr(writer.directory / segment.file).packets] == packets[1:]
    assert read_mjr(writer.directory / segment.file).info.codec == "vp9"
