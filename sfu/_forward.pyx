# cython: language_level=3
"""The forwarding hot path, compiled. Same API as ``sfu/_forward_py.py``.

``fan_out`` rewrites one inbound packet for every consumer with ``rewrite_c`` (one
allocation, no Python objects per header field) and hands it to the consumer's
SRTP ``protect`` and socket ``sendto``.
"""

import random

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from sfu._rtp cimport raise_malformed, rewrite_c, rewrite_into


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ssize_t c_sendto "sendto"(int fd, const void* buf, size_t n, int flags,
                              const void* addr, socklen_t addr_len)

cdef extern from "<errno.h>" nogil:
    int errno

__all__ = ["ConsumerState", "NackCache", "fan_out", "MAX_SEQ_JUMP", "MAX_SEQ_AGE"]

# See the pure twin: keeps the output sequence sane for the subscriber's SRTP.
cdef enum:
    C_MAX_SEQ_JUMP = 1000
    C_MAX_SEQ_AGE = 1000
MAX_SEQ_JUMP = C_MAX_SEQ_JUMP
MAX_SEQ_AGE = C_MAX_SEQ_AGE


cdef class NackCache:
    """The last ``size`` packets of one producer, by sequence number (size: power of 2)."""

    def __cinit__(self, int size=1024):
        self._seqs = NULL

    def __init__(self, int size=1024):
        if size <= 0 or size & (size - 1):
            raise ValueError("NackCache size must be a power of two")
        self.size = size
        self._mask = size - 1
        self._packets = [None] * size
        self._seqs = <int*>malloc(size * sizeof(int))
        if self._seqs == NULL:
            raise MemoryError()
        for i in range(size):
            self._seqs[i] = -1

    def __dealloc__(self):
        if self._seqs != NULL:
            free(self._seqs)

    cpdef put(self, int seq, bytes data):
        cdef int i = seq & self._mask
        self._packets[i] = data
        self._seqs[i] = seq

    cpdef object get(self, int seq):
        cdef int i = seq & self._mask
        if self._seqs[i] == seq:
            return self._packets[i]
        return None

    def clear(self):
        self._packets = [None] * self.size
        for i in range(self.size):
            self._seqs[i] = -1


cdef class ConsumerState:
    """Rewriting state and send path of one consumer (see the pure twin's docstring)."""

    def __init__(self, ssrc, int payload_type, ext_map, int abs_send_time_id, bint video):
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.ext_map = ext_map
        self.abs_send_time_id = abs_send_time_id
        self.video = video
        self.paused = True
        self.started = False
        self.seq_offset = 0
        self.ts_offset = 0
        self.next_seq = random.getrandbits(16)
        self.next_ts = random.getrandbits(32)
        self.last_seq = -1
        self.last_ts = 0
        self.packets = 0
        self.octets = 0
        self.dropped = 0
        self._protect = None
        self._sendto = None
        self._addr = None
        self._native_owner = None
        self._srtp_ctx = NULL
        self._srtp_protect = NULL
        self._fd = -1
        self._sockaddr_len = 0
        self.send_errors = 0

    @property
    def native(self):
        """True when packets go out through libsrtp and sendto(2) directly."""
        return self._srtp_ctx != NULL

    @property
    def ext_map(self):
        return self._ext_map

    @ext_map.setter
    def ext_map(self, value):
        if value is not None and len(value) != 256:
            raise ValueError("ext_map must be 256 bytes")
        self._ext_map = None if value is None else bytes(value)

    def bind(self, protect, sendto, addr, native=None):
        """Set the send path: ``sendto(protect(packet), addr)``. ``native`` may give
        ``(owner, srtp_ctx, srtp_protect, fd, sockaddr)``: the addresses of a libsrtp
        session and of ``srtp_protect`` (``owner`` keeps the session alive), a UDP
        socket and the packed destination; packets then skip Python entirely."""
        self._protect = protect
        self._sendto = sendto
        self._addr = addr
        self._native_owner = None
        self._srtp_ctx = NULL
        self._srtp_protect = NULL
        self._fd = -1
        if native is not None:
            owner, ctx, fn, fd, sockaddr = native
            if len(sockaddr) > 128 or not ctx or not fn or fd < 0:
                raise ValueError("unusable native send path")
            memcpy(self._sockaddr, PyBytes_AS_STRING(sockaddr), len(sockaddr))
            self._sockaddr_len = len(sockaddr)
            self._native_owner = owner
            self._srtp_ctx = <void*><uintptr_t>ctx
            self._srtp_protect = <srtp_protect_fn><uintptr_t>fn
            self._fd = fd

    def unbind(self):
        self._protect = self._sendto = self._addr = None
        self._native_owner = None
        self._srtp_ctx = NULL
        self._srtp_protect = NULL
        self._fd = -1

    cdef bint send_native(self, bytes data, uint16_t out_seq, uint32_t out_ts,
                          uint32_t abs_send_time) except -1:
        cdef int n = <int>PyBytes_GET_SIZE(data)
        cdef const uint8_t* ext_map = NULL
        cdef int rc
        cdef ssize_t sent = -1
        # A packet over the usual MTU (loopback allows 64 KiB) gets a buffer of its own,
        # with room for the header extension rewrite and the SRTP trailer.
        cdef uint8_t* buf = self._buf
        if n > 1500:
            buf = <uint8_t*>malloc(n + NATIVE_BUFFER - 1500)
            if buf == NULL:
                raise MemoryError()
        try:
            if self._ext_map is not None:
                ext_map = <const uint8_t*>(<char*>self._ext_map)
            memcpy(buf, PyBytes_AS_STRING(data), n)
            rc = rewrite_into(buf, n, self.ssrc, out_seq, out_ts, self.payload_type, ext_map,
                              self.abs_send_time_id, abs_send_time)
            if rc < 0:
                raise_malformed(rc)
            with nogil:
                rc = self._srtp_protect(self._srtp_ctx, buf, &n)
                if rc == 0:
                    sent = c_sendto(self._fd, buf, n, 0, <const void*>&self._sockaddr[0],
                                    self._sockaddr_len)
        finally:
            if buf != self._buf:
                free(buf)
        if rc != 0 or sent < 0:
            self.send_errors += 1
            return False
        return True

    def restart(self):
        if self.started:
            self.next_seq = <uint16_t>(self.last_seq + 1)
            self.next_ts = <uint32_t>(self.last_ts + 1)
        self.started = False

    cdef bint forward_c(self, bytes data, uint16_t seq, uint32_t ts, long payload_len,
                        bint keyframe, uint32_t abs_send_time):
        cdef uint16_t out_seq
        cdef uint16_t ahead
        cdef uint32_t out_ts
        cdef const uint8_t* ext_map = NULL
        if self.paused or self._sendto is None:
            return False
        if not self.started:
            if self.video and not keyframe:
                self.dropped += 1
                return False
            self.seq_offset = <uint16_t>(self.next_seq - seq)
            self.ts_offset = <uint32_t>(self.next_ts - ts)
            self.started = True
        out_seq = <uint16_t>(seq + self.seq_offset)
        if self.last_seq >= 0:
            ahead = <uint16_t>(out_seq - <uint16_t>self.last_seq)
            if C_MAX_SEQ_JUMP < ahead < 0x10000 - C_MAX_SEQ_AGE:
                if ahead >= 0x8000:
                    self.dropped += 1
                    return False
                self.seq_offset = <uint16_t>(<uint16_t>self.last_seq + 1 - seq)
                out_seq = <uint16_t>(self.last_seq + 1)
        out_ts = <uint32_t>(ts + self.ts_offset)
        if self._srtp_ctx != NULL:
            if not self.send_native(data, out_seq, out_ts, abs_send_time):
                self.dropped += 1
                return False
        else:
            if self._ext_map is not None:
                ext_map = <const uint8_t*>(<char*>self._ext_map)
            packet = rewrite_c(data, self.ssrc, out_seq, out_ts, self.payload_type, ext_map,
                               self.abs_send_time_id, abs_send_time)
            try:
                self._sendto(self._protect(packet), self._addr)
            except Exception:
                self.dropped += 1
                return False
        if self.last_seq < 0 or <uint16_t>(out_seq - <uint16_t>self.last_seq) < 0x8000:
            self.last_seq = out_seq
            self.last_ts = out_ts
        self.packets += 1
        self.octets += payload_len
        return True

    def forward(self, bytes data, seq, ts, long payload_len, bint keyframe, abs_send_time):
        """Rewrite and send one packet of the producer; True if it was sent."""
        return self.forward_c(data, seq, ts, payload_len, keyframe, abs_send_time)

    def retransmit(self, bytes data, abs_send_time):
        """Send a cached producer packet again with this consumer's current mapping."""
        cdef const uint8_t* ext_map = NULL
        cdef const uint8_t* d
        cdef uint16_t seq
        cdef uint32_t ts
        if not self.started or self._sendto is None or len(data) < 12:
            return False
        d = <const uint8_t*>(<char*>data)
        seq = (<uint16_t>d[2] << 8) | d[3]
        ts = (<uint32_t>d[4] << 24) | (<uint32_t>d[5] << 16) | (<uint32_t>d[6] << 8) | d[7]
        if self._ext_map is not None:
            ext_map = <const uint8_t*>(<char*>self._ext_map)
        packet = rewrite_c(data, self.ssrc, <uint16_t>(seq + self.seq_offset),
                           <uint32_t>(ts + self.ts_offset), self.payload_type, ext_map,
                           self.abs_send_time_id, abs_send_time)
        try:
            self._sendto(self._protect(packet), self._addr)
        except Exception:
            return False
        return True

    def producer_seq(self, int out_seq):
        """The producer's sequence number for an output sequence number."""
        return (out_seq - self.seq_offset) & 0xFFFF


def fan_out(list states, bytes data, seq, ts, long payload_len, bint keyframe, abs_send_time):
    """Forward one inbound packet to every consumer state; return how many sent."""
    cdef ConsumerState state
    cdef int sent = 0
    cdef uint16_t c_seq = seq
    cdef uint32_t c_ts = ts
    cdef uint32_t c_ast = abs_send_time
    for state in states:
        if state.forward_c(data, c_seq, c_ts, payload_len, keyframe, c_ast):
            sent += 1
    return sent
