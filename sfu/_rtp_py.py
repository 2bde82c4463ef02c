"""Pure-Python twin of ``sfu/_rtp.pyx``: RTP header parsing and rewriting.

RFC 3550 (fixed header, CSRCs, padding) and RFC 8285 (one-byte ``0xBEDE`` and
two-byte ``0x100X`` header extensions). Any bad input raises ``MalformedPacket``.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

from .errors import MalformedPacket

__all__ = [
    "RtpPacket",
    "abs_send_time",
    "find_extension",
    "is_rtcp",
    "parse_header",
    "rewrite",
    "seq_diff",
    "seq_newer",
]

_FIXED = struct.Struct("!BBHII")
_SEQ_TS_SSRC = struct.Struct("!HII")
_EXT_HEADER = struct.Struct("!HH")
_U32 = struct.Struct("!I")

ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE = 0x1000


def _is_two_byte(profile: int) -> bool:
    return profile & 0xFFF0 == TWO_BYTE_PROFILE


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 demultiplexing: RTCP packet types 192..223 sit where RTP has M+PT."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def parse_header(data: bytes) -> tuple:
    """Check the RTP framing and return the header fields without decoding extensions.

    ``(payload_type, marker, sequence_number, timestamp, ssrc, payload_offset,
    payload_end, ext_profile, ext_offset, ext_length)``; ``payload_end`` excludes
    padding, ``ext_offset``/``ext_length`` locate the extension elements (0/0/0 if none).
    """
    n = len(data)
    if n < 12:
        raise MalformedPacket("RTP packet shorter than 12 bytes")
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != 2:
        raise MalformedPacket("RTP version is not 2")
    pos = 12 + 4 * (b0 & 0x0F)
    profile = ext_offset = ext_length = 0
    if b0 & 0x10:
        if pos + 4 > n:
            raise MalformedPacket("RTP extension header truncated")
        profile, words = _EXT_HEADER.unpack_from(data, pos)
        ext_offset = pos + 4
        ext_length = 4 * words
        pos = ext_offset + ext_length
    if pos > n:
        raise MalformedPacket("RTP header truncated")
    end = n
    if b0 & 0x20:
        pad = data[n - 1]
        if pad == 0 or pad > n - pos:
            raise MalformedPacket("RTP padding length invalid")
        end = n - pad
    return (b1 & 0x7F, b1 >> 7, seq, ts, ssrc, pos, end, profile, ext_offset, ext_length)


def _elements(data, profile: int, start: int, stop: int):
    """Yield ``(offset, id, header_size, length)`` per RFC 8285 element, padding skipped.

    Raises MalformedPacket when an element runs past the extension block.
    """
    two_byte = _is_two_byte(profile)
    pos = start
    while pos < stop:
        b = data[pos]
        if two_byte:
            if b == 0:
                pos += 1
                continue
            if pos + 2 > stop:
                raise MalformedPacket("RTP two-byte extension element truncated")
            ext_id, hdr, length = b, 2, data[pos + 1]
        else:
            ext_id = b >> 4
            if ext_id == 0:  # padding byte (its length nibble is ignored, as libwebrtc does)
                pos += 1
                continue
            if ext_id == 15:  # RFC 8285: stop processing at the reserved id
                return
            hdr, length = 1, (b & 0x0F) + 1
        if pos + hdr + length > stop:
            raise MalformedPacket("RTP extension element truncated")
        yield pos, ext_id, hdr, length
        pos += hdr + length


def find_extension(data: bytes, ext_id: int) -> bytes | None:
    """The value of the first header-extension element with ``ext_id``, or None."""
    header = parse_header(data)
    profile, start, length = header[7], header[8], header[9]
    if profile != ONE_BYTE_PROFILE and not _is_two_byte(profile):
        return None
    for pos, element_id, hdr, size in _elements(data, profile, start, start + length):
        if element_id == ext_id:
            return bytes(data[pos + hdr : pos + hdr + size])
    return None


def rewrite(
    data: bytes,
    ssrc: int,
    sequence_number: int,
    timestamp: int,
    payload_type: int,
    ext_map: bytes | None = None,
    abs_send_time_id: int = 0,
    abs_send_time: int = 0,
    twcc_id: int = 0,
    twcc_seq: int = -1,
) -> bytes:
    """A copy of ``data`` with SSRC, sequence number, timestamp and payload type replaced.

    ``ssrc``, ``timestamp`` (mod 2**32) and ``sequence_number`` (mod 2**16) wrap.
    ``ext_map`` (256 bytes or None) renames each extension element ``i`` to
    ``ext_map[i]``; a 0 (or, in one-byte form, a new id above 14) blanks the element
    into RFC 8285 padding, so the length never changes. If ``abs_send_time_id`` > 0,
    a 3-byte element whose new id equals it gets ``abs_send_time`` (24 bits); or, with
    ``twcc_id`` (1..255) and ``twcc_seq`` >= 0 (mod 2**16), becomes the transport-cc
    element ``twcc_id`` holding ``twcc_seq`` and one padding byte (not in one-byte form
    when ``twcc_id`` > 14: that packet keeps its abs-send-time).
    """
    return _rewrite(data, ssrc, sequence_number, timestamp, payload_type, ext_map,
                    abs_send_time_id, abs_send_time, twcc_id, twcc_seq)[0]


def _rewrite(data, ssrc, sequence_number, timestamp, payload_type, ext_map,
             abs_send_time_id, abs_send_time, twcc_id, twcc_seq) -> tuple[bytes, int]:
    """``rewrite``, and how many elements got the transport-cc stamp. ``twcc_seq`` may
    be a callable giving the number: it is called once, only when there is an element
    to stamp and the whole extension block was read without error (the pure fan-out
    records the packet in its send log there, and only there)."""
    if not 0 <= payload_type <= 127:
        raise ValueError("payload_type must be 0..127")
    if not 0 <= twcc_id <= 255:
        raise ValueError("twcc_id must be 0..255")
    if ext_map is not None:
        if not isinstance(ext_map, bytes):
            raise TypeError("ext_map must be bytes or None")
        if len(ext_map) != 256:
            raise ValueError("ext_map must be 256 bytes long")
    header = parse_header(data)
    buf = bytearray(data)
    buf[1] = (buf[1] & 0x80) | payload_type
    _SEQ_TS_SSRC.pack_into(
        buf, 2, sequence_number & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF
    )
    profile = header[7]
    one_byte = profile == ONE_BYTE_PROFILE
    if not (ext_map is not None or abs_send_time_id > 0) or not (one_byte or _is_two_byte(profile)):
        return bytes(buf), 0
    twcc = (callable(twcc_seq) or twcc_seq >= 0) and 0 < twcc_id <= (14 if one_byte else 255)
    slots = []
    start = header[8]
    for pos, old_id, hdr, length in list(_elements(data, profile, start, start + header[9])):
        new_id = old_id if ext_map is None else ext_map[old_id]
        if new_id == 0 or (one_byte and new_id > 14):
            buf[pos : pos + hdr + length] = bytes(hdr + length)
            continue
        buf[pos] = (new_id << 4) | (length - 1) if one_byte else new_id
        if new_id == abs_send_time_id and length == 3:
            slots.append((pos, hdr))
    if not slots:
        return bytes(buf), 0
    if not twcc:
        stamp = (abs_send_time & 0xFFFFFF).to_bytes(3, "big")
        for pos, hdr in slots:
            buf[pos + hdr : pos + hdr + 3] = stamp
        return bytes(buf), 0
    seq = ((twcc_seq() if callable(twcc_seq) else twcc_seq) & 0xFFFF).to_bytes(2, "big")
    # the 2-byte transport-cc element and a padding byte over the element: the length stays
    stamp = (bytes(((twcc_id << 4) | 1,)) if one_byte else bytes((twcc_id, 2))) + seq + b"\x00"
    for pos, _ in slots:
        buf[pos : pos + len(stamp)] = stamp
    return bytes(buf), len(slots)


def abs_send_time(seconds: float) -> int:
    """The 24-bit 6.18 fixed-point abs-send-time of ``seconds`` (wraps every 64 s)."""
    if not math.isfinite(seconds):
        raise ValueError("seconds must be finite")
    return int(math.fmod(seconds, 64.0) * 262144.0) & 0xFFFFFF


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 16-bit sequence numbers, in -32768..32767."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_newer(a: int, b: int) -> bool:
    """Whether sequence number ``a`` comes after ``b`` (RFC 3550 wrap-around)."""
    return seq_diff(a, b) > 0


def _encode_extensions(extensions, profile: int) -> tuple[int, bytes]:
    """Encode elements in one-byte form when they all fit and ``profile`` allows it."""
    one_byte = not _is_two_byte(profile) and all(
        1 <= ext_id <= 14 and 1 <= len(value) <= 16 for ext_id, value in extensions
    )
    out = bytearray()
    for ext_id, value in extensions:
        if one_byte:
            out.append((ext_id << 4) | (len(value) - 1))
        else:
            if not 1 <= ext_id <= 255 or len(value) > 255:
                raise ValueError("extension id must be 1..255 and value at most 255 bytes")
            out += bytes((ext_id, len(value)))
        out += value
    out += bytes(-len(out) % 4)
    if one_byte:
        return ONE_BYTE_PROFILE, bytes(out)
    return (profile if _is_two_byte(profile) else TWO_BYTE_PROFILE), bytes(out)


@dataclass(repr=False)
class RtpPacket:
    """One RTP packet. ``extensions`` holds RFC 8285 elements; another profile's block
    stays raw in ``extension_data``."""

    payload_type: int = 0
    marker: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    csrcs: list = field(default_factory=list)
    extension_profile: int = 0
    extensions: list = field(default_factory=list)
    extension_data: bytes = b""
    payload: bytes = b""
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        (pt, marker, seq, ts, ssrc, start, end, profile, ext_offset, ext_length) = parse_header(
            data
        )
        cc = data[0] & 0x0F
        packet = cls(
            payload_type=pt,
            marker=marker,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            csrcs=list(struct.unpack_from(f"!{cc}I", data, 12)),
            extension_profile=profile,
            payload=bytes(data[start:end]),
            padding_size=len(data) - end,
        )
        if profile == ONE_BYTE_PROFILE or _is_two_byte(profile):
            packet.extensions = [
                (ext_id, bytes(data[pos + hdr : pos + hdr + length]))
                for pos, ext_id, hdr, length in _elements(
                    data, profile, ext_offset, ext_offset + ext_length
                )
            ]
        else:
            packet.extension_data = bytes(data[ext_offset : ext_offset + ext_length])
        return packet

    def serialize(self) -> bytes:
        """The packet's bytes. Extensions use the one-byte form when every id is 1..14
        and every value 1..16 bytes, unless ``extension_profile`` is a two-byte one."""
        profile = self.extension_profile
        if self.extensions or profile == ONE_BYTE_PROFILE or _is_two_byte(profile):
            profile, block = _encode_extensions(self.extensions, profile)
        else:
            block = self.extension_data
            if len(block) % 4:
                raise ValueError("extension_data must be a multiple of 4 bytes")
        has_ext = bool(block) or profile != 0
        if len(self.csrcs) > 15 or not 0 <= self.padding_size <= 255:
            raise ValueError("at most 15 CSRCs and 255 padding bytes")
        if len(block) > 4 * 0xFFFF:
            raise ValueError("extension block too long")
        if not 0 <= self.payload_type <= 127:
            raise ValueError("payload_type must be 0..127")
        try:
            out = _FIXED.pack(
                0x80 | (0x20 if self.padding_size else 0) | (0x10 if has_ext else 0)
                | len(self.csrcs),
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence_number,
                self.timestamp,
                self.ssrc,
            )
            out += struct.pack(f"!{len(self.csrcs)}I", *self.csrcs)
            if has_ext:
                out += _EXT_HEADER.pack(profile, len(block) // 4)
        except struct.error as exc:
            raise ValueError(f"RTP field out of range: {exc}") from None
        out += block
        out += self.payload
        if self.padding_size:
            out += bytes(self.padding_size - 1) + bytes((self.padding_size,))
        return out

    def __repr__(self) -> str:
        return (
            f"RtpPacket(payload_type={self.payload_type}, marker={self.marker}, "
            f"sequence_number={self.sequence_number}, timestamp={self.timestamp}, "
            f"ssrc={self.ssrc}, csrcs={self.csrcs!r}, "
            f"extension_profile={self.extension_profile:#x}, extensions={self.extensions!r}, "
            f"extension_data={self.extension_data!r}, payload=<{len(self.payload)} bytes>, "
            f"padding_size={self.padding_size})"
        )
