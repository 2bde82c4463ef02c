"""plugins.recorder.sink: the packet path's side only queues; the writer does the rest."""

from __future__ import annotations

import os
import sys
import threading

from plugins.recorder import TrackSink

from .media import AUDIO, AUDIO_INFO, T0, VIDEO_INFO, feed, opus_packets


def test_every_call_queues_one_tuple_and_nothing_else():
    sink = TrackSink("alice/camera/video", VIDEO_INFO, max_pending=10)
    sink.rtp(b"\x80" * 12, T0, True)
    sink.sender_report(1, 2, T0)
    sink.new_stream("TR_v2", "ssrc_changed", T0 + 1)
    sink.close(T0 + 2)
    assert [item[1:] for item in sink._queue] == [
        (b"\x80" * 12, T0, True), (1, 2, T0), ("TR_v2", "ssrc_changed", T0 + 1), (T0 + 2,)]
    assert sink.closed


def test_video_waits_for_a_keyframe_again_after_each_new_stream():
    sink = TrackSink("alice/camera/video", VIDEO_INFO, max_pending=10)
    assert sink.waiting_for_keyframe
    sink._written = sink._stream  # what the writer does once it wrote the keyframe
    assert not sink.waiting_for_keyframe
    sink.new_stream("TR_v2", "publisher_returned", T0)
    assert sink.waiting_for_keyframe
    assert not TrackSink(AUDIO, AUDIO_INFO, max_pending=10).waiting_for_keyframe


def test_overflow_is_counted_not_queued(make_writer):
    writer = make_writer(max_pending=5)
    sink = writer.track(AUDIO, AUDIO_INFO)
    feed(sink, opus_packets(8), fps=50)
    assert sink.overflowed == 3
    writer.drain_once()
    assert writer.stats.overflowed == 3 and writer.manifest.track(AUDIO).segments[0].packets == 5


def test_packets_after_stop_are_dropped_not_queued(make_writer):
    writer = make_writer()
    sink = writer.track(AUDIO, AUDIO_INFO)
    feed(sink, opus_packets(3), fps=50)
    writer.stop(at=T0 + 1)
    feed(sink, opus_packets(3), fps=50, start=T0 + 2)
    writer.drain_once()
    assert sink.overflowed == 3 and len(sink._queue) == 0
    assert writer.manifest.track(AUDIO).segments[0].packets == 3


def test_the_packet_path_does_no_io_while_the_writer_thread_is_blocked(make_writer):
    """The writer's thread is held inside a drain (in ``on_segment_closed``) while the
    test thread sends packets: every call returns, no file changes, nothing is opened."""
    blocked, release = threading.Event(), threading.Event()

    def hold(event):
        blocked.set()
        assert release.wait(30)

    writer = make_writer(segment_seconds=0.2, max_segment_seconds=0.2, flush_interval=0.01,
                         on_segment_closed=hold)
    sink = writer.track(AUDIO, AUDIO_INFO)
    packets = opus_packets(40)
    feed(sink, packets[:15], fps=50)  # 0.3 s: the first segment closes
    writer.start()
    assert blocked.wait(30)
    sizes = {name: os.stat(writer.directory / name).st_size for name in os.listdir(writer.directory)}
    opened = []
    watching = threading.get_ident()

    def audit(event, args):
        if event == "open" and threading.get_ident() == watching:
            opened.append(args)

    sys.addaudithook(audit)
    try:
        feed(sink, packets[15:], fps=50)  # returns although the writer cannot drain
        assert opened == []
        open(os.devnull).close()  # the hook does see this thread's opens
    finally:
        watching = None
    assert [args[0] for args in opened] == [os.devnull]
    assert {name: os.stat(writer.directory / name).st_size
            for name in os.listdir(writer.directory)} == sizes
    release.set()
    writer.stop(at=T0 + 5)
    assert sum(s.packets for s in writer.manifest.track(AUDIO).segments) == 40
