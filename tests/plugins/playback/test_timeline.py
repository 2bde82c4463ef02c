"""RTP timestamps onto the recorder's clock: streams, sender reports, arrival times."""

from __future__ import annotations

import pytest

from plugins.playback.timeline import build_timelines, track_packets
from plugins.recorder import Manifest

from . import media

VIDEO, AUDIO = "alice/camera/video", "alice/microphone/audio"


def _timelines(directory):
    manifest = Manifest.load(directory)
    return {t.track.key: t for t in build_timelines(directory, manifest)}, manifest


def _wall_of_first(timeline) -> float:
    clock = timeline.streams[0]
    return clock.wall(clock.first_timestamp)


def test_one_senders_tracks_share_its_clock_whatever_their_network_delay(tmp_path):
    video = media.video(2, [], delay=0.02, ts=2**32 - 45000)  # wraps after half a second
    audio = media.audio(2, [], delay=0.09, clock_skew=3.7)
    directory = media.record(tmp_path, {VIDEO: [video], AUDIO: [audio]})
    timelines, _ = _timelines(directory)
    v, a = timelines[VIDEO].streams[0], timelines[AUDIO].streams[0]
    assert v.source == a.source == "sender_reports"
    # both captured their first frame at START: same instant on the export's clock,
    # the sender's 3.7 s skew undone, the smallest network delay (video's) kept
    assert v.wall(v.first_timestamp) == pytest.approx(a.wall(a.first_timestamp), abs=0.002)
    assert v.wall(v.first_timestamp) == pytest.approx(media.START + 0.02, abs=0.005)
    # 1.5 s later, after the timestamp wrapped
    assert v.wall(v.first_timestamp + 135000) == pytest.approx(media.START + 1.52, abs=0.005)


def test_without_sender_reports_the_least_delayed_arrival_anchors(tmp_path):
    audio = media.audio(3, [], delay=0.05)
    directory = media.record(tmp_path, {AUDIO: [audio]}, reports=False)
    timelines, manifest = _timelines(directory)
    clock = timelines[AUDIO].streams[0]
    assert clock.source == "arrival"
    assert len(clock.anchors) == len(manifest.tracks[0].segments) >= 2  # one per segment
    assert clock.wall(clock.first_timestamp) == pytest.approx(media.START + 0.05, abs=0.002)
    assert clock.wall(clock.first_timestamp + 48000 * 2) == pytest.approx(media.START + 2.05, abs=0.002)


def test_a_publisher_coming_back_starts_a_new_stream_after_the_gap(tmp_path):
    first = media.audio(1, [])
    second = media.audio(1, [], start=media.START + 3, ssrc=0x9999, seq=7, ts=10,
                         track_id="TR_a2", clock_skew=-20.0)
    directory = media.record(tmp_path, {AUDIO: [first, second]})
    timelines, manifest = _timelines(directory)
    streams = timelines[AUDIO].streams
    assert [(s.index, s.ssrc, s.track_id) for s in streams] == [
        (0, 0x2222, "TR_a1"), (1, 0x9999, "TR_a2")]
    assert manifest.tracks[0].gaps  # the writer marked it
    # the new sender's clock is 23.7 s away from the first one's: kept apart
    gap = streams[1].wall(streams[1].first_timestamp) - streams[0].wall(streams[0].first_timestamp)
    assert gap == pytest.approx(3.0, abs=0.005)


def test_an_ssrc_change_inside_a_segment_starts_a_stream(tmp_path):
    first = media.audio(0.5, [])
    second = media.audio(0.5, [], start=media.START + 0.5, ssrc=0x7777, ts=1, seq=1)
    directory = media.record(tmp_path, {AUDIO: [first]}, reports=False)
    # splice the second stream's packets into the same segment, as one producer whose
    # SSRC changed would have
    from plugins.recorder import encode_frame
    (segment,) = directory.glob("*.mjr")
    with open(segment, "ab") as f:
        f.writelines(encode_frame(int((p.arrival - first.packets[0].arrival) * 1000), p.data) for p in second.packets)
    manifest = Manifest.load(directory)
    items = list(track_packets(directory, manifest.tracks[0]))
    assert {(i.stream, i.packet.ssrc) for i in items} == {(0, 0x2222), (1, 0x7777)}
    assert [i.stream for i in items] == sorted(i.stream for i in items)


def test_unreadable_segments_are_skipped_and_said(tmp_path):
    directory = media.record(tmp_path, {AUDIO: [media.audio(3, [])]}, reports=False)
    segments = sorted(directory.glob("*.mjr"))
    segments[0].write_bytes(b"not an MJR file")
    problems = []
    manifest = Manifest.load(directory)
    items = list(track_packets(directory, manifest.tracks[0], problems=problems))
    assert items and all(i.segment != segments[0].name for i in items)
    assert problems and segments[0].name in problems[0]
