"""The depacketizers against aiortc's packetizers, and hypothesis: any payloads give a
frame or DepacketizeError, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.playback.assembler import FrameAssembler
from plugins.playback.depacketize import (
    DepacketizeError,
    H264Format,
    OpusFormat,
    Vp8Format,
    Vp9Format,
    payload_format,
)

from .media import encoded_video, feed, nals, rtp_frames


def test_vp8_frames_come_back_as_libvpx_wrote_them():
    encoded = encoded_video("VP8", keyframes=(0, 6))
    frames = feed(FrameAssembler(Vp8Format()), [p for f in rtp_frames("VP8", encoded) for p in f])
    assert [f.data for f in frames] == [bytes(p) for p in encoded]
    assert [f.keyframe for f in frames] == [p.is_keyframe for p in encoded]
    assert frames[0].size == (320, 240) and frames[1].size is None
    assert any(len(f) > 1 for f in rtp_frames("VP8", encoded))  # fragmented frames


def test_h264_fu_a_and_stap_a_come_back_as_the_access_units():
    encoded = encoded_video("H264")
    rtp = rtp_frames("H264", encoded)
    kinds = {p.payload[0] & 0x1F for f in rtp for p in f}
    assert {24, 28} <= kinds  # STAP-A and FU-A both used
    frames = feed(FrameAssembler(H264Format()), [p for f in rtp for p in f])
    assert [nals(f.data) for f in frames] == [nals(bytes(p)) for p in encoded]
    assert frames[0].keyframe and frames[0].size == (320, 240)
    assert not any(f.keyframe for f in frames[1:])


def test_h264_payloads_refused_with_reasons():
    fmt = H264Format()
    idr = bytes([0x65, 0x88, 0x84])
    with pytest.raises(DepacketizeError, match="start is missing"):
        fmt.assemble([bytes([0x7C, 0x05, 0xAA])])  # FU-A continuation, no start
    with pytest.raises(DepacketizeError, match="not ended"):
        fmt.assemble([bytes([0x7C, 0x85, 0xAA])])
    with pytest.raises(DepacketizeError, match="type 25"):
        fmt.assemble([bytes([0x19, 0x00])])
    with pytest.raises(DepacketizeError, match="after its first slice"):
        fmt.assemble([bytes([0x65, 0x08, 0x84])])  # first_mb_in_slice is not 0
    with pytest.raises(DepacketizeError, match="runs past"):
        fmt.assemble([bytes([0x18, 0x00, 0x09]) + idr])
    made = fmt.assemble([bytes([0x18, 0x00, 0x03]) + idr])  # a STAP-A holding one IDR
    assert made.data == b"\x00\x00\x00\x01" + idr and made.keyframe


def test_vp9_descriptor_with_layers_and_scalability_structure():
    # I (15-bit id), L (TID/SID, TL0PICIDX), V (SS: one layer with its size, a group)
    descriptor = bytes([0xAA | 0x08, 0x80, 0x01, 0x00, 0x05,
                        0x18, 0x01, 0x40, 0x00, 0xF0, 0x01, 0x04, 0x01])
    vp9_key = bytes([0x82, 0x49, 0x83, 0x42, 0x00, 0x13, 0xF0, 0x0E, 0xF6])
    made = Vp9Format().assemble([descriptor + vp9_key])
    assert made.data == vp9_key and made.keyframe and made.size == (320, 240)
    with pytest.raises(DepacketizeError, match="truncated"):
        Vp9Format().assemble([descriptor[:7]])


def test_unknown_codec_is_named():
    with pytest.raises(DepacketizeError, match="video/AV1"):
        payload_format("video/AV1")
    assert isinstance(payload_format("VIDEO/vp8"), Vp8Format)


FORMATS = [Vp8Format(), Vp9Format(), H264Format(), OpusFormat()]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FORMATS), st.lists(st.binary(max_size=40), min_size=1, max_size=5))
def test_any_payloads_give_a_frame_or_depacketize_error(fmt, payloads):
    try:
        made = fmt.assemble(payloads)
    except DepacketizeError:
        return
    assert isinstance(made.data, bytes) and made.data
