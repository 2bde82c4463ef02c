"""sfu.h264: key-frame detection on aiortc's H.264 packetizer output and RFC 6184
hand-built payloads."""

from __future__ import annotations

import fractions
import pathlib

import av
import numpy
import pytest
from aiortc.codecs.h264 import H264Encoder
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu import rtp
from sfu.h264 import h264_is_keyframe

DATA = pathlib.Path(__file__).parents[1] / "data"


def test_aiortc_encoder_output():
    encoder = H264Encoder()
    frames = []
    # Noise, so the key frame is larger than one packet (an uninitialised frame may be
    # blank, and its IDR fit in one NAL without fragments).
    noise = numpy.random.default_rng(7).integers(0, 256, (240, 320, 3), dtype=numpy.uint8)
    for pts in (0, 3000):
        frame = av.VideoFrame.from_ndarray(noise, format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = pts, fractions.Fraction(1, 90000)
        frames.append(encoder.encode(frame)[0])
    key, delta = frames
    assert h264_is_keyframe(key[0])  # STAP-A with SPS and PPS
    fu_starts = [p for p in key if p[0] & 0x1F == 28 and p[1] & 0x80]
    assert fu_starts and all(h264_is_keyframe(p) for p in fu_starts)  # IDR, first fragment
    assert not any(h264_is_keyframe(p) for p in key if p[0] & 0x1F == 28 and not p[1] & 0x80)
    assert not any(h264_is_keyframe(p) for p in delta)


def test_fixture_stap_a():
    payload = rtp.RtpPacket.parse((DATA / "rtp_h264_stap_a.bin").read_bytes()).payload
    assert payload[0] & 0x1F == 24 and h264_is_keyframe(payload)


@pytest.mark.parametrize("payload, expected", [
    (b"\x65\x88", True), (b"\x67\x42", True), (b"\x41\x9a", False), (b"\x68\xce", False),
    (b"\x78\x00\x02\x68\xce\x00\x02\x65\x88", True),  # STAP-A: PPS then IDR
    (b"\x78\x00\x02\x68\xce\x00\x02\x41\x9a", False),
    (b"\x78\x00\x09\x68\xce", False),  # STAP-A unit runs past the end
    (b"\x78\x00\x00\x65", False),  # zero-size unit
    (b"\x7c\x85\x00", True), (b"\x7c\x05\x00", False), (b"\x7c\x81\x00", False),  # FU-A
    (b"\x7c", False), (b"", False), (b"\x79\x00", False),  # truncated FU-A, empty, STAP-B
])
def test_rfc6184_payloads(payload, expected):
    assert h264_is_keyframe(payload) is expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=20))
def test_hostile_bytes_never_raise(payload):
    assert h264_is_keyframe(payload) in (True, False)
