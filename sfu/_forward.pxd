from libc.stdint cimport uint8_t, uint16_t, uint32_t

ctypedef int (*srtp_protect_fn)(void* ctx, void* rtp_hdr, int* len_ptr) noexcept nogil

cdef enum:
    # room for a full-size packet and libsrtp's largest trailer (auth tag + MKI)
    NATIVE_BUFFER = 1500 + 16 + 128 + 64

cdef class NackCache:
    cdef readonly int size
    cdef int _mask
    cdef list _packets
    cdef int* _seqs
    cpdef put(self, int seq, bytes data)
    cpdef object get(self, int seq)

cdef class ConsumerState:
    cdef public uint32_t ssrc
    cdef public int payload_type
    cdef bytes _ext_map
    cdef public int abs_send_time_id
    cdef public bint video
    cdef public bint paused
    cdef public bint started
    cdef public uint16_t seq_offset
    cdef public uint32_t ts_offset
    cdef public uint16_t next_seq
    cdef public uint32_t next_ts
    cdef public int last_seq
    cdef public uint32_t last_ts
    cdef public long long packets
    cdef public long long octets
    cdef public long long dropped
    cdef object _protect
    cdef object _sendto
    cdef object _addr
    # native send path: libsrtp called directly and sendto(2) on the socket
    cdef object _native_owner
    cdef void* _srtp_ctx
    cdef srtp_protect_fn _srtp_protect
    cdef int _fd
    cdef uint8_t _sockaddr[128]
    cdef int _sockaddr_len
    cdef uint8_t _buf[NATIVE_BUFFER]
    cdef public long long send_errors
    cdef bint send_native(self, bytes data, uint16_t out_seq, uint32_t out_ts,
                          uint32_t abs_send_time) except -1
    cdef bint forward_c(self, bytes data, uint16_t seq, uint32_t ts, long payload_len,
                        bint keyframe, uint32_t abs_send_time)
