# cython: language_level=3
"""A load client's receive path, compiled. Same API as ``bench/_receive_py.py``.

One :class:`Receiver` per subscriber socket. ``drain()`` reads every datagram waiting on
the socket with ``recvmmsg(2)`` (32 at a time, with the kernel's ``SCM_TIMESTAMPNS``
receive stamp), and for each SRTP packet calls libsrtp's ``srtp_unprotect`` from C,
parses the RTP header, does the sequence accounting of :class:`bench.stats.StreamStats`,
reads the publisher's send stamp (:data:`bench.stats.TRAILER`) and keeps the latency in
a reservoir: no Python object per packet. Whatever is not SRTP (STUN, DTLS) or is SRTCP
is returned for the caller to hand to the ICE connection, with its source address.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec

from sfu._rtp cimport parse_header_c, rd32, RtpHeader
from sfu._vp8 cimport keyframe_after, locate, Vp8Layout

from sfu import _aiortc_internals as internals

from bench.stats import OUTAGE_S


cdef extern from "<sys/uio.h>" nogil:
    cdef struct iovec:
        void* iov_base
        size_t iov_len

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    cdef struct sockaddr_storage:
        sa_family_t ss_family
    cdef struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    cdef struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    cdef struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    cmsghdr* CMSG_FIRSTHDR(msghdr* m)
    cmsghdr* CMSG_NXTHDR(msghdr* m, cmsghdr* c)
    unsigned char* CMSG_DATA(cmsghdr* c)
    int recvmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags, timespec* timeout)
    int MSG_DONTWAIT
    int MSG_TRUNC
    int SOL_SOCKET
    int SCM_TIMESTAMPNS
    int AF_INET
    int AF_INET6

cdef extern from "<netinet/in.h>" nogil:
    cdef struct in_addr:
        pass
    cdef struct in6_addr:
        pass
    cdef struct sockaddr_in:
        uint16_t sin_port
        in_addr sin_addr
    cdef struct sockaddr_in6:
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id
    uint16_t ntohs(uint16_t)
    uint32_t ntohl(uint32_t)

cdef extern from "<arpa/inet.h>" nogil:
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)

cdef extern from "<errno.h>" nogil:
    int errno
    int EINTR

ctypedef int (*srtp_unprotect_fn)(void* ctx, void* srtp_hdr, int* len_ptr) noexcept nogil

__all__ = ["Receiver", "BATCH", "BUFFER", "WINDOW", "MAX_GAP", "MAX_STREAMS", "OUTAGE_NS"]

cdef enum:
    C_BATCH = 32            # datagrams per recvmmsg
    C_BUFFER = 4096         # bytes per datagram buffer; longer ones are counted as truncated
    C_CONTROL = 64          # ancillary bytes per datagram (one timespec)
    C_WINDOW = 4096         # bench.stats.StreamStats.WINDOW
    C_RING = 8192           # sequence numbers remembered (bits), at least 2 x WINDOW
    C_RING_WORDS = 128      # C_RING / 64
    C_MAX_GAP = 64          # bench.stats.StreamStats.MAX_GAP
    C_MAX_STREAMS = 16      # SSRCs counted; more are counted as "unknown"
BATCH = C_BATCH
BUFFER = C_BUFFER
WINDOW = C_WINDOW
MAX_GAP = C_MAX_GAP
MAX_STREAMS = C_MAX_STREAMS
OUTAGE_NS = int(OUTAGE_S * 1e9)
cdef int64_t C_OUTAGE_NS = OUTAGE_NS

cdef enum:
    TRAILER_SIZE = 16       # bench.stats.TRAILER: !QI4s

ctypedef struct Stream:
    uint32_t ssrc
    bint video
    bint started
    int64_t first
    int64_t highest
    long received
    long unique
    long duplicates
    long reordered
    uint64_t seen[C_RING_WORDS]


cdef inline bint ring_has(Stream* s, int64_t ext) noexcept nogil:
    cdef uint64_t i = <uint64_t>(ext & (C_RING - 1))
    return (s.seen[i >> 6] >> (i & 63)) & 1


cdef inline void ring_set(Stream* s, int64_t ext) noexcept nogil:
    cdef uint64_t i = <uint64_t>(ext & (C_RING - 1))
    s.seen[i >> 6] |= (<uint64_t>1) << (i & 63)


cdef inline void ring_clear(Stream* s, int64_t ext) noexcept nogil:
    cdef uint64_t i = <uint64_t>(ext & (C_RING - 1))
    s.seen[i >> 6] &= ~((<uint64_t>1) << (i & 63))


cdef enum:
    NEW = 0
    LATE = 1
    DUP = 2
    OLD = 3


cdef int stream_add(Stream* s, uint16_t seq, int* gap) noexcept nogil:
    """``bench.stats.StreamStats.add``: NEW, LATE, DUP or OLD; ``gap`` gets how many
    sequence numbers a NEW packet skipped when that is 1..MAX_GAP-1, else 0."""
    cdef int delta
    cdef int64_t ext, e
    gap[0] = 0
    s.received += 1
    if not s.started:
        s.started = True
        s.first = s.highest = seq
        memset(s.seen, 0, sizeof(s.seen))
        ring_set(s, seq)
        s.unique += 1
        return NEW
    delta = ((<int>seq - <int>(s.highest & 0xFFFF) + 0x8000) & 0xFFFF) - 0x8000
    ext = s.highest + delta
    if delta <= -C_WINDOW:
        return OLD
    if delta <= 0 and ring_has(s, ext):
        s.duplicates += 1
        return DUP
    if ext < s.first:
        s.first = ext
    s.unique += 1
    if delta > 0:
        if delta >= C_RING:
            memset(s.seen, 0, sizeof(s.seen))
        else:
            e = s.highest + 1
            while e < ext:
                ring_clear(s, e)
                e += 1
        ring_set(s, ext)
        if 1 < delta <= C_MAX_GAP:
            gap[0] = delta - 1
        s.highest = ext
        return NEW
    ring_set(s, ext)
    s.reordered += 1
    return LATE


cdef inline bint has_magic(const uint8_t* p) noexcept nogil:
    """The 4 bytes at ``p`` are bench.stats.MAGIC (b"DcB1")."""
    return p[0] == 0x44 and p[1] == 0x63 and p[2] == 0x42 and p[3] == 0x31


cdef inline int64_t clock_ns(int clock) noexcept nogil:
    cdef timespec ts
    clock_gettime(clock, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef object address(const sockaddr_storage* sa):
    """The datagram's source as Python's socket module gives it."""
    cdef char text[64]
    cdef const sockaddr_in* v4
    cdef const sockaddr_in6* v6
    if sa.ss_family == AF_INET:
        v4 = <const sockaddr_in*>sa
        inet_ntop(AF_INET, &v4.sin_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs(v4.sin_port))
    if sa.ss_family == AF_INET6:
        v6 = <const sockaddr_in6*>sa
        inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs(v6.sin6_port), ntohl(v6.sin6_flowinfo), v6.sin6_scope_id)
    return None


cdef class Receiver:
    """Counts what arrives on one subscriber's socket (see the module docstring).

    ``fd``: the socket (not owned: never closed here); ``session``: the pylibsrtp
    session that unprotects what it receives; ``video_pts``: payload type -> True for
    video (a type not listed is video from 96 up, as the Python subscriber guesses);
    ``nack``: gaps of video streams are collected for NACKs (:meth:`take_nacks`);
    ``latency_cap``: latency samples kept (Algorithm R beyond it).
    """

    cdef int fd
    cdef object owner  # keeps the libsrtp session alive
    cdef void* ctx
    cdef srtp_unprotect_fn unprotect
    cdef uint8_t* buffers
    cdef mmsghdr msgs[C_BATCH]
    cdef iovec iov[C_BATCH]
    cdef sockaddr_storage names[C_BATCH]
    cdef uint8_t control[C_BATCH][C_CONTROL]
    cdef Stream* streams
    cdef int nstreams
    cdef uint8_t kinds[128]  # 0: guess by number, 1: video, 2: audio
    cdef float* samples
    cdef long cap
    cdef long nsamples
    cdef uint64_t rng
    cdef readonly bint nack
    cdef public long latency_count, stamped, rtp, bytes, srtp_errors, malformed, truncated
    cdef public long unknown_streams, read_errors, nacked, recovered
    cdef public int64_t first_packet_ns, first_keyframe_ns, last_video_ns
    cdef list _nacks, _outages

    def __cinit__(self, *args, **kwargs):
        self.buffers = NULL
        self.streams = NULL
        self.samples = NULL

    def __init__(self, int fd, session, *, video_pts=None, bint nack=True, long latency_cap=5000,
                 uint64_t seed=0):
        cdef int i
        if latency_cap < 1:
            raise ValueError("latency_cap must be at least 1")
        self.fd = fd
        self.owner, ctx, fn = internals.srtp_unprotect_native(session)
        self.ctx = <void*><uintptr_t>ctx
        self.unprotect = <srtp_unprotect_fn><uintptr_t>fn
        self.buffers = <uint8_t*>malloc(C_BATCH * C_BUFFER)
        self.streams = <Stream*>malloc(C_MAX_STREAMS * sizeof(Stream))
        self.samples = <float*>malloc(latency_cap * sizeof(float))
        if self.buffers == NULL or self.streams == NULL or self.samples == NULL:
            raise MemoryError()
        self.cap = latency_cap
        self.rng = seed * 2654435761 + 88172645463325252
        self.nack = nack
        memset(self.kinds, 0, sizeof(self.kinds))
        for pt, video in (video_pts or {}).items():
            if 0 <= pt < 128:
                self.kinds[pt] = 1 if video else 2
        for i in range(C_BATCH):
            self.iov[i].iov_base = self.buffers + i * C_BUFFER
            self.iov[i].iov_len = C_BUFFER
        self._nacks = []
        self._outages = []
        self.first_packet_ns = self.first_keyframe_ns = self.last_video_ns = 0
        self.mark()

    def __dealloc__(self):
        free(self.buffers)
        free(self.streams)
        free(self.samples)

    def close(self):
        """Nothing to release before the object goes (the twin closes its socket)."""

    def mark(self):
        """Start a new window: every count, stream and latency sample forgotten (the
        first-packet and first-keyframe times stay)."""
        self.nstreams = 0
        self.latency_count = self.nsamples = 0
        self.stamped = self.rtp = self.bytes = self.srtp_errors = self.malformed = 0
        self.truncated = self.unknown_streams = self.read_errors = 0
        self.nacked = self.recovered = 0
        self._outages = []

    cdef Stream* stream_for(self, uint32_t ssrc, int pt):
        cdef int i
        cdef Stream* s
        for i in range(self.nstreams):
            if self.streams[i].ssrc == ssrc:
                return &self.streams[i]
        if self.nstreams == C_MAX_STREAMS:
            return NULL
        s = &self.streams[self.nstreams]
        self.nstreams += 1
        memset(s, 0, sizeof(Stream))
        s.ssrc = ssrc
        s.video = self.kinds[pt] == 1 or (self.kinds[pt] == 0 and pt >= 96)
        return s

    cdef void add_sample(self, float value) noexcept:
        cdef uint64_t j
        self.latency_count += 1
        if self.nsamples < self.cap:
            self.samples[self.nsamples] = value
            self.nsamples += 1
            return
        self.rng ^= self.rng << 13
        self.rng ^= self.rng >> 7
        self.rng ^= self.rng << 17
        j = self.rng % <uint64_t>self.latency_count
        if j < <uint64_t>self.cap:
            self.samples[j] = value

    cdef void packet(self, uint8_t* buf, int n, int64_t arrival):
        cdef RtpHeader h
        cdef Stream* s
        cdef int outcome, gap, i
        cdef int64_t sent
        cdef Vp8Layout at
        cdef const uint8_t* p
        cdef Py_ssize_t size
        if self.unprotect(self.ctx, buf, &n) != 0:
            self.srtp_errors += 1
            return
        if parse_header_c(buf, n, &h) < 0:
            self.malformed += 1
            return
        self.rtp += 1
        if self.first_packet_ns == 0:
            self.first_packet_ns = arrival
        s = self.stream_for(h.ssrc, h.payload_type)
        if s == NULL:
            self.unknown_streams += 1
            return
        self.bytes += n
        outcome = stream_add(s, h.sequence_number, &gap)
        if outcome == DUP:
            return
        if gap:
            if self.nack and s.video:
                self.nacked += gap
                self._nacks.append((s.ssrc, [(h.sequence_number - gap + i) & 0xFFFF
                                             for i in range(gap)]))
        elif outcome == LATE and self.nacked:
            self.recovered += 1
        if h.payload_end >= TRAILER_SIZE and has_magic(buf + h.payload_end - 4):
            sent = (<int64_t>rd32(buf + h.payload_end - TRAILER_SIZE) << 32) | \
                rd32(buf + h.payload_end - TRAILER_SIZE + 4)
            self.stamped += 1
            self.add_sample((arrival - sent) / 1000.0)
        if s.video:
            if self.last_video_ns and arrival - self.last_video_ns > C_OUTAGE_NS:
                self._outages.append((self.last_video_ns / 1e9, arrival / 1e9))
            self.last_video_ns = arrival
            if self.first_keyframe_ns == 0:
                p = buf + h.payload_offset
                size = h.payload_end - h.payload_offset
                if locate(p, size, &at) == 0 and keyframe_after(p, size, at.size):
                    self.first_keyframe_ns = arrival

    def drain(self):
        """Read and count everything waiting on the socket; return the datagrams that
        are not SRTP, and the SRTCP ones, as ``[(data, address)]`` in arrival order."""
        cdef int n, i, length
        cdef int64_t offset, now, arrival
        cdef uint8_t* buf
        cdef cmsghdr* c
        cdef timespec* ts
        cdef list others = []
        now = clock_ns(CLOCK_MONOTONIC)
        offset = clock_ns(CLOCK_REALTIME) - now  # kernel stamps are CLOCK_REALTIME
        while True:
            for i in range(C_BATCH):
                self.msgs[i].msg_hdr.msg_name = &self.names[i]
                self.msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
                self.msgs[i].msg_hdr.msg_iov = &self.iov[i]
                self.msgs[i].msg_hdr.msg_iovlen = 1
                self.msgs[i].msg_hdr.msg_control = &self.control[i][0]
                self.msgs[i].msg_hdr.msg_controllen = C_CONTROL
                self.msgs[i].msg_hdr.msg_flags = 0
            with nogil:
                n = recvmmsg(self.fd, self.msgs, C_BATCH, MSG_DONTWAIT, NULL)
            if n < 0:
                if errno == EINTR:
                    continue
                break  # EAGAIN: nothing left; an ICMP error is reported once, then reading goes on
            for i in range(n):
                buf = self.buffers + i * C_BUFFER
                length = self.msgs[i].msg_len
                if self.msgs[i].msg_hdr.msg_flags & MSG_TRUNC:
                    self.truncated += 1
                    continue
                arrival = now
                c = CMSG_FIRSTHDR(&self.msgs[i].msg_hdr)
                while c != NULL:
                    if c.cmsg_level == SOL_SOCKET and c.cmsg_type == SCM_TIMESTAMPNS:
                        ts = <timespec*>CMSG_DATA(c)
                        arrival = <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec - offset
                        break
                    c = CMSG_NXTHDR(&self.msgs[i].msg_hdr, c)
                if length >= 12 and 127 < buf[0] < 192 and not (192 <= buf[1] <= 223):
                    self.packet(buf, length, arrival)
                else:
                    others.append((PyBytes_FromStringAndSize(<char*>buf, length),
                                   address(&self.names[i])))
            if n < C_BATCH:
                break
        return others

    def take_nacks(self):
        """``[(ssrc, [seq, ...])]`` of the gaps seen since the last call."""
        out, self._nacks = self._nacks, []
        return out

    def take_outages(self):
        """``[(last video before, first after)]`` in seconds (CLOCK_MONOTONIC) of silences
        of the video over ``OUTAGE_NS``, since the last call."""
        out, self._outages = self._outages, []
        return out

    def latencies(self):
        """The latency samples (µs) kept since :meth:`mark`."""
        return [self.samples[i] for i in range(self.nsamples)]

    def counts(self):
        """``{kind: {received, expected, lost, duplicates, reordered}}`` summed by kind."""
        cdef int i
        cdef Stream* s
        cdef long expected
        out = {}
        for i in range(self.nstreams):
            s = &self.streams[i]
            row = out.setdefault("video" if s.video else "audio", {})
            expected = s.highest - s.first + 1 if s.started else 0
            for key, value in (("received", s.received), ("expected", expected),
                               ("lost", max(0, expected - s.unique)),
                               ("duplicates", s.duplicates), ("reordered", s.reordered)):
                row[key] = row.get(key, 0) + value
        return out

