from libc.stdint cimport uint16_t, uint32_t

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
    cdef bint forward_c(self, bytes data, uint16_t seq, uint32_t ts, long payload_len,
                        bint keyframe, uint32_t abs_send_time)
