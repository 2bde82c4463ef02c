from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t

ctypedef int (*srtp_protect_fn)(void* ctx, void* rtp_hdr, int* len_ptr) noexcept nogil

cdef enum:
    # room for a full-size packet and libsrtp's largest trailer (auth tag + MKI)
    NATIVE_BUFFER = 1500 + 16 + 128 + 64

# vp8 mode: one slot of a sequence-number ring (see the pure twin)
ctypedef struct SeqEntry:
    int32_t key            # the sequence number this slot holds, -1: empty
    int32_t other          # the number it maps to, -1: dropped
    uint16_t pic_offset    # the PictureID offset it was sent with

# the VP8 payload descriptor of one inbound packet, read once for every consumer
ctypedef struct Vp8Info:
    int pic                # PictureID, -1 if absent
    Py_ssize_t pic_pos     # its position in the packet
    int pic_size           # 0, 1 or 2 bytes
    int tl0                # TL0PICIDX, -1 if absent
    Py_ssize_t tl0_pos
    int tid                # temporal layer id, -1 if absent
    bint begins            # the first packet of a picture (S=1, PID=0)

# a retransmission sent as RTX (RFC 4588): the RTX stream's SSRC, payload type, seq
ctypedef struct RtxInfo:
    uint32_t ssrc
    uint8_t payload_type
    uint16_t seq

cdef Py_ssize_t rtx_into(uint8_t* buf, Py_ssize_t n, const RtxInfo* rtx) noexcept nogil

cdef void read_vp8_info(const uint8_t* d, Py_ssize_t n, Py_ssize_t offset, long payload_len,
                        Vp8Info* info) noexcept nogil

# transport-cc: one packet a transport sent, a slot of SendLog's ring
ctypedef struct SentPacket:
    long long seq          # the unwrapped transport-wide seq it holds, -1: empty
    double send_time
    long long size
    int probe

cdef class SendLog:
    cdef readonly int capacity
    cdef public long long next_seq
    cdef long long _mask
    cdef SentPacket* _ring
    # record a packet, return its 16-bit seq (SendLog.send without Python)
    cdef uint16_t send_c(self, double now, long long size, int probe) noexcept

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
    # transport-cc: the transport's send log and the subscriber's extension id (0: off)
    cdef SendLog _twcc
    cdef int _twcc_id
    cdef public long long twcc_unstamped
    # simulcast and vp8 mode
    cdef public int layer
    cdef public bint vp8
    cdef public int temporal_limit
    cdef public int temporal
    cdef public uint16_t pic_offset
    cdef public uint8_t tl0_offset
    cdef public uint16_t next_pic
    cdef public uint8_t next_tl0
    cdef public int last_pic
    cdef public int last_tl0
    cdef public long long temporal_dropped
    cdef uint16_t _newest_in
    cdef int _last_in_pic
    cdef SeqEntry* _in_ring
    cdef SeqEntry* _out_ring
    cdef bint send_native(self, bytes data, uint16_t out_seq, uint32_t out_ts,
                          uint32_t abs_send_time, const Vp8Info* info, int out_pic,
                          int out_tl0, double now, const RtxInfo* rtx=*) except -1
    cdef bint send_packet(self, bytes data, uint16_t out_seq, uint32_t out_ts,
                          uint32_t abs_send_time, const Vp8Info* info, int out_pic, int out_tl0,
                          double now, const RtxInfo* rtx=*)
    cdef bint forward_c(self, bytes data, uint16_t seq, uint32_t ts, long payload_len,
                        bint keyframe, uint32_t abs_send_time, double now)
    cdef bint forward_vp8_c(self, bytes data, uint16_t seq, uint32_t ts, long payload_len,
                            bint keyframe, uint32_t abs_send_time, const Vp8Info* info,
                            double now)
