"""Compiled VP8 payload descriptor (RFC 7741); twin of ``_vp8_py.py`` (layout there).

boundscheck is off for the whole build: ``locate`` checks every offset it returns
against the payload length before any field is read.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cython.dataclasses cimport dataclass
from libc.stdint cimport uint8_t
from libc.string cimport memcpy

from .errors import MalformedPacket

__all__ = ["Vp8Descriptor", "vp8_frame_size", "vp8_is_keyframe", "vp8_rewrite_picture_id",
           "vp8_temporal_id"]


cdef int locate(const uint8_t* p, Py_ssize_t n, Vp8Layout* out) noexcept nogil:
    """0, or -1 if the descriptor is empty or truncated (declared in _vp8.pxd)."""
    cdef Py_ssize_t pos = 1
    cdef uint8_t x
    out.picture_id_offset = -1
    out.picture_id_size = 0
    out.tl0_offset = -1
    out.tk_offset = -1
    if n < 1:
        return -1
    if p[0] & 0x80:
        if pos >= n:
            return -1
        x = p[pos]
        pos += 1
        if x & 0x80:
            if pos >= n:
                return -1
            out.picture_id_offset = pos
            out.picture_id_size = 2 if p[pos] & 0x80 else 1
            pos += out.picture_id_size
        if x & 0x40:
            out.tl0_offset = pos
            pos += 1
        if x & 0x30:
            out.tk_offset = pos
            pos += 1
        if pos > n:
            return -1
    out.size = pos
    return 0


@dataclass
cdef class Vp8Descriptor:
    """RFC 7741 payload descriptor; -1 marks an absent field. ``size`` is the
    descriptor length; ``is_keyframe`` says the payload starts a key frame (S=1,
    PID=0, and the VP8 payload header's P bit 0)."""

    start_of_partition: object = False
    partition_id: object = 0
    non_reference: object = False
    picture_id: object = -1
    picture_id_long: object = False
    tl0picidx: object = -1
    tid: object = -1
    layer_sync: object = False
    keyidx: object = -1
    size: object = 1
    is_keyframe: object = False

    @classmethod
    def parse(cls, bytes payload not None):
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(payload)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
        cdef Vp8Layout at
        if locate(p, n, &at) < 0:
            raise MalformedPacket("VP8 descriptor truncated" if n else "empty VP8 payload")
        cdef Vp8Descriptor d = cls.__new__(cls)
        d.start_of_partition = (p[0] & 0x10) != 0
        d.partition_id = p[0] & 0x07
        d.non_reference = (p[0] & 0x20) != 0
        d.picture_id = -1
        d.picture_id_long = at.picture_id_size == 2
        if at.picture_id_size == 2:
            d.picture_id = ((p[at.picture_id_offset] & 0x7F) << 8) | p[at.picture_id_offset + 1]
        elif at.picture_id_size == 1:
            d.picture_id = p[at.picture_id_offset]
        d.tl0picidx = p[at.tl0_offset] if at.tl0_offset >= 0 else -1
        d.tid = -1
        d.layer_sync = False
        d.keyidx = -1
        if at.tk_offset >= 0:
            if p[1] & 0x20:
                d.tid = p[at.tk_offset] >> 6
                d.layer_sync = (p[at.tk_offset] & 0x20) != 0
            if p[1] & 0x10:
                d.keyidx = p[at.tk_offset] & 0x1F
        d.size = at.size
        d.is_keyframe = keyframe_after(p, n, at.size)
        return d

    def serialize(self) -> bytes:
        """The descriptor bytes only (``size`` and ``is_keyframe`` are not written)."""
        cdef uint8_t buf[6]
        cdef Py_ssize_t pos = 2
        cdef int x = 0, tk = 0
        if not 0 <= self.partition_id <= 7:
            raise ValueError("partition_id must be 0..7")
        if self.picture_id >= 0:
            x |= 0x80
            if self.picture_id_long or self.picture_id > 0x7F:
                if self.picture_id > 0x7FFF:
                    raise ValueError("picture_id must be 0..32767")
                buf[pos] = 0x80 | (self.picture_id >> 8)
                buf[pos + 1] = self.picture_id & 0xFF
                pos += 2
            else:
                buf[pos] = self.picture_id
                pos += 1
        if self.tl0picidx >= 0:
            if self.tl0picidx > 0xFF:
                raise ValueError("tl0picidx must be 0..255")
            x |= 0x40
            buf[pos] = self.tl0picidx
            pos += 1
        if self.tid >= 0 or self.keyidx >= 0:
            if self.tid > 3 or self.keyidx > 31:
                raise ValueError("tid must be 0..3 and keyidx 0..31")
            if self.tid >= 0:
                x |= 0x20
                tk |= (<int>self.tid << 6) | (0x20 if self.layer_sync else 0)
            if self.keyidx >= 0:
                x |= 0x10
                tk |= <int>self.keyidx
            buf[pos] = tk
            pos += 1
        buf[0] = ((0x80 if x else 0) | (0x20 if self.non_reference else 0)
                  | (0x10 if self.start_of_partition else 0) | <int>self.partition_id)
        buf[1] = x
        if not x:  # no extension byte: only the first byte
            return PyBytes_FromStringAndSize(<char*>buf, 1)
        return PyBytes_FromStringAndSize(<char*>buf, pos)


def vp8_is_keyframe(bytes payload not None) -> bool:
    """Whether a VP8 RTP payload starts a key frame; False for malformed input."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(payload)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    cdef Vp8Layout at
    if locate(p, n, &at) < 0:
        return False
    return keyframe_after(p, n, at.size)


def vp8_rewrite_picture_id(bytes payload not None, int picture_id, int tl0picidx) -> bytes:
    """A copy of ``payload`` with PictureID and TL0PICIDX replaced where the descriptor
    carries them (same length; PictureID masked to its 7 or 15 bits). A negative value
    leaves that field alone; an absent field is not added."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    cdef Vp8Layout at
    if locate(<const uint8_t*>PyBytes_AS_STRING(payload), n, &at) < 0:
        raise MalformedPacket("VP8 descriptor truncated" if n else "empty VP8 payload")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
    memcpy(o, PyBytes_AS_STRING(payload), n)
    write_ids(o, at.picture_id_offset, at.picture_id_size, picture_id, at.tl0_offset, tl0picidx)
    return out


def vp8_temporal_id(bytes data not None, Py_ssize_t offset) -> int:
    """The temporal layer id (TID) of the VP8 payload at ``offset`` of ``data`` (an RTP
    packet), or -1 if the descriptor carries none or is malformed."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef const uint8_t* p
    cdef Vp8Layout at
    if offset < 0 or offset >= n:
        return -1
    p = <const uint8_t*>PyBytes_AS_STRING(data) + offset
    if locate(p, n - offset, &at) < 0 or at.tk_offset < 0 or not p[1] & 0x20:
        return -1
    return p[at.tk_offset] >> 6


def vp8_frame_size(bytes payload not None):
    """``(width, height)`` of the key frame a VP8 RTP payload starts, or None (not the
    start of a key frame, or too short to say)."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(payload)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    cdef Vp8Layout at
    if locate(p, n, &at) < 0 or not keyframe_after(p, n, at.size) or at.size + 10 > n:
        return None
    p += at.size
    if p[3] != 0x9D or p[4] != 0x01 or p[5] != 0x2A:
        return None
    return ((p[6] | (p[7] << 8)) & 0x3FFF, (p[8] | (p[9] << 8)) & 0x3FFF)
