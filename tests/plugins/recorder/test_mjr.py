"""plugins.recorder.mjr: the MJR00002 format, byte for byte, and a reader that never
raises for what a crash leaves behind."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.recorder import (
    MjrError,
    MjrInfo,
    MjrPacket,
    encode_frame,
    encode_header,
    parse_mjr,
    read_mjr,
)
from plugins.recorder.mjr import MAX_HEADER_BYTES

from .media import opus_packets, vp8_packets

INFO = MjrInfo("video", "vp8", 1_700_000_000_000_000, 1_700_000_000_250_000,
               {"x-dockcast": {"key": "alice/camera/video", "n": 1}})
VP8 = vp8_packets(8, keyframes=(4,))
OPUS = opus_packets(6)


def raw_header(body: bytes) -> bytes:
    return b"MJR00002" + struct.pack("!H", len(body)) + body


def segment_bytes(info: MjrInfo = INFO, packets=VP8) -> bytes:
    return encode_header(info) + b"".join(encode_frame(i * 33, p.data) for i, p in enumerate(packets))


def test_header_is_janus_layout():
    header = encode_header(INFO)
    assert header[:8] == b"MJR00002"
    (length,) = struct.unpack("!H", header[8:10])
    assert length == len(header) - 10
    body = json.loads(header[10:])
    assert list(body)[:4] == ["t", "c", "s", "u"]
    assert body["t"] == "v" and body["c"] == "vp8"
    assert body["s"] == 1_700_000_000_000_000 and body["u"] == 1_700_000_000_250_000
    assert body["x-dockcast"] == {"key": "alice/camera/video", "n": 1}


def test_frame_is_meet_offset_length_packet():
    rtp = VP8[0].data
    frame = encode_frame(70_000, rtp)
    assert frame[:4] == b"MEET"
    assert struct.unpack("!IH", frame[4:10]) == (70_000, len(rtp))
    assert frame[10:] == rtp


@pytest.mark.parametrize("info, packets", [(INFO, VP8), (MjrInfo("audio", "opus", 5, 6), OPUS)])
def test_header_and_frames_round_trip(info, packets):
    data = segment_bytes(info, packets)
    segment = parse_mjr(data)
    assert segment.info == info
    assert segment.packets == [MjrPacket(i * 33, p.data) for i, p in enumerate(packets)]
    assert segment.complete and segment.problem is None
    assert segment.stopped_at == len(data)


def test_read_mjr_reads_a_file(tmp_path):
    path = tmp_path / "seg.mjr"
    path.write_bytes(segment_bytes())
    assert [p.rtp for p in read_mjr(path).packets] == [p.data for p in VP8]


def test_truncating_at_every_byte_gives_the_whole_frames_before_the_cut():
    data = segment_bytes(packets=VP8[:4])
    header_end = len(encode_header(INFO))
    frame_ends = []
    pos = header_end
    for p in VP8[:4]:
        pos += 10 + len(p.data)
        frame_ends.append(pos)
    for cut in range(len(data) + 1):
        if cut < header_end:
            with pytest.raises(MjrError):
                parse_mjr(data[:cut])
            continue
        segment = parse_mjr(data[:cut])
        whole = sum(1 for end in frame_ends if end <= cut)
        assert [p.rtp for p in segment.packets] == [p.data for p in VP8[:whole]]
        last_end = frame_ends[whole - 1] if whole else header_end
        assert segment.stopped_at == last_end
        assert segment.complete == (cut == last_end)
        assert (segment.problem is None) == segment.complete
        if not segment.complete:
            assert "incomplete" in segment.problem


def test_an_invalid_frame_stops_the_reader_and_says_where():
    good = segment_bytes(packets=VP8[:2])
    data = good + b"JUNK" + bytes(20) + segment_bytes(packets=VP8[2:3])[len(encode_header(INFO)):]
    segment = parse_mjr(data)
    assert len(segment.packets) == 2
    assert not segment.complete
    assert segment.stopped_at == len(good)
    assert "magic" in segment.problem


@pytest.mark.parametrize("frame, problem", [
    (b"MEET" + struct.pack("!IH", 0, 4) + b"\x80\x00\x00\x01", "shorter than an RTP header"),
    (b"MEET" + struct.pack("!IH", 0, 12) + b"\x00" * 12, "not RTP version 2"),
])
def test_frames_that_are_not_rtp_stop_the_reader(frame, problem):
    data = segment_bytes(packets=VP8[:1]) + frame
    segment = parse_mjr(data)
    assert len(segment.packets) == 1 and not segment.complete
    assert problem in segment.problem


@pytest.mark.parametrize("data, message", [
    (b"", "too short"),
    (b"MJR00001" + b"\x00\x02{}", "magic"),
    (b"MJR00002\x00\x00", "info header of 0 bytes"),
    (b"MJR00002\x00\x10{}", "2 present"),
    (b"MJR00002\x00\x03{x}", "not JSON"),
    (b"MJR00002\x00\x02[]", "not a JSON object"),
    (raw_header(b'{"t":"d"}'), "'t'"),
    (raw_header(b'{"t":"v"}'), "codec"),
    (raw_header(b'{"t":"v","c":"vp8","s":true}'), "time 's'"),
    (raw_header(b'{"t":"v","c":"vp8","s":1,"u":"2"}'), "time 'u'"),
])
def test_not_mjr_is_a_clear_error(data, message):
    with pytest.raises(MjrError, match=message) as info:
        parse_mjr(data, name="seg-0001.mjr")
    assert "seg-0001.mjr" in str(info.value)
    assert isinstance(info.value, ValueError) and info.value.code == "internal"


def test_the_file_name_is_in_the_error(tmp_path):
    path = tmp_path / "broken.mjr"
    path.write_bytes(b"RIFF....WAVE")
    with pytest.raises(MjrError, match="broken.mjr"):
        read_mjr(path)


def test_header_longer_than_janus_pp_rec_reads_is_refused():
    info = MjrInfo("audio", "opus", 0, 0, {"x-dockcast": {"key": "k" * MAX_HEADER_BYTES}})
    with pytest.raises(MjrError, match="at most 1499"):
        encode_header(info)


@pytest.mark.parametrize("info, message", [
    (MjrInfo("data", "text", 0, 0), "not audio or video"),
    (MjrInfo("video", "opus", 0, 0), "not a video codec"),
    (MjrInfo("audio", "opus", 0, 0, {"u": 1}), "replace Janus's own"),
])
def test_info_that_janus_pp_rec_cannot_convert_is_refused(info, message):
    with pytest.raises(MjrError, match=message):
        info.to_json()


@pytest.mark.parametrize("offset, rtp", [(-1, VP8[0].data), (2**32, VP8[0].data),
                                         (0, b"\x80" * 11), (0, b"\x80" * 65536)])
def test_frames_that_do_not_fit_are_refused(offset, rtp):
    with pytest.raises(MjrError):
        encode_frame(offset, rtp)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_give_a_result_or_mjr_error(data):
    try:
        segment = parse_mjr(data)
    except MjrError:
        return
    assert 0 < segment.stopped_at <= len(data)
    assert segment.complete == (segment.stopped_at == len(data))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_after_a_valid_header_give_a_result(tail):
    segment = parse_mjr(encode_header(INFO) + tail)
    assert segment.info == INFO
    assert segment.stopped_at <= len(encode_header(INFO)) + len(tail)
    # what it returns is a valid prefix: reading that prefix again gives the same frames
    prefix = parse_mjr((encode_header(INFO) + tail)[:segment.stopped_at])
    assert prefix.complete and prefix.packets == segment.packets


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(min_size=12, max_size=300)),
                max_size=8))
def test_any_frames_round_trip(frames):
    frames = [(offset, bytes([0x80]) + rtp[1:]) for offset, rtp in frames]
    data = encode_header(INFO) + b"".join(encode_frame(o, r) for o, r in frames)
    segment = parse_mjr(data)
    assert segment.complete
    assert [(p.offset_ms, p.rtp) for p in segment.packets] == frames
