"""Compiled RTP header parsing and rewriting (RFC 3550, RFC 8285).

Twin of ``_rtp_py.py``; C-level entry points for other Cython modules are declared in
``_rtp.pxd``. boundscheck is off for the whole build: every access below is preceded
by an explicit length check.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsUnsignedLongMask
from cython.dataclasses cimport dataclass, field
from libc.math cimport fmod, isfinite
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t
from libc.string cimport memcpy, memset

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

cdef enum:
    ONE_BYTE_PROFILE = 0xBEDE

_MESSAGES = (
    "",
    "RTP packet shorter than 12 bytes",
    "RTP version is not 2",
    "RTP extension header truncated",
    "RTP header truncated",
    "RTP padding length invalid",
    "RTP extension element truncated",
)


cdef inline bint is_two_byte(int profile) noexcept nogil:
    return (profile & 0xFFF0) == 0x1000


cdef inline const uint8_t* bytes_ptr(bytes b) noexcept:
    return <const uint8_t*>PyBytes_AS_STRING(b)


cdef inline bytes slice_bytes(const uint8_t* d, Py_ssize_t offset, Py_ssize_t length):
    return PyBytes_FromStringAndSize(<const char*>d + offset, length)


cdef int raise_malformed(int code) except -1:
    raise MalformedPacket(_MESSAGES[-code] if -len(_MESSAGES) < code < 0 else "malformed")


cdef int parse_header_c(const uint8_t* d, Py_ssize_t n, RtpHeader* h) noexcept nogil:
    cdef Py_ssize_t pos, pad
    if n < 12:
        return RTP_E_SHORT
    if d[0] >> 6 != 2:
        return RTP_E_VERSION
    h.payload_type = d[1] & 0x7F
    h.marker = d[1] >> 7
    h.sequence_number = rd16(d + 2)
    h.timestamp = rd32(d + 4)
    h.ssrc = rd32(d + 8)
    pos = 12 + 4 * (d[0] & 0x0F)
    h.ext_profile = 0
    h.ext_offset = 0
    h.ext_length = 0
    if d[0] & 0x10:
        if pos + 4 > n:
            return RTP_E_EXT_HEADER
        h.ext_profile = rd16(d + pos)
        h.ext_offset = pos + 4
        h.ext_length = 4 * <Py_ssize_t>rd16(d + pos + 2)
        pos = h.ext_offset + h.ext_length
    if pos > n:
        return RTP_E_TRUNCATED
    h.payload_offset = pos
    h.payload_end = n
    if d[0] & 0x20:
        pad = d[n - 1]
        if pad == 0 or pad > n - pos:
            return RTP_E_PADDING
        h.payload_end = n - pad
    return 0


cdef int next_element(const uint8_t* d, Py_ssize_t* pos, Py_ssize_t stop, bint two_byte,
                      ExtElement* e) noexcept nogil:
    cdef Py_ssize_t p = pos[0]
    cdef uint8_t b
    while p < stop:
        b = d[p]
        if two_byte:
            if b == 0:
                p += 1
                continue
            if p + 2 > stop:
                return RTP_E_ELEMENT
            e.id = b
            e.header = 2
            e.length = d[p + 1]
        else:
            e.id = b >> 4
            if e.id == 0:  # padding byte (its length nibble is ignored, as libwebrtc does)
                p += 1
                continue
            if e.id == 15:  # RFC 8285: stop processing at the reserved id
                break
            e.header = 1
            e.length = (b & 0x0F) + 1
        if p + e.header + e.length > stop:
            return RTP_E_ELEMENT
        e.offset = p
        pos[0] = p + e.header + e.length
        return 1
    pos[0] = stop
    return 0


cdef int find_extension_c(const uint8_t* d, Py_ssize_t n, int ext_id,
                          Py_ssize_t* offset, Py_ssize_t* length) noexcept nogil:
    cdef RtpHeader h
    cdef ExtElement e
    cdef Py_ssize_t pos
    cdef int rc = parse_header_c(d, n, &h)
    if rc < 0:
        return rc
    if h.ext_profile != ONE_BYTE_PROFILE and not is_two_byte(h.ext_profile):
        return 0
    pos = h.ext_offset
    while True:
        rc = next_element(d, &pos, h.ext_offset + h.ext_length, is_two_byte(h.ext_profile), &e)
        if rc <= 0:
            return rc
        if e.id == ext_id:
            offset[0] = e.offset + e.header
            length[0] = e.length
            return 1


cdef inline void write_transport_cc(uint8_t* p, bint one_byte, int twcc_id,
                                    uint16_t seq) noexcept nogil:
    """The transport-cc element (2-byte value) and one padding byte over the 3-byte
    abs-send-time element at ``p``: the length stays the same."""
    if one_byte:
        p[0] = (twcc_id << 4) | 1
        wr16(p + 1, seq)
        p[3] = 0
    else:
        p[0] = twcc_id
        p[1] = 2
        wr16(p + 2, seq)
        p[4] = 0


cdef int rewrite_into(uint8_t* buf, Py_ssize_t n, uint32_t ssrc, uint16_t sequence_number,
                      uint32_t timestamp, int payload_type, const uint8_t* ext_map,
                      int abs_send_time_id, uint32_t abs_send_time, int twcc_id,
                      int twcc_seq) noexcept nogil:
    cdef RtpHeader h
    cdef ExtElement e
    cdef Py_ssize_t pos, stop
    cdef int new_id, stamped = 0
    cdef bint one_byte, twcc
    cdef int rc = parse_header_c(buf, n, &h)
    if rc < 0:
        return rc
    buf[1] = (buf[1] & 0x80) | (payload_type & 0x7F)
    wr16(buf + 2, sequence_number)
    wr32(buf + 4, timestamp)
    wr32(buf + 8, ssrc)
    if ext_map == NULL and abs_send_time_id <= 0:
        return 0
    one_byte = h.ext_profile == ONE_BYTE_PROFILE
    if not one_byte and not is_two_byte(h.ext_profile):
        return 0
    # an id the packet's form cannot hold stamps nothing (the abs-send-time stays)
    twcc = 0 <= twcc_seq and 0 < twcc_id <= (14 if one_byte else 255)
    pos = h.ext_offset
    stop = h.ext_offset + h.ext_length
    while True:
        rc = next_element(buf, &pos, stop, not one_byte, &e)
        if rc < 0:
            return rc
        if rc == 0:
            return stamped
        new_id = e.id if ext_map == NULL else ext_map[e.id]
        if new_id == 0 or (one_byte and new_id > 14):
            memset(buf + e.offset, 0, e.header + e.length)
            continue
        if one_byte:
            buf[e.offset] = (new_id << 4) | (e.length - 1)
        else:
            buf[e.offset] = new_id
        if new_id == abs_send_time_id and e.length == 3:
            if twcc:
                write_transport_cc(buf + e.offset, one_byte, twcc_id, <uint16_t>twcc_seq)
                stamped += 1
            else:
                wr24(buf + e.offset + e.header, abs_send_time & 0xFFFFFF)


cdef bytes rewrite_c(bytes data, uint32_t ssrc, uint16_t sequence_number, uint32_t timestamp,
                     int payload_type, const uint8_t* ext_map, int abs_send_time_id,
                     uint32_t abs_send_time, int twcc_id, int twcc_seq, int* stamped):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    cdef uint8_t* buf = <uint8_t*>PyBytes_AS_STRING(out)
    memcpy(buf, PyBytes_AS_STRING(data), n)
    cdef int rc = rewrite_into(buf, n, ssrc, sequence_number, timestamp, payload_type, ext_map,
                               abs_send_time_id, abs_send_time, twcc_id, twcc_seq)
    if rc < 0:
        raise_malformed(rc)
    if stamped != NULL:
        stamped[0] = rc
    return out


def is_rtcp(data) -> bool:
    """RFC 5761 demultiplexing: RTCP packet types 192..223 sit where RTP has M+PT."""
    cdef const uint8_t* d
    if type(data) is bytes:
        d = bytes_ptr(data)
        return PyBytes_GET_SIZE(data) >= 2 and 192 <= d[1] <= 223
    return len(data) >= 2 and 192 <= data[1] <= 223


def parse_header(bytes data not None) -> tuple:
    """Check the RTP framing and return the header fields without decoding extensions.

    ``(payload_type, marker, sequence_number, timestamp, ssrc, payload_offset,
    payload_end, ext_profile, ext_offset, ext_length)``; ``payload_end`` excludes
    padding, ``ext_offset``/``ext_length`` locate the extension elements (0/0/0 if none).
    """
    cdef RtpHeader h
    cdef int rc = parse_header_c(bytes_ptr(data), PyBytes_GET_SIZE(data), &h)
    if rc < 0:
        raise_malformed(rc)
    return (h.payload_type, h.marker, h.sequence_number, h.timestamp, h.ssrc,
            h.payload_offset, h.payload_end, h.ext_profile, h.ext_offset, h.ext_length)


def find_extension(bytes data not None, int ext_id):
    """The value of the first header-extension element with ``ext_id``, or None."""
    cdef Py_ssize_t offset = 0, length = 0
    cdef const uint8_t* d = bytes_ptr(data)
    cdef int rc = find_extension_c(d, PyBytes_GET_SIZE(data), ext_id, &offset, &length)
    if rc < 0:
        raise_malformed(rc)
    if rc == 0:
        return None
    return slice_bytes(d, offset, length)


def rewrite(bytes data not None, ssrc, sequence_number, timestamp, int payload_type,
            bytes ext_map=None, int abs_send_time_id=0, abs_send_time=0, int twcc_id=0,
            twcc_seq=-1) -> bytes:
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
    cdef const uint8_t* m = NULL
    cdef int c_twcc_seq = -1
    if not 0 <= payload_type <= 127:
        raise ValueError("payload_type must be 0..127")
    if not 0 <= twcc_id <= 255:
        raise ValueError("twcc_id must be 0..255")
    if ext_map is not None:
        if PyBytes_GET_SIZE(ext_map) != 256:
            raise ValueError("ext_map must be 256 bytes long")
        m = bytes_ptr(ext_map)
    if twcc_seq >= 0:
        c_twcc_seq = <int>(PyLong_AsUnsignedLongMask(twcc_seq) & 0xFFFF)
    return rewrite_c(data, <uint32_t>PyLong_AsUnsignedLongMask(ssrc),
                     <uint16_t>PyLong_AsUnsignedLongMask(sequence_number),
                     <uint32_t>PyLong_AsUnsignedLongMask(timestamp), payload_type, m,
                     abs_send_time_id, <uint32_t>PyLong_AsUnsignedLongMask(abs_send_time),
                     twcc_id, c_twcc_seq, NULL)


def abs_send_time(double seconds) -> int:
    """The 24-bit 6.18 fixed-point abs-send-time of ``seconds`` (wraps every 64 s)."""
    if not isfinite(seconds):
        raise ValueError("seconds must be finite")
    return <int64_t>(fmod(seconds, 64.0) * 262144.0) & 0xFFFFFF


def seq_diff(a, b) -> int:
    """Signed distance ``a - b`` between 16-bit sequence numbers, in -32768..32767."""
    return seq_diff_c(<uint16_t>PyLong_AsUnsignedLongMask(a),
                      <uint16_t>PyLong_AsUnsignedLongMask(b))


def seq_newer(a, b) -> bool:
    """Whether sequence number ``a`` comes after ``b`` (RFC 3550 wrap-around)."""
    return seq_diff_c(<uint16_t>PyLong_AsUnsignedLongMask(a),
                      <uint16_t>PyLong_AsUnsignedLongMask(b)) > 0


cdef inline bint fits(object value, object limit):
    return 0 <= value <= limit


cdef tuple encode_extensions(list extensions, int profile):
    """(profile, block): one-byte form when every element fits and ``profile`` allows it."""
    cdef bint one_byte = not is_two_byte(profile)
    cdef Py_ssize_t size = 0, pos = 0, length
    cdef bytes value, block
    cdef uint8_t* out
    for ext_id, value in extensions:
        if not (1 <= ext_id <= 14 and 1 <= len(value) <= 16):
            one_byte = False
        size += len(value) + 2
    if one_byte:
        size -= len(extensions)
    else:
        for ext_id, value in extensions:
            if not (1 <= ext_id <= 255 and len(value) <= 255):
                raise ValueError("extension id must be 1..255 and value at most 255 bytes")
    size += (-size) & 3  # cdivision is on: no negative %
    block = PyBytes_FromStringAndSize(NULL, size)
    out = <uint8_t*>PyBytes_AS_STRING(block)
    for ext_id, value in extensions:
        length = PyBytes_GET_SIZE(value)
        if one_byte:
            out[pos] = (<int>ext_id << 4) | (length - 1)
            pos += 1
        else:
            out[pos] = <int>ext_id
            out[pos + 1] = length
            pos += 2
        memcpy(out + pos, PyBytes_AS_STRING(value), length)
        pos += length
    memset(out + pos, 0, size - pos)
    if one_byte:
        return ONE_BYTE_PROFILE, block
    return (profile if is_two_byte(profile) else 0x1000), block


@dataclass(repr=False)
cdef class RtpPacket:
    """One RTP packet. ``extensions`` holds RFC 8285 elements; another profile's block
    stays raw in ``extension_data``."""

    payload_type: object = 0
    marker: object = 0
    sequence_number: object = 0
    timestamp: object = 0
    ssrc: object = 0
    csrcs: list = field(default_factory=list)
    extension_profile: object = 0
    extensions: list = field(default_factory=list)
    extension_data: bytes = b""
    payload: bytes = b""
    padding_size: object = 0

    @classmethod
    def parse(cls, bytes data not None):
        cdef RtpHeader h
        cdef ExtElement e = ExtElement(0, 0, 0, 0)
        cdef const uint8_t* d = bytes_ptr(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data), pos, i
        cdef int rc = parse_header_c(d, n, &h)
        if rc < 0:
            raise_malformed(rc)
        cdef RtpPacket p = cls.__new__(cls)
        p.payload_type = h.payload_type
        p.marker = h.marker
        p.sequence_number = h.sequence_number
        p.timestamp = h.timestamp
        p.ssrc = h.ssrc
        p.csrcs = [rd32(d + 12 + 4 * i) for i in range(d[0] & 0x0F)]
        p.extension_profile = h.ext_profile
        p.extensions = []
        p.extension_data = b""
        if h.ext_profile == ONE_BYTE_PROFILE or is_two_byte(h.ext_profile):
            pos = h.ext_offset
            while True:
                rc = next_element(d, &pos, h.ext_offset + h.ext_length,
                                  is_two_byte(h.ext_profile), &e)
                if rc < 0:
                    raise_malformed(rc)
                if rc == 0:
                    break
                p.extensions.append((e.id, slice_bytes(d, e.offset + e.header, e.length)))
        else:
            p.extension_data = slice_bytes(d, h.ext_offset, h.ext_length)
        p.payload = slice_bytes(d, h.payload_offset, h.payload_end - h.payload_offset)
        p.padding_size = n - h.payload_end
        return p

    def serialize(self) -> bytes:
        """The packet's bytes. Extensions use the one-byte form when every id is 1..14
        and every value 1..16 bytes, unless ``extension_profile`` is a two-byte one."""
        cdef int profile = self.extension_profile
        cdef bytes block
        cdef Py_ssize_t ncsrc = len(self.csrcs), i, pos, size, pad
        if self.extensions or profile == ONE_BYTE_PROFILE or is_two_byte(profile):
            profile, block = encode_extensions(self.extensions, profile)
        else:
            block = self.extension_data
            if len(block) % 4:
                raise ValueError("extension_data must be a multiple of 4 bytes")
        cdef bint has_ext = len(block) > 0 or profile != 0
        if ncsrc > 15 or not fits(self.padding_size, 255):
            raise ValueError("at most 15 CSRCs and 255 padding bytes")
        if len(block) > 4 * 0xFFFF:
            raise ValueError("extension block too long")
        if not fits(self.payload_type, 127):
            raise ValueError("payload_type must be 0..127")
        if not (fits(self.sequence_number, 0xFFFF) and fits(self.timestamp, 0xFFFFFFFF)
                and fits(self.ssrc, 0xFFFFFFFF) and fits(profile, 0xFFFF)
                and all([fits(c, 0xFFFFFFFF) for c in self.csrcs])):
            raise ValueError("RTP field out of range")
        pad = self.padding_size
        size = 12 + 4 * ncsrc + (4 + len(block) if has_ext else 0) + len(self.payload) + pad
        cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
        cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
        o[0] = 0x80 | (0x20 if pad else 0) | (0x10 if has_ext else 0) | ncsrc
        o[1] = (0x80 if self.marker else 0) | <int>self.payload_type
        wr16(o + 2, self.sequence_number)
        wr32(o + 4, self.timestamp)
        wr32(o + 8, self.ssrc)
        pos = 12
        for i in range(ncsrc):
            wr32(o + pos, self.csrcs[i])
            pos += 4
        if has_ext:
            wr16(o + pos, profile)
            wr16(o + pos + 2, len(block) // 4)
            memcpy(o + pos + 4, PyBytes_AS_STRING(block), len(block))
            pos += 4 + len(block)
        memcpy(o + pos, PyBytes_AS_STRING(self.payload), len(self.payload))
        pos += len(self.payload)
        if pad:
            memset(o + pos, 0, pad - 1)
            o[size - 1] = pad
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
