"""Codec bitstream facts the remux needs, read without decoding anything.

- VP8 and VP9 key frames carry the picture size in their uncompressed headers
  (`vp8_keyframe_size`, `vp9_keyframe_size`);
- H.264 carries it in the sequence parameter set (`h264_sps_size`); access units go to
  the muxer in Annex B form (`annexb_access_unit`);
- Opus: a packet's duration from its TOC byte (`opus_packet_samples`, RFC 6716 3.1)
  and silent frames to fill time where the sender sent nothing (`opus_silence`).

Malformed input raises `CodecDataError` (a `plugins.playback.DepacketizeError`).
"""

from __future__ import annotations

import struct

from .errors import DepacketizeError

__all__ = [
    "CodecDataError",
    "vp8_keyframe_size",
    "vp9_keyframe_size",
    "h264_sps_size",
    "h264_unescape",
    "annexb_access_unit",
    "opus_packet_samples",
    "opus_silence",
]

class CodecDataError(DepacketizeError):
    """A codec header or packet that cannot be read; the message says which."""


# -- VP8 / VP9 ---------------------------------------------------------------------------

def vp8_keyframe_size(frame: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a VP8 key frame (RFC 6386 9.1), None for an inter frame.

    Raises CodecDataError when a key frame lacks its start code or is too short."""
    if not frame:
        raise CodecDataError("empty VP8 frame")
    if frame[0] & 0x01:  # P bit set: an inter frame, no size in it
        return None
    if len(frame) < 10 or frame[3:6] != b"\x9d\x01\x2a":
        raise CodecDataError("VP8 key frame without its start code 9d 01 2a")
    width, height = struct.unpack_from("<HH", frame, 6)
    return width & 0x3FFF, height & 0x3FFF


class _Bits:
    """Big-endian bit reader with Exp-Golomb codes (H.264 7.2, 9.1)."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def bit(self) -> int:
        byte = self.pos >> 3
        if byte >= len(self.data):
            raise CodecDataError(f"{self.what} ends too early")
        value = (self.data[byte] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise CodecDataError(f"{self.what} has an Exp-Golomb code over 32 bits")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


_VP9_SYNC = 0x498342
_VP9_CS_RGB = 7


def vp9_keyframe_size(frame: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a VP9 key frame (VP9 bitstream spec 6.2), None for other
    frames. Raises CodecDataError for a header that cannot be read."""
    r = _Bits(frame, "VP9 frame header")
    if r.bits(2) != 2:
        raise CodecDataError("VP9 frame marker is not 2")
    profile = r.bit() | (r.bit() << 1)
    if profile == 3:
        r.bit()
    if r.bit():  # show_existing_frame
        return None
    if r.bit():  # frame_type 1: not a key frame
        return None
    r.bits(2)  # show_frame, error_resilient_mode
    if r.bits(24) != _VP9_SYNC:
        raise CodecDataError("VP9 key frame without its sync code 49 83 42")
    if profile >= 2:
        r.bit()  # ten_or_twelve_bit
    if r.bits(3) != _VP9_CS_RGB:
        r.bit()  # color_range
        if profile in (1, 3):
            r.bits(3)  # subsampling_x, subsampling_y, reserved
    elif profile in (1, 3):
        r.bit()
    return r.bits(16) + 1, r.bits(16) + 1


# -- H.264 -------------------------------------------------------------------------------

_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def h264_unescape(nal: bytes) -> bytes:
    """A NAL unit without its emulation-prevention bytes (``00 00 03`` -> ``00 00``)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00") if b"\x00\x00\x03" in nal else nal


def _skip_scaling_list(r: _Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + r.se()) % 256
        last = nxt or last


def h264_sps_size(sps: bytes) -> tuple[int, int]:
    """``(width, height)`` in pixels from an H.264 sequence parameter set NAL unit
    (header byte included), cropping applied (H.264 7.3.2.1.1, 7.4.2.1.1)."""
    if len(sps) < 4 or sps[0] & 0x1F != 7:
        raise CodecDataError("not an H.264 sequence parameter set")
    r = _Bits(h264_unescape(sps[1:]), "H.264 SPS")
    profile = r.bits(8)
    r.bits(16)  # constraint flags, level
    r.ue()  # seq_parameter_set_id
    chroma = 1
    if profile in _HIGH_PROFILES:
        chroma = r.ue()
        if chroma == 3:
            r.bit()
        r.ue(), r.ue(), r.bit()  # bit depths, transform bypass
        if r.bit():  # seq_scaling_matrix_present_flag
            for i in range(12 if chroma == 3 else 8):
                if r.bit():
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.bit(), r.se(), r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue(), r.bit()  # max_num_ref_frames, gaps_in_frame_num_value_allowed_flag
    width_mbs, height_units = r.ue() + 1, r.ue() + 1
    frame_mbs_only = r.bit()
    if not frame_mbs_only:
        r.bit()
    r.bit()  # direct_8x8_inference_flag
    crop = (r.ue(), r.ue(), r.ue(), r.ue()) if r.bit() else (0, 0, 0, 0)
    sub_w, sub_h = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}.get(chroma, (1, 1))
    unit_x, unit_y = sub_w, sub_h * (2 - frame_mbs_only)
    width = width_mbs * 16 - (crop[0] + crop[1]) * unit_x
    height = (2 - frame_mbs_only) * height_units * 16 - (crop[2] + crop[3]) * unit_y
    if width <= 0 or height <= 0:
        raise CodecDataError(f"H.264 SPS gives an empty picture ({width}x{height})")
    return width, height


def annexb_access_unit(nals: list[bytes]) -> bytes:
    """NAL units each after a 4-byte start code (Annex B byte stream)."""
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


# -- Opus --------------------------------------------------------------------------------

# Frame size in 48 kHz samples per TOC configuration (RFC 6716 3.1, Table 2).
_OPUS_FRAME_SAMPLES = (
    [480, 960, 1920, 2880] * 3  # SILK NB/MB/WB: 10, 20, 40, 60 ms
    + [480, 960] * 2  # Hybrid SWB/FB: 10, 20 ms
    + [120, 240, 480, 960] * 4  # CELT NB/WB/SWB/FB: 2.5, 5, 10, 20 ms
)


def opus_packet_samples(packet: bytes) -> int:
    """The duration of an Opus packet in 48 kHz samples, from its TOC byte."""
    if not packet:
        raise CodecDataError("empty Opus packet")
    toc = packet[0]
    code = toc & 0x03
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(packet) < 2:
            raise CodecDataError("Opus code-3 packet without its frame count byte")
        frames = packet[1] & 0x3F
        if frames == 0:
            raise CodecDataError("Opus code-3 packet with zero frames")
    samples = frames * _OPUS_FRAME_SAMPLES[toc >> 3]
    if samples > 5760:  # 120 ms, the most a packet may hold
        raise CodecDataError(f"Opus packet of {samples} samples, over 120 ms")
    return samples


# TOC bytes of a mono CELT fullband frame, code 0, for 20, 10, 5 and 2.5 ms; the two
# bytes after the TOC decode as CELT's silence flag (the frame janus-pp-rec also uses).
_OPUS_SILENT = ((960, 0xF8), (480, 0xF0), (240, 0xE8), (120, 0xE0))
_OPUS_SILENT_BODY = b"\xff\xfe"


def opus_silence(samples: int) -> list[tuple[int, bytes]]:
    """Silent Opus packets covering ``samples`` (48 kHz) as ``(offset, packet)`` pairs,
    offsets from the start of the silence. The last 0-119 samples stay uncovered (the
    shortest Opus frame is 2.5 ms)."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    for size, toc in _OPUS_SILENT:
        while samples - offset >= size:
            out.append((offset, bytes([toc]) + _OPUS_SILENT_BODY))
            offset += size
    return out
