"""sfu.vp8: the RFC 7741 payload descriptor, key-frame detection and PictureID
rewriting, against aiortc's VP8 packetizer and descriptor; plus twin agreement."""

from __future__ import annotations

import dataclasses
import fractions
import importlib
import pathlib

import av
import pytest
from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu import _vp8_py as pure
from sfu import rtp, vp8
from sfu.errors import MalformedPacket

DATA = pathlib.Path(__file__).parents[1] / "data"
SETTINGS = settings(max_examples=200, deadline=None)

try:
    compiled = importlib.import_module("sfu._vp8")
except ImportError:  # not built: the agreement tests skip
    compiled = None


@pytest.fixture(scope="module")
def encoded_frames() -> list[list[bytes]]:
    """Payloads of a key frame then a delta frame from aiortc's VP8 encoder."""
    encoder = Vp8Encoder()
    encoder.picture_id = 32766  # wraps to 0 on the second frame
    frames = []
    for pts in (0, 3000):
        frame = av.VideoFrame(width=320, height=240, format="yuv420p")
        frame.pts, frame.time_base = pts, fractions.Fraction(1, 90000)
        frames.append(encoder.encode(frame)[0])
    return frames


def test_aiortc_encoder_output(encoded_frames):
    key, delta = encoded_frames
    first = vp8.Vp8Descriptor.parse(key[0])
    assert first.is_keyframe and first.start_of_partition and first.picture_id == 32766
    assert first.picture_id_long and first.size == 4 and first.tl0picidx == -1
    assert vp8.vp8_is_keyframe(key[0])
    assert not any(vp8.vp8_is_keyframe(p) for p in key[1:])  # continuation packets
    assert not any(vp8.vp8_is_keyframe(p) for p in delta)
    assert vp8.Vp8Descriptor.parse(delta[0]).picture_id == 32767


def test_frame_size_and_temporal_id(encoded_frames):
    key, delta = encoded_frames
    assert vp8.vp8_frame_size(key[0]) == (320, 240)  # from the key frame's header
    assert all(vp8.vp8_frame_size(p) is None for p in [*key[1:], *delta])  # continuations, deltas
    assert vp8.vp8_temporal_id(bytes(12) + key[0], 12) == -1  # aiortc writes no TID
    layered = vp8.Vp8Descriptor(start_of_partition=True, picture_id=9, tl0picidx=3, tid=2).serialize()
    assert vp8.vp8_temporal_id(b"R" * 20 + layered + b"\x01", 20) == 2
    assert vp8.vp8_temporal_id(layered, 99) == -1 and vp8.vp8_temporal_id(layered[:2], 0) == -1


@pytest.mark.parametrize("theirs", [
    VpxPayloadDescriptor(partition_start=1, partition_id=0),
    VpxPayloadDescriptor(partition_start=0, partition_id=7, picture_id=300),
    VpxPayloadDescriptor(partition_start=1, partition_id=0, picture_id=5, tl0picidx=200),
    VpxPayloadDescriptor(partition_start=1, partition_id=2, tid=(2, 1), keyidx=17),
    VpxPayloadDescriptor(partition_start=1, partition_id=0, picture_id=0x7FFF, tl0picidx=0,
                         tid=(3, 0)),
])
def test_descriptor_matches_aiortc(theirs):
    data = bytes(theirs)
    ours = vp8.Vp8Descriptor.parse(data + b"\x00")
    assert (ours.start_of_partition, ours.partition_id) == (bool(theirs.partition_start), theirs.partition_id)
    assert ours.picture_id == (-1 if theirs.picture_id is None else theirs.picture_id)
    assert ours.tl0picidx == (-1 if theirs.tl0picidx is None else theirs.tl0picidx)
    assert (ours.tid, ours.layer_sync) == (theirs.tid or (-1, False))
    assert ours.keyidx == (-1 if theirs.keyidx is None else theirs.keyidx)
    assert ours.size == len(data) and ours.serialize() == data
    parsed, rest = VpxPayloadDescriptor.parse(ours.serialize() + b"rest")
    assert rest == b"rest" and parsed.picture_id == theirs.picture_id


def test_rfc7741_short_picture_id_and_non_reference():
    # X=1 N=1 S=1 PID=1; I=1 L=1; 7-bit PictureID 0x55; TL0PICIDX 9; then a delta frame.
    data = bytes([0xB1, 0xC0, 0x55, 0x09, 0x01])
    d = vp8.Vp8Descriptor.parse(data)
    assert d == vp8.Vp8Descriptor(start_of_partition=True, partition_id=1, non_reference=True,
                                  picture_id=0x55, picture_id_long=False, tl0picidx=9, size=4)
    assert d.serialize() == data[:4] and not vp8.vp8_is_keyframe(data)
    assert vp8.Vp8Descriptor(picture_id=200).serialize() == bytes([0x80, 0x80, 0x80, 200])


def test_fixture_packet_is_a_keyframe():
    payload = rtp.RtpPacket.parse((DATA / "rtp_vp8_keyframe.bin").read_bytes()).payload
    assert vp8.vp8_is_keyframe(payload)
    d = vp8.Vp8Descriptor.parse(payload)
    assert (d.picture_id, d.picture_id_long, d.size) == (4660, True, 4)
    assert payload[d.size + 3:d.size + 6] == b"\x9d\x01\x2a"  # VP8 key frame start code


def test_rewrite_picture_id_and_tl0picidx():
    long_form = vp8.Vp8Descriptor(start_of_partition=True, picture_id=1000, tl0picidx=3,
                                  tid=1).serialize() + b"\x10payload"
    out = vp8.vp8_rewrite_picture_id(long_form, 0x8000 + 77, 256 + 4)  # masked to 15 / 8 bits
    assert len(out) == len(long_form) and out[6:] == long_form[6:]
    d = vp8.Vp8Descriptor.parse(out)
    assert (d.picture_id, d.picture_id_long, d.tl0picidx, d.tid) == (77, True, 4, 1)
    short = bytes([0x90, 0x80, 0x05]) + b"\x00x"
    assert vp8.Vp8Descriptor.parse(vp8.vp8_rewrite_picture_id(short, 300, 9)).picture_id == 300 & 0x7F
    assert vp8.vp8_rewrite_picture_id(short, -1, 9) == short  # nothing to write, nothing added
    bare = b"\x10\x00abc"
    assert vp8.vp8_rewrite_picture_id(bare, 5, 5) == bare


@pytest.mark.parametrize("data", [b"", b"\x80", b"\x80\x80", b"\x80\x80\x80", b"\x80\x40",
                                  b"\x80\x20", b"\x80\xf0\x81\x00\x00"])
def test_truncated(data):
    with pytest.raises(MalformedPacket):
        vp8.Vp8Descriptor.parse(data)
    with pytest.raises(MalformedPacket):
        vp8.vp8_rewrite_picture_id(data, 1, 1)
    assert vp8.vp8_is_keyframe(data) is False


@pytest.mark.parametrize("bad", [dict(partition_id=8), dict(picture_id=0x8000),
                                 dict(tl0picidx=256), dict(tid=4), dict(keyidx=32)])
def test_serialize_rejects_out_of_range_fields(bad):
    with pytest.raises(ValueError):
        vp8.Vp8Descriptor(**bad).serialize()


descriptors = st.builds(
    dict, start_of_partition=st.booleans(), partition_id=st.integers(0, 7),
    non_reference=st.booleans(), picture_id=st.integers(-1, 0x7FFF),
    picture_id_long=st.booleans(), tl0picidx=st.integers(-1, 255), tid=st.integers(-1, 3),
    layer_sync=st.booleans(), keyidx=st.integers(-1, 31),
)


@SETTINGS
@given(descriptors, st.binary(max_size=4))
def test_round_trip(fields, rest):
    data = vp8.Vp8Descriptor(**fields).serialize()
    d = vp8.Vp8Descriptor.parse(data + rest)
    expected = dict(fields, picture_id_long=fields["picture_id"] > 127 or (
        fields["picture_id"] >= 0 and fields["picture_id_long"]),
        layer_sync=fields["layer_sync"] and fields["tid"] >= 0)
    assert {k: getattr(d, k) for k in expected} == expected
    assert d.size == len(data) and d.serialize() == data


def outcome(call, *args):
    try:
        result = call(*args)
    except MalformedPacket:
        return "MalformedPacket"
    except Exception as exc:  # noqa: BLE001 - any other exception is the failure
        return f"unexpected {type(exc).__name__}: {exc}"
    return dataclasses.astuple(result) if dataclasses.is_dataclass(result) else result


def vp8_calls(module, data: bytes) -> list:
    return [outcome(module.Vp8Descriptor.parse, data), outcome(module.vp8_is_keyframe, data),
            outcome(module.vp8_rewrite_picture_id, data, 0x1234, 77),
            outcome(module.vp8_frame_size, data),
            outcome(module.vp8_temporal_id, bytes(12) + data, 12),
            outcome(module.vp8_temporal_id, data, len(data) // 2)]


@SETTINGS
@given(st.binary(max_size=12))
def test_hostile_bytes_give_a_result_or_malformed(data):
    for result in vp8_calls(vp8, data):
        assert not (isinstance(result, str) and result.startswith("unexpected")), result


@pytest.mark.skipif(compiled is None, reason="sfu._vp8 is not built")
@SETTINGS
@given(st.one_of(st.binary(max_size=12), descriptors.map(lambda f: pure.Vp8Descriptor(**f).serialize())))
def test_compiled_and_pure_agree(data):
    assert vp8_calls(compiled, data) == vp8_calls(pure, data)


@pytest.mark.skipif(compiled is None, reason="sfu._vp8 is not built")
@SETTINGS
@given(descriptors)
def test_compiled_and_pure_serialize_alike(fields):
    assert compiled.Vp8Descriptor(**fields).serialize() == pure.Vp8Descriptor(**fields).serialize()
    assert repr(compiled.Vp8Descriptor(**fields)) == repr(pure.Vp8Descriptor(**fields))
