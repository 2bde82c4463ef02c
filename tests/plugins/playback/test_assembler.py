"""Frame assembly: reordering, duplicates, loss, key frames, wraps; hypothesis: any
bytes and packet sequences never raise anything but DepacketizeError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.playback.assembler import FrameAssembler, RtpView, Unwrapper
from plugins.playback.depacketize import (
    DepacketizeError,
    H264Format,
    OpusFormat,
    Vp8Format,
    Vp9Format,
)

from .media import encoded_video, feed, rtp, rtp_frames

FORMATS = [Vp8Format(), Vp9Format(), H264Format(), OpusFormat()]


def test_opus_is_one_packet_per_frame():
    packets = [RtpView.parse(rtp(111, False, 10 + i, 960 * i, 9, b"\xfc\x01\x02")) for i in range(5)]
    frames = feed(FrameAssembler(OpusFormat()), packets)
    assert [f.timestamp for f in frames] == [0, 960, 1920, 2880, 3840]
    assert all(f.keyframe for f in frames)


def test_reordered_and_duplicated_packets_are_put_right():
    encoded = encoded_video("VP8")
    packets = [p for f in rtp_frames("VP8", encoded) for p in f]
    shuffled = packets[:]
    shuffled[3], shuffled[5] = shuffled[5], shuffled[3]
    shuffled.insert(4, packets[5])  # again, while 3 is awaited
    shuffled.insert(9, packets[7])  # again, after it was used
    assembler = FrameAssembler(Vp8Format())
    frames = feed(assembler, shuffled)
    assert [f.data for f in frames] == [bytes(p) for p in encoded]
    stats = assembler.stats
    assert (stats.duplicates, stats.late, stats.lost) == (1, 1, 0)


def test_a_hole_drops_the_frame_and_video_waits_for_the_next_keyframe():
    encoded = encoded_video("VP8", frames=12, keyframes=(0, 8))
    rtp = rtp_frames("VP8", encoded)
    broken = 3
    assert len(rtp[broken]) >= 2
    packets = [p for n, f in enumerate(rtp) for i, p in enumerate(f) if (n, i) != (broken, 1)]
    assembler = FrameAssembler(Vp8Format())
    frames = feed(assembler, packets)
    assert [f.data for f in frames] == [bytes(p) for p in encoded[:3] + encoded[8:]]
    stats = assembler.stats
    assert (stats.lost, stats.dropped_incomplete, stats.dropped_before_keyframe) == (1, 1, 4)


def test_a_whole_lost_frame_also_waits_for_the_keyframe():
    encoded = encoded_video("VP8", frames=10, keyframes=(0, 6))
    rtp = rtp_frames("VP8", encoded)
    packets = [p for n, f in enumerate(rtp) if n != 2 for p in f]
    frames = feed(FrameAssembler(Vp8Format()), packets)
    assert [f.data for f in frames] == [bytes(p) for p in encoded[:2] + encoded[6:]]


def test_lost_audio_packets_lose_only_themselves():
    packets = [RtpView.parse(rtp(111, False, 65530 + i, 2**32 - 1920 + 960 * i, 9, b"\xfc\xff"))
               for i in range(8) if i != 3]
    assembler = FrameAssembler(OpusFormat(), first_timestamp=2**32 - 1920)
    frames = feed(assembler, packets)
    assert [f.timestamp - (2**32 - 1920) for f in frames] == [960 * i for i in range(8) if i != 3]
    assert assembler.stats.lost == 1 and assembler.stats.frames == 7


def test_a_stream_starts_at_its_first_keyframe():
    encoded = encoded_video("VP8", frames=8, keyframes=(0, 5))
    rtp = rtp_frames("VP8", encoded)
    frames = feed(FrameAssembler(Vp8Format()), [p for f in rtp[2:] for p in f])
    assert frames[0].data == bytes(encoded[5]) and len(frames) == 3


def test_unwrapper_follows_both_wraps():
    seqs = Unwrapper(16)
    assert [seqs.unwrap(s) for s in (65534, 65535, 0, 1, 65535, 2)] == [65534, 65535, 65536, 65537, 65535, 65538]
    stamps = Unwrapper(32, start=2**32 - 10)
    assert stamps.unwrap(5) == 2**32 + 5
    assert stamps.unwrap(2**32 - 20) == 2**32 - 20


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_parse_as_rtp_or_raise_depacketize_error(data):
    try:
        view = RtpView.parse(data)
    except DepacketizeError:
        return
    assert len(view.payload) <= len(data) - 12


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FORMATS), st.lists(st.tuples(
    st.integers(0, 65535), st.integers(0, 2**32 - 1), st.booleans(), st.binary(max_size=30)),
    max_size=40))
def test_any_packet_sequence_never_raises(fmt, packets):
    assembler = FrameAssembler(fmt, reorder_window=4)
    out = []
    for seq, ts, marker, payload in packets:
        out += assembler.push(RtpView(96, marker, seq, ts, 1, payload), 0.0)
    out += assembler.flush()
    assert len(out) == assembler.stats.frames <= len(packets)
    if fmt.kind == "video" and out:
        assert out[0].keyframe
