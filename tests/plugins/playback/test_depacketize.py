"""Depacketizers against aiortc's packetizers, loss and reordering, and hypothesis:
arbitrary bytes raise DepacketizeError or give frames, nothing else."""

from __future__ import annotations

import fractions
import re

import av
import numpy as np
import pytest
from aiortc.codecs import get_encoder
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.playback.depacketize import (
    DepacketizeError,
    FrameAssembler,
    H264Format,
    OpusFormat,
    RtpView,
    Unwrapper,
    Vp8Format,
    Vp9Format,
    payload_format,
)

from .media import CODECS, _rtp


def _encoded(codec: str, frames: int = 12, keyframes=(0,)) -> list[av.Packet]:
    """Frames of noise encoded by PyAV (libvpx / libx264), as the encoder wrote them."""
    ctx = av.CodecContext.create({"VP8": "libvpx", "H264": "libx264"}[codec], "w")
    ctx.width, ctx.height, ctx.pix_fmt = 320, 240, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 30)
    ctx.options = {"tune": "zerolatency"} if codec == "H264" else {"deadline": "realtime"}
    packets = []
    for i in range(frames):
        pixels = np.random.default_rng(i).integers(0, 255, (240, 320, 3), np.uint8)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        if i in keyframes:
            frame.pict_type = av.video.frame.PictureType.I
        packets += ctx.encode(frame)
    return packets + list(ctx.encode(None))


def _rtp_stream(codec: str, encoded: list[av.Packet], *, seq: int = 100, ts: int = 0,
                ssrc: int = 7) -> list[list[RtpView]]:
    """Each encoded frame packetized by aiortc's own packetizer: RTP packets per frame."""
    packer = get_encoder(CODECS[codec])
    frames = []
    for n, packet in enumerate(encoded):
        payloads, _ = packer.pack(packet)
        rtp = []
        for i, payload in enumerate(payloads):
            rtp.append(RtpView.parse(_rtp(96, i == len(payloads) - 1, seq, ts + 3000 * n, ssrc, payload)))
            seq += 1
        frames.append(rtp)
    return frames


def _feed(assembler: FrameAssembler, packets: list[RtpView]):
    out = []
    for p in packets:
        out += assembler.push(p, 0.0)
    return out + assembler.flush()


def _nals(annexb: bytes) -> list[bytes]:
    return [n for n in re.split(b"\x00\x00\x00\x01|\x00\x00\x01", annexb) if n]


def test_vp8_frames_come_back_as_libvpx_wrote_them():
    encoded = _encoded("VP8", keyframes=(0, 6))
    frames = _feed(FrameAssembler(Vp8Format()), [p for f in _rtp_stream("VP8", encoded) for p in f])
    assert [f.data for f in frames] == [bytes(p) for p in encoded]
    assert [f.keyframe for f in frames] == [p.is_keyframe for p in encoded]
    assert frames[0].size == (320, 240) and frames[1].size is None
    assert any(len(f) > 1 for f in _rtp_stream("VP8", encoded))  # fragmented frames


def test_h264_fu_a_and_stap_a_come_back_as_the_access_units():
    encoded = _encoded("H264")
    rtp = _rtp_stream("H264", encoded)
    kinds = {p.payload[0] & 0x1F for f in rtp for p in f}
    assert {24, 28} <= kinds  # STAP-A and FU-A both used
    frames = _feed(FrameAssembler(H264Format()), [p for f in rtp for p in f])
    assert [_nals(f.data) for f in frames] == [_nals(bytes(p)) for p in encoded]
    assert frames[0].keyframe and frames[0].size == (320, 240)
    assert not any(f.keyframe for f in frames[1:])


def test_opus_is_one_packet_per_frame():
    packets = [RtpView.parse(_rtp(111, False, 10 + i, 960 * i, 9, b"\xfc\x01\x02")) for i in range(5)]
    frames = _feed(FrameAssembler(OpusFormat()), packets)
    assert [f.timestamp for f in frames] == [0, 960, 1920, 2880, 3840]
    assert all(f.keyframe for f in frames)


def test_reordered_and_duplicated_packets_are_put_right():
    encoded = _encoded("VP8")
    packets = [p for f in _rtp_stream("VP8", encoded) for p in f]
    shuffled = packets[:]
    shuffled[3], shuffled[5] = shuffled[5], shuffled[3]
    shuffled.insert(4, packets[5])  # again, while 3 is awaited
    shuffled.insert(9, packets[7])  # again, after it was used
    assembler = FrameAssembler(Vp8Format())
    frames = _feed(assembler, shuffled)
    assert [f.data for f in frames] == [bytes(p) for p in encoded]
    stats = assembler.stats
    assert (stats.duplicates, stats.late, stats.lost) == (1, 1, 0)


def test_a_hole_drops_the_frame_and_video_waits_for_the_next_keyframe():
    encoded = _encoded("VP8", frames=12, keyframes=(0, 8))
    rtp = _rtp_stream("VP8", encoded)
    broken = 3
    assert len(rtp[broken]) >= 2
    packets = [p for n, f in enumerate(rtp) for i, p in enumerate(f) if (n, i) != (broken, 1)]
    assembler = FrameAssembler(Vp8Format())
    frames = _feed(assembler, packets)
    assert [f.data for f in frames] == [bytes(p) for p in encoded[:3] + encoded[8:]]
    stats = assembler.stats
    assert (stats.lost, stats.dropped_incomplete, stats.dropped_before_keyframe) == (1, 1, 4)


def test_a_whole_lost_frame_also_waits_for_the_keyframe():
    encoded = _encoded("VP8", frames=10, keyframes=(0, 6))
    rtp = _rtp_stream("VP8", encoded)
    packets = [p for n, f in enumerate(rtp) if n != 2 for p in f]
    frames = _feed(FrameAssembler(Vp8Format()), packets)
    assert [f.data for f in frames] == [bytes(p) for p in encoded[:2] + encoded[6:]]


def test_lost_audio_packets_lose_only_themselves():
    packets = [RtpView.parse(_rtp(111, False, 65530 + i, 2**32 - 1920 + 960 * i, 9, b"\xfc\xff"))
               for i in range(8) if i != 3]
    assembler = FrameAssembler(OpusFormat(), first_timestamp=2**32 - 1920)
    frames = _feed(assembler, packets)
    assert [f.timestamp - (2**32 - 1920) for f in frames] == [960 * i for i in range(8) if i != 3]
    assert assembler.stats.lost == 1 and assembler.stats.frames == 7


def test_a_stream_starts_at_its_first_keyframe():
    encoded = _encoded("VP8", frames=8, keyframes=(0, 5))
    rtp = _rtp_stream("VP8", encoded)
    frames = _feed(FrameAssembler(Vp8Format()), [p for f in rtp[2:] for p in f])
    assert frames[0].data == bytes(encoded[5]) and len(frames) == 3


def test_unwrapper_follows_both_wraps():
    seqs = Unwrapper(16)
    assert [seqs.unwrap(s) for s in (65534, 65535, 0, 1, 65535, 2)] == [65534, 65535, 65536, 65537, 65535, 65538]
    stamps = Unwrapper(32, start=2**32 - 10)
    assert stamps.unwrap(5) == 2**32 + 5
    assert stamps.unwrap(2**32 - 20) == 2**32 - 20


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
