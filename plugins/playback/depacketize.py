"""The depacketizers: one frame's RTP payloads back into the frame its encoder made.

`plugins.playback.assembler.FrameAssembler` groups a stream's packets into frames and
hands each frame's payloads to its codec's payload format here:

- `Vp8Format` (RFC 7741): the payload descriptors stripped, partitions joined;
- `Vp9Format` (RFC 9628): the payload descriptors stripped (one spatial layer);
- `H264Format` (RFC 6184): single NAL units, STAP-A and FU-A into an access unit in
  Annex B form (start codes; FFmpeg's MP4 muxer takes the parameter sets from the first
  key frame and rewrites the units as MP4 samples itself);
- `OpusFormat` (RFC 7587): one packet, one frame.

Malformed payloads raise `DepacketizeError` from a format's ``assemble``, never
anything else; the assembler counts and drops such frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sfu import MalformedPacket
from sfu.vp8 import Vp8Descriptor

from . import codecs
from .errors import DepacketizeError

__all__ = [
    "DepacketizeError",
    "AssembledFrame",
    "PayloadFormat",
    "Vp8Format",
    "Vp9Format",
    "H264Format",
    "OpusFormat",
    "payload_format",
]


@dataclass(frozen=True, slots=True)
class AssembledFrame:
    """What a payload format makes of one frame's payloads; ``size`` (width, height)
    when the frame carries it (key frames)."""

    data: bytes
    keyframe: bool
    size: tuple[int, int] | None = None


class PayloadFormat(Protocol):
    """A codec's RTP payload format: how one frame's payloads become one frame."""

    kind: str  # "audio" or "video"
    one_packet_per_frame: bool

    def assemble(self, payloads: list[bytes]) -> AssembledFrame:
        """The frame in these payloads (in sequence order); raises DepacketizeError."""
        ...


class Vp8Format:
    """VP8 (RFC 7741): descriptors stripped; a frame must start at partition 0."""

    kind = "video"
    one_packet_per_frame = False

    def assemble(self, payloads: list[bytes]) -> AssembledFrame:
        parts = []
        first = None
        for payload in payloads:
            try:
                d = Vp8Descriptor.parse(payload)
            except MalformedPacket as exc:
                raise DepacketizeError(f"VP8 payload descriptor: {exc}") from None
            if first is None:
                first = d
            parts.append(payload[d.size:])
        if first is None or not (first.start_of_partition and first.partition_id == 0):
            raise DepacketizeError("VP8 frame does not start at the start of partition 0")
        data = b"".join(parts)
        if not data:
            raise DepacketizeError("VP8 frame with no data")
        size = codecs.vp8_keyframe_size(data) if first.is_keyframe else None
        return AssembledFrame(data, first.is_keyframe, size)


def _vp9_descriptor(payload: bytes) -> tuple[int, bool, bool, int]:
    """``(size, begins_frame, inter_predicted, spatial_id)`` of a VP9 payload descriptor
    (RFC 9628 4.2)."""
    n = len(payload)
    if n < 1:
        raise DepacketizeError("empty VP9 payload")
    b0 = payload[0]
    i, p, l, f, b, v = b0 & 0x80, b0 & 0x40, b0 & 0x20, b0 & 0x10, b0 & 0x08, b0 & 0x02
    pos, sid = 1, 0

    def need(k: int) -> None:
        if pos + k > n:
            raise DepacketizeError("VP9 payload descriptor truncated")

    if i:
        need(1)
        pos += 2 if payload[pos] & 0x80 else 1
    if l:
        need(1)
        sid = (payload[pos] >> 1) & 0x07
        pos += 1 if f else 2
    if f and p:
        for _ in range(3):
            need(1)
            more = payload[pos] & 0x01
            pos += 1
            if not more:
                break
    if v:
        need(1)
        ss = payload[pos]
        pos += 1
        if ss & 0x10:  # Y: a resolution per spatial layer
            pos += 4 * ((ss >> 5) + 1)
        if ss & 0x08:  # G: picture group description
            need(1)
            groups = payload[pos]
            pos += 1
            for _ in range(groups):
                need(1)
                pos += 1 + ((payload[pos] >> 2) & 0x03)
    need(0)
    return pos, bool(b), bool(p), sid


class Vp9Format:
    """VP9 (RFC 9628), one spatial layer: descriptors stripped."""

    kind = "video"
    one_packet_per_frame = False

    def assemble(self, payloads: list[bytes]) -> AssembledFrame:
        parts, head = [], None
        for payload in payloads:
            size, begins, inter, sid = _vp9_descriptor(payload)
            head = head or (begins, inter, sid)
            parts.append(payload[size:])
        if head is None or not head[0]:
            raise DepacketizeError("VP9 frame does not start with its beginning-of-frame packet")
        data = b"".join(parts)
        if not data:
            raise DepacketizeError("VP9 frame with no data")
        size = None
        if not head[1] and head[2] == 0:
            size = codecs.vp9_keyframe_size(data)
        return AssembledFrame(data, size is not None, size)


_STAP_A, _FU_A = 24, 28
_SLICE, _IDR, _SPS = 1, 5, 7


def _h264_nals(payloads: list[bytes]) -> list[bytes]:
    """The NAL units of one access unit's RTP payloads (packetization mode 0 or 1)."""
    nals: list[bytes] = []
    fragment: bytearray | None = None
    for payload in payloads:
        if not payload:
            raise DepacketizeError("empty H.264 payload")
        nal_type = payload[0] & 0x1F
        if nal_type == _FU_A:
            if len(payload) < 3:
                raise DepacketizeError("H.264 FU-A shorter than 3 bytes")
            start, end = payload[1] & 0x80, payload[1] & 0x40
            if start:
                if fragment is not None:
                    raise DepacketizeError("H.264 FU-A starts again before it ended")
                fragment = bytearray([(payload[0] & 0xE0) | (payload[1] & 0x1F)])
            elif fragment is None:
                raise DepacketizeError("H.264 FU-A continues a unit whose start is missing")
            fragment += payload[2:]
            if end:
                nals.append(bytes(fragment))
                fragment = None
            continue
        if fragment is not None:
            raise DepacketizeError("H.264 FU-A interrupted before its end")
        if nal_type == _STAP_A:
            pos, n = 1, len(payload)
            while pos < n:
                if pos + 2 > n:
                    raise DepacketizeError("H.264 STAP-A unit size truncated")
                size = (payload[pos] << 8) | payload[pos + 1]
                if size == 0 or pos + 2 + size > n:
                    raise DepacketizeError("H.264 STAP-A unit runs past the packet")
                nals.append(payload[pos + 2:pos + 2 + size])
                pos += 2 + size
        elif 1 <= nal_type <= 23:
            nals.append(payload)
        else:
            raise DepacketizeError(f"H.264 NAL unit type {nal_type} is not supported "
                                   "(packetization mode 1 uses 1-23, STAP-A, FU-A)")
    if fragment is not None:
        raise DepacketizeError("H.264 FU-A not ended at the end of the frame")
    return nals


class H264Format:
    """H.264 (RFC 6184) into Annex B access units; a frame's first slice must start the
    picture."""

    kind = "video"
    one_packet_per_frame = False

    def assemble(self, payloads: list[bytes]) -> AssembledFrame:
        nals = _h264_nals(payloads)
        sps = None
        keyframe = False
        first_slice = True
        for nal in nals:
            nal_type = nal[0] & 0x1F
            if nal_type == _SPS:
                sps = nal
            elif nal_type in (_SLICE, _IDR):
                # first_mb_in_slice is ue(v): 0 is the single bit 1
                if first_slice and (len(nal) < 2 or not nal[1] & 0x80):
                    raise DepacketizeError("H.264 access unit starts after its first slice")
                first_slice = False
                keyframe = keyframe or nal_type == _IDR
        if first_slice:
            raise DepacketizeError("H.264 access unit without a picture slice")
        size = codecs.h264_sps_size(sps) if sps else None
        return AssembledFrame(codecs.annexb_access_unit(nals), keyframe, size)


class OpusFormat:
    """Opus (RFC 7587): each RTP payload is one Opus packet, checked by its TOC."""

    kind = "audio"
    one_packet_per_frame = True

    def assemble(self, payloads: list[bytes]) -> AssembledFrame:
        if len(payloads) != 1:
            raise DepacketizeError("an Opus frame is one RTP payload")
        codecs.opus_packet_samples(payloads[0])
        return AssembledFrame(payloads[0], True)


_FORMATS = {"video/vp8": Vp8Format, "video/vp9": Vp9Format, "video/h264": H264Format,
            "audio/opus": OpusFormat}


def payload_format(codec: str) -> PayloadFormat:
    """The payload format for a codec MIME type (``video/VP8``, ``audio/opus``...;
    case does not matter). Raises DepacketizeError for a codec we cannot depacketize."""
    try:
        return _FORMATS[codec.lower()]()
    except KeyError:
        raise DepacketizeError(f"no depacketizer for codec {codec!r} (known: "
                               f"{', '.join(sorted(_FORMATS))})") from None
