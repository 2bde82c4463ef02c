"""Pure-Python twin of ``sfu/_vp8.pyx``: the VP8 payload descriptor (RFC 7741).

```
      0 1 2 3 4 5 6 7
     |X|R|N|S|R| PID |   required
  X: |I|L|T|K| RSV   |   if X
  I: |M| PictureID   |   if I (second byte if M: 15-bit PictureID)
  L: |   TL0PICIDX   |   if L
T/K: |TID|Y| KEYIDX  |   if T or K
```
After the descriptor, the VP8 payload header's lowest bit (P) is 0 on a key frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MalformedPacket

__all__ = ["Vp8Descriptor", "vp8_frame_size", "vp8_is_keyframe", "vp8_rewrite_picture_id",
           "vp8_temporal_id"]


def _layout(payload) -> tuple[int, int, int, int]:
    """``(size, picture_id_offset, picture_id_size, tl0picidx_offset)``; offsets are -1
    and the PictureID size 0 for absent fields. Raises MalformedPacket if truncated."""
    n = len(payload)
    if n < 1:
        raise MalformedPacket("empty VP8 payload")
    picture_id_offset = tl0_offset = -1
    picture_id_size = 0
    pos = 1
    if payload[0] & 0x80:
        if pos >= n:
            raise MalformedPacket("VP8 descriptor truncated")
        x = payload[pos]
        pos += 1
        if x & 0x80:
            if pos >= n:
                raise MalformedPacket("VP8 descriptor truncated")
            picture_id_offset = pos
            picture_id_size = 2 if payload[pos] & 0x80 else 1
            pos += picture_id_size
        if x & 0x40:
            tl0_offset = pos
            pos += 1
        if x & 0x30:
            pos += 1
        if pos > n:
            raise MalformedPacket("VP8 descriptor truncated")
    return pos, picture_id_offset, picture_id_size, tl0_offset


@dataclass
class Vp8Descriptor:
    """RFC 7741 payload descriptor; -1 marks an absent field. ``size`` is the
    descriptor length; ``is_keyframe`` says the payload starts a key frame (S=1,
    PID=0, and the VP8 payload header's P bit 0)."""

    start_of_partition: bool = False
    partition_id: int = 0
    non_reference: bool = False
    picture_id: int = -1
    picture_id_long: bool = False
    tl0picidx: int = -1
    tid: int = -1
    layer_sync: bool = False
    keyidx: int = -1
    size: int = 1
    is_keyframe: bool = False

    @classmethod
    def parse(cls, payload: bytes) -> Vp8Descriptor:
        size, picture_id_offset, picture_id_size, tl0_offset = _layout(payload)
        b0 = payload[0]
        d = cls(
            start_of_partition=bool(b0 & 0x10),
            partition_id=b0 & 0x07,
            non_reference=bool(b0 & 0x20),
            size=size,
        )
        if picture_id_size == 2:
            d.picture_id = ((payload[picture_id_offset] & 0x7F) << 8) | payload[picture_id_offset + 1]
            d.picture_id_long = True
        elif picture_id_size == 1:
            d.picture_id = payload[picture_id_offset]
        if tl0_offset >= 0:
            d.tl0picidx = payload[tl0_offset]
        if b0 & 0x80 and payload[1] & 0x30:
            tk = payload[size - 1]
            if payload[1] & 0x20:
                d.tid = tk >> 6
                d.layer_sync = bool(tk & 0x20)
            if payload[1] & 0x10:
                d.keyidx = tk & 0x1F
        d.is_keyframe = (
            d.start_of_partition and d.partition_id == 0 and size < len(payload)
            and not payload[size] & 1
        )
        return d

    def serialize(self) -> bytes:
        """The descriptor bytes only (``size`` and ``is_keyframe`` are not written)."""
        if not 0 <= self.partition_id <= 7:
            raise ValueError("partition_id must be 0..7")
        out = bytearray(1)
        x = 0
        if self.picture_id >= 0:
            x |= 0x80
            if self.picture_id_long or self.picture_id > 0x7F:
                if self.picture_id > 0x7FFF:
                    raise ValueError("picture_id must be 0..32767")
                out += bytes((0x80 | self.picture_id >> 8, self.picture_id & 0xFF))
            else:
                out.append(self.picture_id)
        if self.tl0picidx >= 0:
            if self.tl0picidx > 0xFF:
                raise ValueError("tl0picidx must be 0..255")
            x |= 0x40
            out.append(self.tl0picidx)
        if self.tid >= 0 or self.keyidx >= 0:
            if self.tid > 3 or self.keyidx > 31:
                raise ValueError("tid must be 0..3 and keyidx 0..31")
            tk = 0
            if self.tid >= 0:
                x |= 0x20
                tk |= self.tid << 6 | (0x20 if self.layer_sync else 0)
            if self.keyidx >= 0:
                x |= 0x10
                tk |= self.keyidx
            out.append(tk)
        out[0] = (
            (0x80 if x else 0) | (0x20 if self.non_reference else 0)
            | (0x10 if self.start_of_partition else 0) | self.partition_id
        )
        if x:
            out.insert(1, x)
        return bytes(out)


def vp8_is_keyframe(payload: bytes) -> bool:
    """Whether a VP8 RTP payload starts a key frame; False for malformed input."""
    try:
        size = _layout(payload)[0]
    except MalformedPacket:
        return False
    b0 = payload[0]
    return bool(b0 & 0x10) and not b0 & 0x07 and size < len(payload) and not payload[size] & 1


def vp8_rewrite_picture_id(payload: bytes, picture_id: int, tl0picidx: int) -> bytes:
    """A copy of ``payload`` with PictureID and TL0PICIDX replaced where the descriptor
    carries them (same length; PictureID masked to its 7 or 15 bits). A negative value
    leaves that field alone; an absent field is not added."""
    size, picture_id_offset, picture_id_size, tl0_offset = _layout(payload)
    out = bytearray(payload)
    _write_ids(out, picture_id_offset, picture_id_size, picture_id, tl0_offset, tl0picidx)
    return bytes(out)


def _write_ids(out: bytearray, pic_pos: int, pic_size: int, pic: int, tl0_pos: int, tl0: int) -> None:
    """Write PictureID (in its 1 or 2 bytes, M bit kept) and TL0PICIDX at their
    positions in ``out``; a negative value or position leaves that field alone."""
    if pic >= 0 and pic_size == 2:
        out[pic_pos] = 0x80 | (pic >> 8 & 0x7F)
        out[pic_pos + 1] = pic & 0xFF
    elif pic >= 0 and pic_size == 1:
        out[pic_pos] = pic & 0x7F
    if tl0 >= 0 and tl0_pos >= 0:
        out[tl0_pos] = tl0 & 0xFF


def vp8_temporal_id(data: bytes, offset: int) -> int:
    """The temporal layer id (TID) of the VP8 payload at ``offset`` of ``data`` (an RTP
    packet), or -1 if the descriptor carries none or is malformed."""
    if offset < 0 or offset >= len(data):
        return -1
    payload = memoryview(data)[offset:]
    try:
        size = _layout(payload)[0]
    except MalformedPacket:
        return -1
    if not payload[0] & 0x80 or not payload[1] & 0x20:
        return -1
    return payload[size - 1] >> 6


def vp8_frame_size(payload: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of the key frame a VP8 RTP payload starts, or None (not the
    start of a key frame, or too short to say)."""
    if not vp8_is_keyframe(payload):
        return None
    size = _layout(payload)[0]
    header = payload[size:size + 10]
    if len(header) < 10 or header[3:6] != b"\x9d\x01\x2a":
        return None
    return ((header[6] | header[7] << 8) & 0x3FFF, (header[8] | header[9] << 8) & 0x3FFF)
