"""Bitstream facts read from real encoders' output; Opus TOC durations and silence."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.playback.codecs import (
    CodecDataError,
    annexb_access_unit,
    h264_sps_size,
    opus_packet_samples,
    opus_silence,
    vp8_keyframe_size,
    vp9_keyframe_size,
)


def _first_packet(codec: str, width: int, height: int, **options) -> bytes:
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 30)
    ctx.options = options
    frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24")
    packets = list(ctx.encode(frame.reformat(format="yuv420p"))) + list(ctx.encode(None))
    return bytes(packets[0])


@pytest.mark.parametrize(("width", "height"), [(320, 240), (202, 98)])
def test_vp8_and_vp9_key_frames_give_their_size(width, height):
    assert vp8_keyframe_size(_first_packet("libvpx", width, height)) == (width, height)
    assert vp9_keyframe_size(_first_packet("libvpx-vp9", width, height)) == (width, height)


@pytest.mark.parametrize(("width", "height", "profile"), [
    (320, 240, "baseline"), (202, 98, "high"), (1280, 720, "high")])
def test_h264_sps_gives_the_cropped_size(width, height, profile):
    stream = _first_packet("libx264", width, height, profile=profile)
    sps = next(n for n in stream.split(b"\x00\x00\x01") if n and n[0] & 0x1F == 7)
    assert h264_sps_size(sps.rstrip(b"\x00")) == (width, height)


def test_inter_frames_have_no_size_and_bad_headers_are_named():
    assert vp8_keyframe_size(b"\x01\x00\x00") is None
    with pytest.raises(CodecDataError, match="start code"):
        vp8_keyframe_size(b"\x00" * 12)
    with pytest.raises(CodecDataError, match="sync code"):
        vp9_keyframe_size(b"\x82\x00\x00\x00\x00\x00\x00\x00")
    with pytest.raises(CodecDataError, match="not an H.264 sequence parameter set"):
        h264_sps_size(b"\x68\x00\x00\x00")
    assert annexb_access_unit([b"\x67\x01", b"\x65"]) == b"\x00\x00\x00\x01\x67\x01\x00\x00\x00\x01\x65"


@pytest.mark.parametrize(("packet", "samples"), [
    (b"\xfc\x00", 960),  # CELT FB 20 ms, stereo, one frame
    (b"\x08", 960),  # SILK NB 20 ms
    (b"\x19\x00", 2 * 2880),  # SILK 60 ms, two frames (code 1)
    (b"\x63\x03", 3 * 480),  # Hybrid SWB 10 ms, code 3, three frames
    (b"\xe3\x30", 48 * 120),  # CELT 2.5 ms x 48: 120 ms, the most
])
def test_opus_duration_from_the_toc(packet, samples):
    assert opus_packet_samples(packet) == samples


@pytest.mark.parametrize(("packet", "reason"), [
    (b"", "empty"), (b"\x03", "frame count"), (b"\x03\x00", "zero frames"),
    (b"\xe3\x31", "over 120 ms")])
def test_opus_packets_refused(packet, reason):
    with pytest.raises(CodecDataError, match=reason):
        opus_packet_samples(packet)


def test_opus_silence_covers_the_hole_and_decodes_to_silence():
    filled = opus_silence(960 * 3 + 480 + 120 + 50)
    assert [offset for offset, _ in filled] == [0, 960, 1920, 2880, 3360]
    decoder = av.CodecContext.create("opus", "r")
    decoder.sample_rate, decoder.layout = 48000, "stereo"
    total = 0
    for _, packet in filled:
        for frame in decoder.decode(av.Packet(packet)):
            assert not np.any(frame.to_ndarray())
            total += frame.samples
        assert opus_packet_samples(packet) in (960, 480, 120)
    assert total == 960 * 3 + 480 + 120  # the last 50 samples stay a (tiny) hole
    assert opus_silence(100) == []


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([vp8_keyframe_size, vp9_keyframe_size, h264_sps_size, opus_packet_samples]),
       st.binary(max_size=48))
def test_any_bytes_give_a_value_or_codec_data_error(parse, data):
    try:
        parse(data)
    except CodecDataError:
        pass
