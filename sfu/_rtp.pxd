# C-level RTP helpers for other Cython modules (fan-out loop, RTCP, VP8):
#     from sfu._rtp cimport RtpHeader, parse_header_c, rewrite_into, rewrite_c, ...
# Functions returning int give 0 (or 1: found) on success and a negative error code
# (RTP_E_*) when the packet is malformed; raise_malformed(code) turns one into
# MalformedPacket. Nothing here reads past ``n``.

from libc.stdint cimport int16_t, uint8_t, uint16_t, uint32_t

cdef enum:
    RTP_E_SHORT = -1        # shorter than the 12-byte fixed header
    RTP_E_VERSION = -2      # version is not 2
    RTP_E_EXT_HEADER = -3   # extension header truncated
    RTP_E_TRUNCATED = -4    # CSRCs or extension block run past the end
    RTP_E_PADDING = -5      # padding count 0 or larger than the payload
    RTP_E_ELEMENT = -6      # an RFC 8285 element runs past the extension block

ctypedef struct RtpHeader:
    int payload_type
    int marker
    uint16_t sequence_number
    uint32_t timestamp
    uint32_t ssrc
    Py_ssize_t payload_offset
    Py_ssize_t payload_end      # excludes padding
    int ext_profile             # 0 when there is no extension
    Py_ssize_t ext_offset       # first element byte, after the 4-byte extension header
    Py_ssize_t ext_length       # element area in bytes

ctypedef struct ExtElement:
    int id
    Py_ssize_t offset           # of the element header
    Py_ssize_t header           # 1 (one-byte form) or 2 (two-byte form)
    Py_ssize_t length           # of the value

cdef inline uint16_t rd16(const uint8_t* p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]

cdef inline uint32_t rd24(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 16) | (<uint32_t>p[1] << 8) | p[2]

cdef inline uint32_t rd32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline void wr16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = v >> 8
    p[1] = v & 0xFF

cdef inline void wr24(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = (v >> 16) & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = v & 0xFF

cdef inline void wr32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = v >> 24
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF

cdef inline int seq_diff_c(uint16_t a, uint16_t b) noexcept nogil:
    return <int16_t>(<uint16_t>(a - b))

cdef int raise_malformed(int code) except -1

cdef int parse_header_c(const uint8_t* data, Py_ssize_t n, RtpHeader* h) noexcept nogil

# Next RFC 8285 element at or after pos[0] (padding skipped; one-byte id 15 ends the
# walk): 1 and pos[0] moved past it, 0 at the end, RTP_E_ELEMENT if truncated.
cdef int next_element(const uint8_t* data, Py_ssize_t* pos, Py_ssize_t stop, bint two_byte,
                      ExtElement* element) noexcept nogil

# 1 and the value's offset/length if an element ``ext_id`` is present, 0 if not.
cdef int find_extension_c(const uint8_t* data, Py_ssize_t n, int ext_id,
                          Py_ssize_t* offset, Py_ssize_t* length) noexcept nogil

# Rewrite a packet in place (see rtp.rewrite); ext_map is NULL or 256 bytes. With
# twcc_seq >= 0 (0..65535) the abs-send-time slot gets the transport-cc element
# instead: the result is then how many elements got it (0: none, the packet is
# unstamped), else 0; negative: RTP_E_*.
cdef int rewrite_into(uint8_t* buf, Py_ssize_t n, uint32_t ssrc, uint16_t sequence_number,
                      uint32_t timestamp, int payload_type, const uint8_t* ext_map,
                      int abs_send_time_id, uint32_t abs_send_time, int twcc_id,
                      int twcc_seq) noexcept nogil

# The same into one new bytes object; raises MalformedPacket. ``stamped`` (or NULL)
# receives rewrite_into's count.
cdef bytes rewrite_c(bytes data, uint32_t ssrc, uint16_t sequence_number, uint32_t timestamp,
                     int payload_type, const uint8_t* ext_map, int abs_send_time_id,
                     uint32_t abs_send_time, int twcc_id, int twcc_seq, int* stamped)
