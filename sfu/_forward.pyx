# cython: language_level=3
"""The forwarding hot path, compiled. Same API as ``sfu/_forward_py.py``.

``fan_out`` rewrites one inbound packet for every consumer with ``rewrite_c`` (one
allocation, no Python objects per header field) and hands it to the consumer's
SRTP ``protect`` and socket ``sendto``. ``SendLog`` is ``sfu.bwe.sendlog.SendLog`` with
C arrays inside: the fan-out records each transport-cc stamped packet in it with no
Python call.
"""

import random

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memmove, memset

from sfu._rtp cimport parse_header_c, raise_malformed, rewrite_c, rewrite_into, RtpHeader, wr16, wr32
from sfu._vp8 cimport Vp8Layout, locate, write_ids


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ssize_t c_sendto "sendto"(int fd, const void* buf, size_t n, int flags,
                              const void* addr, socklen_t addr_len)

cdef extern from "<errno.h>" nogil:
    int errno

# The parallel fan-out: helper threads that protect and send copies beside the event
# loop's thread (see fan_out). Plain C: they never touch a Python object.
cdef extern from *:
    """
    #include <pthread.h>
    #include <sched.h>
    #include <signal.h>
    #include <stdint.h>
    #include <sys/socket.h>

    typedef int (*dc_protect_fn)(void*, void*, int*);
    typedef struct {
        void* ctx; dc_protect_fn protect; unsigned char* buf; int n; int fd;
        const void* addr; unsigned int addrlen; int ok; void* owner;
    } dc_job;

    #define DC_CAPACITY 4096   /* copies of one packet sent in parallel at most */
    #define DC_MAX_HELPERS 16
    static dc_job dc_jobs[DC_CAPACITY];
    static pthread_mutex_t dc_mu = PTHREAD_MUTEX_INITIALIZER;
    static pthread_cond_t dc_cv = PTHREAD_COND_INITIALIZER;
    /* Jobs have global numbers: a batch is [dc_next at publication, dc_end); job i lives
       in dc_jobs[i % DC_CAPACITY]. Only the loop's thread publishes, and only once the
       previous batch is done, so a slot is never rewritten while a helper reads it. */
    static long dc_next = 0, dc_end = 0, dc_done = 0;
    static unsigned long dc_generation = 0;
    static int dc_started = 0, dc_wanted = 0;

    static void dc_run_one(dc_job* j) {
        int n = j->n;
        j->ok = j->protect(j->ctx, j->buf, &n) == 0
            && sendto(j->fd, j->buf, (size_t)n, 0, (const struct sockaddr*)j->addr,
                      (socklen_t)j->addrlen) >= 0;
    }

    /* Claim and run jobs of the published batch until none is left. */
    static void dc_claim_all(void) {
        for (;;) {
            long i = __atomic_load_n(&dc_next, __ATOMIC_ACQUIRE);
            long e = __atomic_load_n(&dc_end, __ATOMIC_ACQUIRE);
            if (i >= e) return;
            if (__atomic_compare_exchange_n(&dc_next, &i, i + 1, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                dc_run_one(&dc_jobs[i % DC_CAPACITY]);
                __atomic_fetch_add(&dc_done, 1, __ATOMIC_RELEASE);
            }
        }
    }

    static void* dc_helper(void* arg) {
        long id = (long)(intptr_t)arg;
        unsigned long seen = 0;
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL);  /* signals are the loop thread's */
        pthread_mutex_lock(&dc_mu);
        for (;;) {
            while (dc_generation == seen) pthread_cond_wait(&dc_cv, &dc_mu);
            seen = dc_generation;
            if (id >= dc_wanted) continue;  /* lowered: this one sits out */
            pthread_mutex_unlock(&dc_mu);
            dc_claim_all();
            pthread_mutex_lock(&dc_mu);
        }
        return NULL;
    }

    /* Start helpers up to `wanted` (they are never stopped; fewer wanted: the others
       sit out). Returns how many run. */
    static int dc_set_helpers(int wanted) {
        pthread_mutex_lock(&dc_mu);
        if (wanted > DC_MAX_HELPERS) wanted = DC_MAX_HELPERS;
        if (wanted < 0) wanted = 0;
        while (dc_started < wanted) {
            pthread_t t;
            pthread_attr_t a;
            pthread_attr_init(&a);
            pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
            pthread_attr_setstacksize(&a, 256 * 1024);
            int rc = pthread_create(&t, &a, dc_helper, (void*)(intptr_t)dc_started);
            pthread_attr_destroy(&a);
            if (rc != 0) break;
            dc_started++;
        }
        dc_wanted = wanted < dc_started ? wanted : dc_started;
        pthread_mutex_unlock(&dc_mu);
        return dc_wanted;
    }

    /* Publish `count` jobs written at dc_end.., run them with the helpers, wait. */
    static void dc_run_batch(long count) {
        long end;
        pthread_mutex_lock(&dc_mu);
        end = dc_end + count;
        __atomic_store_n(&dc_end, end, __ATOMIC_RELEASE);
        dc_generation++;
        pthread_cond_broadcast(&dc_cv);
        pthread_mutex_unlock(&dc_mu);
        dc_claim_all();
        while (__atomic_load_n(&dc_done, __ATOMIC_ACQUIRE) < end) sched_yield();
    }

    /* Whether two of the `count` jobs at `base` share an SRTP context (a libsrtp
       session must not be used by two threads at once). */
    static int dc_shared_context(long base, long count) {
        static void* seen[2 * DC_CAPACITY];
        static unsigned int tag[2 * DC_CAPACITY];
        static unsigned int round = 0;
        long k;
        if (++round == 0) { memset(tag, 0, sizeof(tag)); round = 1; }
        for (k = 0; k < count; k++) {
            void* ctx = dc_jobs[(base + k) % DC_CAPACITY].ctx;
            uintptr_t h = ((uintptr_t)ctx >> 4) * 0x9E3779B97F4A7C15ull;
            unsigned long slot = (unsigned long)(h >> 40) % (2 * DC_CAPACITY);
            while (tag[slot] == round) {
                if (seen[slot] == ctx) return 1;
                slot = (slot + 1) % (2 * DC_CAPACITY);
            }
            tag[slot] = round;
            seen[slot] = ctx;
        }
        return 0;
    }
    """
    ctypedef int (*dc_protect_fn)(void*, void*, int*) noexcept nogil
    ctypedef struct dc_job:
        void* ctx
        dc_protect_fn protect
        unsigned char* buf
        int n
        int fd
        const void* addr
        unsigned int addrlen
        int ok
        void* owner
    enum: DC_CAPACITY
    enum: DC_MAX_HELPERS
    dc_job dc_jobs[]
    long dc_end
    void dc_run_one(dc_job* j) noexcept nogil
    void dc_run_batch(long count) noexcept nogil
    int dc_set_helpers(int wanted) noexcept nogil
    int dc_shared_context(long base, long count) noexcept nogil

__all__ = ["ConsumerState", "NackCache", "SendLog", "fan_out", "to_rtx", "vp8_info", "MAX_SEQ_JUMP", "MAX_SEQ_AGE",
           "SEQ_RING", "MAX_RESERVED_GAP", "ALL_TEMPORAL", "PARALLEL_MIN", "set_fanout_threads",
           "fanout_threads", "parallel_stats"]

# See the pure twin: keeps the output sequence sane for the subscriber's SRTP, and the
# vp8 mode's rings.
cdef enum:
    C_MAX_SEQ_JUMP = 1000
    C_MAX_SEQ_AGE = 1000
    C_SEQ_RING = 1024
    C_MAX_RESERVED_GAP = 64
    C_ALL_TEMPORAL = 3
    C_NOT_PROBE = -1  # sfu.bwe.sendlog.NOT_PROBE
    C_PARALLEL_MIN = 16  # copies of one packet below which the loop's thread sends alone
MAX_SEQ_JUMP = C_MAX_SEQ_JUMP
MAX_SEQ_AGE = C_MAX_SEQ_AGE
SEQ_RING = C_SEQ_RING
MAX_RESERVED_GAP = C_MAX_RESERVED_GAP
ALL_TEMPORAL = C_ALL_TEMPORAL
PARALLEL_MIN = C_PARALLEL_MIN

# The batch being collected by fan_out (module state: one event loop thread calls it).
cdef bint c_batching = False
cdef long c_batch_base = 0
cdef long c_batch_count = 0
cdef int c_helpers = 0
cdef long long c_parallel_batches = 0
cdef long long c_parallel_copies = 0
cdef long long c_serial_batches = 0


def set_fanout_threads(int helpers):
    """Let ``helpers`` threads protect and send a packet's copies beside the calling
    thread when it has at least ``PARALLEL_MIN`` of them (0: never). Threads are
    started as needed and never stopped (a lower number leaves the rest idle). Returns
    how many run."""
    global c_helpers
    if helpers < 0:
        raise ValueError(f"fan-out helper threads must be 0 or more, not {helpers}")
    c_helpers = dc_set_helpers(helpers)
    return c_helpers


def fanout_threads():
    """How many helper threads send copies of a packet (0: the loop's thread alone)."""
    return c_helpers


def parallel_stats():
    """``{"helpers", "batches", "copies", "serial"}``: packets whose copies went out in
    parallel, how many copies, and batches sent by the loop's thread alone because two
    copies shared an SRTP session."""
    return {"helpers": c_helpers, "batches": c_parallel_batches, "copies": c_parallel_copies,
            "serial": c_serial_batches}


cdef long finish_batch() except -1:
    """Send the copies collected since fan_out began (in parallel when there are enough
    and no two share an SRTP session), then count the failures on their states; return
    how many failed."""
    global c_batching, c_parallel_batches, c_parallel_copies, c_serial_batches
    cdef long k, count = c_batch_count, base = c_batch_base, failed = 0
    cdef bint parallel = False, shared = False
    cdef dc_job* job
    cdef ConsumerState state
    c_batching = False
    if count == 0:
        return 0
    with nogil:
        if count >= C_PARALLEL_MIN:
            shared = dc_shared_context(base, count)
            parallel = not shared
        if parallel:
            dc_run_batch(count)
        else:
            for k in range(count):
                dc_run_one(&dc_jobs[(base + k) % DC_CAPACITY])
    if parallel:
        c_parallel_batches += 1
        c_parallel_copies += count
    elif shared:
        c_serial_batches += 1
    for k in range(count):
        job = &dc_jobs[(base + k) % DC_CAPACITY]
        if not job.ok:
            state = <ConsumerState>job.owner
            state.send_errors += 1
            state.dropped += 1
            state.packets -= 1
            failed += 1
    return failed


cdef void read_vp8_info(const uint8_t* d, Py_ssize_t n, Py_ssize_t offset, long payload_len,
                        Vp8Info* info) noexcept nogil:
    cdef Vp8Layout at
    cdef const uint8_t* p
    info.pic = -1
    info.pic_pos = -1
    info.pic_size = 0
    info.tl0 = -1
    info.tl0_pos = -1
    info.tid = -1
    info.begins = False
    if offset < 0 or payload_len < 1 or offset + payload_len > n:
        return
    p = d + offset
    if locate(p, payload_len, &at) < 0:
        return
    if at.picture_id_size == 2:
        info.pic = ((p[at.picture_id_offset] & 0x7F) << 8) | p[at.picture_id_offset + 1]
    elif at.picture_id_size == 1:
        info.pic = p[at.picture_id_offset] & 0x7F
    if at.picture_id_offset >= 0:
        info.pic_pos = offset + at.picture_id_offset
        info.pic_size = <int>at.picture_id_size
    if at.tl0_offset >= 0:
        info.tl0 = p[at.tl0_offset]
        info.tl0_pos = offset + at.tl0_offset
    if at.tk_offset >= 0 and p[1] & 0x20:
        info.tid = p[at.tk_offset] >> 6
    info.begins = (p[0] & 0x10) != 0 and (p[0] & 0x07) == 0


cdef inline void patch_vp8(uint8_t* buf, const Vp8Info* info, int pic, int tl0) noexcept nogil:
    write_ids(buf, info.pic_pos, info.pic_size, pic, info.tl0_pos, tl0)


def vp8_info(bytes data not None, Py_ssize_t vp8_offset, long payload_len):
    """``(picture_id, picture_id_pos, picture_id_size, tl0picidx, tl0_pos, tid, begins)``
    of the VP8 payload descriptor at ``vp8_offset`` (see the pure twin)."""
    cdef Vp8Info info
    read_vp8_info(<const uint8_t*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), vp8_offset,
                  payload_len, &info)
    return (info.pic, info.pic_pos, info.pic_size, info.tl0, info.tl0_pos, info.tid,
            bool(info.begins))


cdef Py_ssize_t rtx_into(uint8_t* buf, Py_ssize_t n, const RtxInfo* rtx) noexcept nogil:
    """Turn the packet in ``buf`` (``n`` bytes, room for 2 more) into its RTX packet in
    place (see the twin's ``to_rtx``); the new length, or the (negative) error of
    ``parse_header_c`` if it is not RTP."""
    cdef RtpHeader h
    cdef int rc = parse_header_c(buf, n, &h)
    if rc < 0:
        return rc
    memmove(buf + h.payload_offset + 2, buf + h.payload_offset, n - h.payload_offset)
    buf[h.payload_offset] = buf[2]  # the OSN: the sequence number it was sent with
    buf[h.payload_offset + 1] = buf[3]
    buf[1] = (buf[1] & 0x80) | (rtx.payload_type & 0x7F)
    wr16(buf + 2, rtx.seq)
    wr32(buf + 8, rtx.ssrc)
    return n + 2


def to_rtx(bytes packet not None, ssrc, int payload_type, int seq):
    """``packet`` as an RTX packet on ``ssrc`` (see the pure twin)."""
    cdef RtxInfo rtx
    cdef Py_ssize_t n = PyBytes_GET_SIZE(packet)
    rtx.ssrc, rtx.payload_type, rtx.seq = ssrc, payload_type, seq
    out = PyBytes_FromStringAndSize(NULL, n + 2)
    memcpy(PyBytes_AS_STRING(out), PyBytes_AS_STRING(packet), n)
    n = rtx_into(<uint8_t*>PyBytes_AS_STRING(out), n, &rtx)
    if n < 0:
        raise_malformed(<int>n)
    return out


cdef inline void defer(ConsumerState state, int n) noexcept:
    global c_batch_count
    cdef dc_job* job = &dc_jobs[(c_batch_base + c_batch_count) % DC_CAPACITY]
    job.ctx = state._srtp_ctx
    job.protect = <dc_protect_fn>state._srtp_protect
    job.buf = state._buf
    job.n = n
    job.fd = state._fd
    job.addr = <const void*>&state._sockaddr[0]
    job.addrlen = state._sockaddr_len
    job.ok = 0
    job.owner = <void*>state
    c_batch_count += 1


cdef class SendLog:
    """A ring of the last ``capacity`` packets sent on one transport: the compiled
    ``sfu.bwe.sendlog.SendLog`` (same API and behaviour, see its docstring)."""

    def __cinit__(self, *args, **kwargs):
        self._ring = NULL

    def __init__(self, int capacity=8192):
        cdef int i
        if capacity <= 0 or capacity & (capacity - 1) or capacity > 32768:
            raise ValueError(f"SendLog capacity must be a power of two up to 32768, not {capacity}")
        if self._ring != NULL:  # __init__ called again
            free(self._ring)
            self._ring = NULL
        self._ring = <SentPacket*>malloc(capacity * sizeof(SentPacket))
        if self._ring == NULL:
            raise MemoryError()
        self.capacity = capacity
        self._mask = capacity - 1
        for i in range(capacity):
            self._ring[i].seq = -1
            self._ring[i].send_time = 0.0
            self._ring[i].size = 0
            self._ring[i].probe = C_NOT_PROBE
        self.next_seq = 0

    def __dealloc__(self):
        if self._ring != NULL:
            free(self._ring)

    cdef uint16_t send_c(self, double now, long long size, int probe) noexcept:
        cdef long long seq = self.next_seq
        cdef SentPacket* slot = &self._ring[seq & self._mask]
        slot.seq = seq
        slot.send_time = now
        slot.size = size
        slot.probe = probe
        self.next_seq = seq + 1
        return <uint16_t>(seq & 0xFFFF)

    def send(self, double now, long long size, int probe=C_NOT_PROBE):
        """Record a packet of ``size`` bytes sent at ``now``; its 16-bit transport-wide
        sequence number."""
        return self.send_c(now, size, probe)

    def unwrap(self, long long seq16):
        """The unwrapped number of a 16-bit ``seq16`` (see the pure ``SendLog``)."""
        cdef long long last = self.next_seq - 1
        cdef long long diff = (seq16 - last) & 0xFFFF
        if diff >= 0x8000:
            diff -= 0x10000
        return last + diff

    def lookup(self, long long seq):
        """``(send_time, size, probe)`` of the unwrapped ``seq``, or None if it was never
        sent or has been overwritten."""
        cdef SentPacket* slot
        if seq < 0:
            return None
        slot = &self._ring[seq & self._mask]
        if slot.seq != seq:
            return None
        return slot.send_time, slot.size, slot.probe


cdef inline int twcc_next(ConsumerState state) noexcept:
    """The transport-wide seq (16 bits) the state's next stamped packet gets, or -1 when
    transport-cc is off for it."""
    if state._twcc is None or state._twcc_id <= 0:
        return -1
    return <int>(state._twcc.next_seq & 0xFFFF)


cdef inline void twcc_record(ConsumerState state, int twcc_seq, int stamped, double now,
                             long long size) noexcept:
    """After a rewrite with ``twcc_next``'s seq: the packet in the send log (that seq),
    or counted as unstamped (it had no abs-send-time element to replace)."""
    if twcc_seq < 0:
        return
    if stamped > 0:
        state._twcc.send_c(now, size, C_NOT_PROBE)
    else:
        state.twcc_unstamped += 1


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

    def __cinit__(self, *args, **kwargs):
        self._in_ring = NULL
        self._out_ring = NULL

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
        self._twcc = None
        self._twcc_id = 0
        self.twcc_unstamped = 0
        self.layer = 0
        self.vp8 = False
        self.temporal_limit = C_ALL_TEMPORAL
        self.temporal = C_ALL_TEMPORAL
        self.pic_offset = 0
        self.tl0_offset = 0
        self.next_pic = random.getrandbits(15)
        self.next_tl0 = random.getrandbits(8)
        self.last_pic = -1
        self.last_tl0 = -1
        self.temporal_dropped = 0
        self._newest_in = 0
        self._last_in_pic = -1

    def __dealloc__(self):
        if self._in_ring != NULL:
            free(self._in_ring)
        if self._out_ring != NULL:
            free(self._out_ring)

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

    @property
    def twcc(self):
        """The transport's ``SendLog`` (this module's) when it negotiated transport-cc,
        else None (see the pure twin)."""
        return self._twcc

    @twcc.setter
    def twcc(self, value):
        if value is not None and not isinstance(value, SendLog):
            raise TypeError("ConsumerState.twcc of the compiled fan-out must be a "
                            f"sfu._forward.SendLog or None, not {type(value).__name__}")
        self._twcc = value

    @property
    def twcc_id(self):
        """The subscriber's id of the transport-cc header extension, 0: off."""
        return self._twcc_id

    @twcc_id.setter
    def twcc_id(self, int value):
        if not 0 <= value <= 255:
            raise ValueError(f"ConsumerState.twcc_id must be 0..255, not {value}")
        self._twcc_id = value

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
                          uint32_t abs_send_time, const Vp8Info* info, int out_pic,
                          int out_tl0, double now, const RtxInfo* rtx=NULL) except -1:
        cdef int n = <int>PyBytes_GET_SIZE(data)
        cdef const uint8_t* ext_map = NULL
        cdef int rc
        cdef int twcc_seq = twcc_next(self)
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
                              self.abs_send_time_id, abs_send_time, self._twcc_id, twcc_seq)
            if rc < 0:
                raise_malformed(rc)
            # the size on the wire before SRTP: an RTX packet is 2 bytes longer
            twcc_record(self, twcc_seq, rc, now, n + 2 if rtx != NULL else n)
            if info != NULL:
                patch_vp8(buf, info, out_pic, out_tl0)
            if rtx != NULL:
                n = <int>rtx_into(buf, n, rtx)
                if n < 0:
                    raise_malformed(n)
            if c_batching and buf == self._buf and c_batch_count < DC_CAPACITY:
                defer(self, n)  # fan_out's finish_batch sends it, maybe on a helper thread
                return True
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

    cdef bint send_packet(self, bytes data, uint16_t out_seq, uint32_t out_ts,
                          uint32_t abs_send_time, const Vp8Info* info, int out_pic, int out_tl0,
                          double now, const RtxInfo* rtx=NULL):
        """Rewrite and send (natively if bound so), as RTX if ``rtx`` is given; False
        if it could not be sent. A transport-cc stamped packet is in the send log
        even when sending it failed (its number is used)."""
        cdef const uint8_t* ext_map = NULL
        cdef int twcc_seq, stamped = 0
        if self._srtp_ctx != NULL:
            return self.send_native(data, out_seq, out_ts, abs_send_time, info, out_pic, out_tl0,
                                    now, rtx)
        if self._ext_map is not None:
            ext_map = <const uint8_t*>(<char*>self._ext_map)
        twcc_seq = twcc_next(self)
        packet = rewrite_c(data, self.ssrc, out_seq, out_ts, self.payload_type, ext_map,
                           self.abs_send_time_id, abs_send_time, self._twcc_id, twcc_seq,
                           &stamped)
        twcc_record(self, twcc_seq, stamped, now,
                    PyBytes_GET_SIZE(data) + 2 if rtx != NULL else PyBytes_GET_SIZE(data))
        if info != NULL:  # a new object nobody else holds yet
            patch_vp8(<uint8_t*>PyBytes_AS_STRING(packet), info, out_pic, out_tl0)
        if rtx != NULL:
            packet = to_rtx(packet, rtx.ssrc, rtx.payload_type, rtx.seq)
        try:
            self._sendto(self._protect(packet), self._addr)
        except Exception:
            return False
        return True

    def restart(self):
        if self.started:
            self.next_seq = <uint16_t>(self.last_seq + 1)
            self.next_ts = <uint32_t>(self.last_ts + 1)
            if self.last_pic >= 0:
                self.next_pic = (self.last_pic + 1) & 0x7FFF
            if self.last_tl0 >= 0:
                self.next_tl0 = <uint8_t>(self.last_tl0 + 1)
        self.started = False

    cdef bint forward_c(self, bytes data, uint16_t seq, uint32_t ts, long payload_len,
                        bint keyframe, uint32_t abs_send_time, double now):
        cdef uint16_t out_seq
        cdef uint16_t ahead
        cdef uint32_t out_ts
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
        if not self.send_packet(data, out_seq, out_ts, abs_send_time, NULL, -1, -1, now):
            self.dropped += 1
            return False
        if self.last_seq < 0 or <uint16_t>(out_seq - <uint16_t>self.last_seq) < 0x8000:
            self.last_seq = out_seq
            self.last_ts = out_ts
        self.packets += 1
        self.octets += payload_len
        return True

    cdef bint forward_vp8_c(self, bytes data, uint16_t seq, uint32_t ts, long payload_len,
                            bint keyframe, uint32_t abs_send_time, const Vp8Info* info,
                            double now):
        cdef uint16_t ahead, out_seq, pic_offset, missing, back, limit
        cdef uint32_t out_ts
        cdef int pic_mask, out_pic = -1, out_tl0 = -1, diff
        cdef bint new_picture, newest
        cdef SeqEntry* entry
        if self.paused or self._sendto is None:
            return False
        if not self.started:
            if self.video and not keyframe:
                self.dropped += 1
                return False
            if self._in_ring == NULL:
                self._in_ring = <SeqEntry*>malloc(C_SEQ_RING * sizeof(SeqEntry))
                self._out_ring = <SeqEntry*>malloc(C_SEQ_RING * sizeof(SeqEntry))
                if self._in_ring == NULL or self._out_ring == NULL:
                    raise MemoryError()
            self.seq_offset = <uint16_t>(self.next_seq - seq)
            self.ts_offset = <uint32_t>(self.next_ts - ts)
            self.started = True
            self.pic_offset = (self.next_pic - info.pic) & 0x7FFF if info.pic >= 0 else 0
            self.tl0_offset = <uint8_t>(self.next_tl0 - info.tl0) if info.tl0 >= 0 else 0
            self.temporal = self.temporal_limit
            self._newest_in = <uint16_t>(seq - 1)
            self._last_in_pic = -1
            memset(self._in_ring, 0xFF, C_SEQ_RING * sizeof(SeqEntry))
            memset(self._out_ring, 0xFF, C_SEQ_RING * sizeof(SeqEntry))
        ahead = <uint16_t>(seq - self._newest_in)
        if 0 < ahead < 0x8000:  # the newest so far (perhaps after a gap)
            if ahead > C_MAX_SEQ_JUMP:  # a discontinuity: the output continues gap-free
                self.seq_offset = <uint16_t>(<uint16_t>self.last_seq + 1 - seq)
                memset(self._in_ring, 0xFF, C_SEQ_RING * sizeof(SeqEntry))
            else:  # what is missing keeps its number, should it arrive late
                limit = ahead if ahead < C_MAX_RESERVED_GAP + 1 else C_MAX_RESERVED_GAP + 1
                for back in range(1, limit):
                    missing = <uint16_t>(seq - back)
                    entry = &self._in_ring[missing & (C_SEQ_RING - 1)]
                    entry.key = missing
                    entry.other = <uint16_t>(missing + self.seq_offset)
                    entry.pic_offset = self.pic_offset
            self._newest_in = seq
            pic_mask = 0x7F if info.pic_size == 1 else 0x7FFF
            new_picture = False
            if info.pic >= 0:
                diff = (info.pic - self._last_in_pic) & pic_mask
                new_picture = self._last_in_pic < 0 or 0 < diff <= (pic_mask >> 1)
            if new_picture:
                self._last_in_pic = info.pic
            if info.tid >= 0:
                if info.begins and info.tid == 0:  # a TL0 picture: the place to change the limit
                    self.temporal = self.temporal_limit
                if info.tid > self.temporal:  # dropped; the numbers after it close the gap
                    self.seq_offset = <uint16_t>(self.seq_offset - 1)
                    if new_picture:
                        self.pic_offset = (self.pic_offset - 1) & 0x7FFF
                    entry = &self._in_ring[seq & (C_SEQ_RING - 1)]
                    entry.key = seq
                    entry.other = -1
                    entry.pic_offset = 0
                    self.temporal_dropped += 1
                    return False
            out_seq = <uint16_t>(seq + self.seq_offset)
            pic_offset = self.pic_offset
            entry = &self._in_ring[seq & (C_SEQ_RING - 1)]
            entry.key = seq
            entry.other = out_seq
            entry.pic_offset = pic_offset
            newest = True
        else:  # late or repeated: the number it was given, if it has one
            entry = &self._in_ring[seq & (C_SEQ_RING - 1)]
            if entry.key != seq or entry.other < 0 or info.tid > self.temporal:
                self.dropped += 1
                return False
            out_seq = <uint16_t>entry.other
            pic_offset = entry.pic_offset
            newest = False
        out_ts = <uint32_t>(ts + self.ts_offset)
        if info.pic >= 0:
            out_pic = (info.pic + pic_offset) & 0x7FFF
        if info.tl0 >= 0:
            out_tl0 = (info.tl0 + self.tl0_offset) & 0xFF
        if not self.send_packet(data, out_seq, out_ts, abs_send_time, info, out_pic, out_tl0, now):
            self.dropped += 1
            return False
        if newest:
            self.last_seq = out_seq
            self.last_ts = out_ts
            if out_pic >= 0:
                self.last_pic = out_pic
            if out_tl0 >= 0:
                self.last_tl0 = out_tl0
        entry = &self._out_ring[out_seq & (C_SEQ_RING - 1)]
        entry.key = out_seq
        entry.other = seq
        entry.pic_offset = pic_offset
        self.packets += 1
        self.octets += payload_len
        return True

    def forward(self, bytes data, seq, ts, long payload_len, bint keyframe, abs_send_time,
                int layer=0, Py_ssize_t vp8_offset=-1, *, double now=0.0):
        """Rewrite and send one packet of the producer's spatial ``layer``; True if it
        was sent. ``vp8_offset`` locates the VP8 payload (vp8 mode); ``now`` is the
        send time for the transport-cc send log (see the pure twin)."""
        cdef Vp8Info info
        if layer != self.layer:
            return False
        if self.vp8:
            read_vp8_info(<const uint8_t*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data),
                          vp8_offset, payload_len, &info)
            return self.forward_vp8_c(data, seq, ts, payload_len, keyframe, abs_send_time, &info,
                                      now)
        return self.forward_c(data, seq, ts, payload_len, keyframe, abs_send_time, now)

    def retransmit(self, bytes data, abs_send_time, int out_seq=-1, rtx_ssrc=0,
                   int rtx_payload_type=-1, int rtx_seq=0, *, double now=0.0):
        """Send a cached producer packet again with this consumer's mapping (in vp8
        mode: as the output packet ``out_seq`` it was, which `producer_seq` found); as
        RTX on ``rtx_ssrc`` when ``rtx_payload_type`` >= 0 (see the pure twin)."""
        cdef const uint8_t* d
        cdef uint16_t seq
        cdef uint32_t ts
        cdef RtpHeader h
        cdef Vp8Info info
        cdef SeqEntry* entry
        cdef int out_pic = -1, out_tl0 = -1
        cdef RtxInfo rtx
        cdef const RtxInfo* as_rtx = NULL
        if not self.started or self._sendto is None or len(data) < 12:
            return False
        if rtx_payload_type >= 0:
            rtx.ssrc, rtx.payload_type, rtx.seq = rtx_ssrc, rtx_payload_type, rtx_seq & 0xFFFF
            as_rtx = &rtx
        d = <const uint8_t*>(<char*>data)
        seq = (<uint16_t>d[2] << 8) | d[3]
        ts = (<uint32_t>d[4] << 24) | (<uint32_t>d[5] << 16) | (<uint32_t>d[6] << 8) | d[7]
        if not self.vp8:
            return self.send_packet(data, <uint16_t>(seq + self.seq_offset),
                                    <uint32_t>(ts + self.ts_offset), abs_send_time, NULL, -1, -1,
                                    now, as_rtx)
        if out_seq < 0 or self._out_ring == NULL:
            return False
        entry = &self._out_ring[out_seq & (C_SEQ_RING - 1)]
        if entry.key != out_seq or entry.other != seq:
            return False
        if parse_header_c(d, PyBytes_GET_SIZE(data), &h) < 0:
            return False
        read_vp8_info(d, PyBytes_GET_SIZE(data), h.payload_offset,
                      h.payload_end - h.payload_offset, &info)
        if info.pic >= 0:
            out_pic = (info.pic + entry.pic_offset) & 0x7FFF
        if info.tl0 >= 0:
            out_tl0 = (info.tl0 + self.tl0_offset) & 0xFF
        return self.send_packet(data, <uint16_t>out_seq, <uint32_t>(ts + self.ts_offset),
                                abs_send_time, &info, out_pic, out_tl0, now, as_rtx)

    def producer_seq(self, int out_seq):
        """The producer's sequence number for an output sequence number (vp8 mode: -1
        if this consumer sent no such packet since it last started)."""
        cdef SeqEntry* entry
        if self.vp8:
            if self._out_ring == NULL:
                return -1
            entry = &self._out_ring[out_seq & (C_SEQ_RING - 1)]
            return entry.other if entry.key == out_seq else -1
        return (out_seq - self.seq_offset) & 0xFFFF


def fan_out(list states, bytes data, seq, ts, long payload_len, bint keyframe, abs_send_time,
            int layer=0, Py_ssize_t vp8_offset=-1, *, double now=0.0):
    """Forward one inbound packet of spatial ``layer`` to every consumer state (those
    of another layer skip it); return how many sent. The VP8 descriptor (vp8 mode) is
    read once, for all of them; ``now`` is the send time for transport-cc."""
    cdef ConsumerState state
    cdef int sent = 0
    cdef uint16_t c_seq = seq
    cdef uint32_t c_ts = ts
    cdef uint32_t c_ast = abs_send_time
    cdef Vp8Info info
    cdef bint have_info = False
    cdef bint batch = c_helpers > 0 and len(states) >= C_PARALLEL_MIN and not c_batching
    global c_batching, c_batch_base, c_batch_count
    if batch:  # natively bound states leave their copy to finish_batch
        c_batching = True
        c_batch_base = dc_end
        c_batch_count = 0
    try:
        for state in states:
            if state.layer != layer:
                continue
            if state.vp8:
                if not have_info:
                    read_vp8_info(<const uint8_t*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data),
                                  vp8_offset, payload_len, &info)
                    have_info = True
                if state.forward_vp8_c(data, c_seq, c_ts, payload_len, keyframe, c_ast, &info, now):
                    sent += 1
            elif state.forward_c(data, c_seq, c_ts, payload_len, keyframe, c_ast, now):
                sent += 1
    finally:
        if batch:
            sent -= finish_batch()
    return sent
