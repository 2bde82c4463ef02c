"""Compiled RTCP parsing and serializing; twin of ``_rtcp_py.py`` (see there for RFCs).

boundscheck is off for the whole build: every read below is preceded by an explicit
length check against the packet or body length.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cython.dataclasses cimport dataclass, field
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from sfu._rtp cimport rd16, rd24, rd32, wr16, wr24, wr32

from .errors import MalformedPacket

__all__ = [
    "MAX_FEEDBACK_PACKETS",
    "Bye",
    "Fir",
    "Nack",
    "Pli",
    "ReceiverReport",
    "Remb",
    "ReportBlock",
    "Sdes",
    "SenderReport",
    "TransportFeedback",
    "UnknownRtcp",
    "parse_rtcp",
    "serialize_rtcp",
]

cdef enum:
    SR = 200
    RR = 201
    SDES = 202
    BYE = 203
    RTPFB = 205
    PSFB = 206
    FMT_NACK = 1
    FMT_TWCC = 15
    FMT_PLI = 1
    FMT_FIR = 4
    FMT_AFB = 15
    TICK_US = 250  # transport-cc receive deltas are multiples of 250 µs

MAX_FEEDBACK_PACKETS = 8192  # the twin's docstring says why


cdef inline bytes slice_bytes(const uint8_t* p, Py_ssize_t length):
    return PyBytes_FromStringAndSize(<const char*>p, length)


cdef inline int32_t signed24(uint32_t v) noexcept nogil:
    return <int32_t>(v ^ 0x800000) - 0x800000


cdef uint64_t checked(object value, uint64_t limit, str name) except? 0xFFFFFFFFFFFFFFFF:
    if not 0 <= value <= limit:
        raise ValueError(f"RTCP field out of range: {name}")
    return value


cdef uint32_t checked_signed24(object value, str name) except? 0xFFFFFFFF:
    if not -0x800000 <= value <= 0x7FFFFF:
        raise ValueError(f"{name} must fit in a signed 24-bit field")
    return <uint32_t>(<int32_t>value) & 0xFFFFFF


cdef bytes new_packet(int packet_type, object count, Py_ssize_t body_length, uint8_t** body):
    """Allocate header + body (+ RTCP padding if the body is not 32-bit aligned), write
    the header and padding, and point ``body`` at the bytes the caller must fill."""
    cdef Py_ssize_t pad = (-body_length) & 3  # cdivision is on: no negative %
    cdef Py_ssize_t size = 4 + body_length + pad
    if not 0 <= count <= 31 or size - 4 > 4 * 0xFFFF:
        raise ValueError("RTCP count must be 0..31 and the packet under 256 KiB")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
    o[0] = 0x80 | (0x20 if pad else 0) | <int>count
    o[1] = packet_type
    wr16(o + 2, (size - 4) // 4)
    if pad:
        memset(o + 4 + body_length, 0, pad - 1)
        o[size - 1] = pad
    body[0] = o + 4
    return out


@dataclass
cdef class ReportBlock:
    """RFC 3550 reception report block; ``packets_lost`` is signed 24-bit."""

    ssrc: object = 0
    fraction_lost: object = 0
    packets_lost: object = 0
    highest_sequence: object = 0
    jitter: object = 0
    lsr: object = 0
    dlsr: object = 0

    @classmethod
    def parse(cls, bytes data not None, Py_ssize_t offset=0):
        if offset < 0 or PyBytes_GET_SIZE(data) < offset + 24:
            raise MalformedPacket("RTCP report block truncated")
        return parse_block(<const uint8_t*>PyBytes_AS_STRING(data) + offset)

    def serialize(self) -> bytes:
        cdef bytes out = PyBytes_FromStringAndSize(NULL, 24)
        write_block(self, <uint8_t*>PyBytes_AS_STRING(out))
        return out


cdef ReportBlock parse_block(const uint8_t* p):
    cdef ReportBlock block = ReportBlock.__new__(ReportBlock)
    block.ssrc = rd32(p)
    block.fraction_lost = p[4]
    block.packets_lost = signed24(rd24(p + 5))
    block.highest_sequence = rd32(p + 8)
    block.jitter = rd32(p + 12)
    block.lsr = rd32(p + 16)
    block.dlsr = rd32(p + 20)
    return block


cdef int write_block(ReportBlock block, uint8_t* p) except -1:
    wr32(p, checked(block.ssrc, 0xFFFFFFFF, "ssrc"))
    p[4] = checked(block.fraction_lost, 0xFF, "fraction_lost")
    wr24(p + 5, checked_signed24(block.packets_lost, "packets_lost"))
    wr32(p + 8, checked(block.highest_sequence, 0xFFFFFFFF, "highest_sequence"))
    wr32(p + 12, checked(block.jitter, 0xFFFFFFFF, "jitter"))
    wr32(p + 16, checked(block.lsr, 0xFFFFFFFF, "lsr"))
    wr32(p + 20, checked(block.dlsr, 0xFFFFFFFF, "dlsr"))
    return 0


cdef list parse_blocks(const uint8_t* b, Py_ssize_t n, Py_ssize_t offset, int count):
    cdef int i
    if n < offset + 24 * count:
        raise MalformedPacket("RTCP report blocks truncated")
    return [parse_block(b + offset + 24 * i) for i in range(count)]


cdef int write_blocks(list reports, uint8_t* p) except -1:
    cdef Py_ssize_t i
    for i in range(len(reports)):
        write_block(<ReportBlock?>reports[i], p + 24 * i)
    return 0


@dataclass
cdef class SenderReport:
    """RFC 3550 SR; ``ntp_timestamp`` is the 64-bit NTP value."""

    ssrc: object = 0
    ntp_timestamp: object = 0
    rtp_timestamp: object = 0
    packet_count: object = 0
    octet_count: object = 0
    reports: list = field(default_factory=list)

    def serialize(self) -> bytes:
        cdef uint8_t* b
        cdef uint64_t ntp = checked(self.ntp_timestamp, 0xFFFFFFFFFFFFFFFF, "ntp_timestamp")
        cdef bytes out = new_packet(SR, len(self.reports), 24 + 24 * len(self.reports), &b)
        wr32(b, checked(self.ssrc, 0xFFFFFFFF, "ssrc"))
        wr32(b + 4, ntp >> 32)
        wr32(b + 8, ntp & 0xFFFFFFFF)
        wr32(b + 12, checked(self.rtp_timestamp, 0xFFFFFFFF, "rtp_timestamp"))
        wr32(b + 16, checked(self.packet_count, 0xFFFFFFFF, "packet_count"))
        wr32(b + 20, checked(self.octet_count, 0xFFFFFFFF, "octet_count"))
        write_blocks(self.reports, b + 24)
        return out


@dataclass
cdef class ReceiverReport:
    """RFC 3550 RR."""

    ssrc: object = 0
    reports: list = field(default_factory=list)

    def serialize(self) -> bytes:
        cdef uint8_t* b
        cdef bytes out = new_packet(RR, len(self.reports), 4 + 24 * len(self.reports), &b)
        wr32(b, checked(self.ssrc, 0xFFFFFFFF, "ssrc"))
        write_blocks(self.reports, b + 4)
        return out


@dataclass
cdef class Sdes:
    """RFC 3550 SDES: ``chunks`` is ``[(ssrc, [(item_type, value), ...]), ...]``."""

    chunks: list = field(default_factory=list)

    def serialize(self) -> bytes:
        cdef uint8_t* b
        cdef Py_ssize_t size = 0, pos = 0, chunk_size
        cdef bytes value
        for ssrc, items in self.chunks:
            checked(ssrc, 0xFFFFFFFF, "ssrc")
            chunk_size = 4
            for item_type, value in items:
                if not 1 <= item_type <= 255 or len(value) > 255:
                    raise ValueError("SDES item type must be 1..255, value at most 255 bytes")
                chunk_size += 2 + len(value)
            size += chunk_size + 4 - (chunk_size & 3)  # the null item, then pad to 32 bits
        cdef bytes out = new_packet(SDES, len(self.chunks), size, &b)
        for ssrc, items in self.chunks:
            wr32(b + pos, ssrc)
            pos += 4
            for item_type, value in items:
                b[pos] = <int>item_type
                b[pos + 1] = len(value)
                memcpy(b + pos + 2, PyBytes_AS_STRING(value), len(value))
                pos += 2 + len(value)
            chunk_size = 4 - (pos & 3)
            memset(b + pos, 0, chunk_size)
            pos += chunk_size
        return out


@dataclass
cdef class Bye:
    """RFC 3550 BYE; ``reason`` is the raw reason text or None."""

    sources: list = field(default_factory=list)
    reason: object = None

    def serialize(self) -> bytes:
        cdef uint8_t* b
        cdef Py_ssize_t i, n = len(self.sources), size = 4 * n, reason_length = 0
        cdef bytes reason = self.reason
        if reason is not None:
            reason_length = len(self.reason)
            if reason_length > 255:
                raise ValueError("BYE reason is at most 255 bytes")
            size += (reason_length + 4) & ~3
        cdef bytes out = new_packet(BYE, n, size, &b)
        for i in range(n):
            wr32(b + 4 * i, checked(self.sources[i], 0xFFFFFFFF, "source"))
        if reason is not None:
            b[4 * n] = reason_length
            memcpy(b + 4 * n + 1, PyBytes_AS_STRING(reason), reason_length)
            memset(b + 4 * n + 1 + reason_length, 0, size - 4 * n - 1 - reason_length)
        return out


@dataclass
cdef class Nack:
    """RFC 4585 generic NACK; ``lost`` lists sequence numbers in the order sent."""

    sender_ssrc: object = 0
    media_ssrc: object = 0
    lost: list = field(default_factory=list)

    def serialize(self) -> bytes:
        # A number joins the current PID/BLP pair when it lies 1..16 after the PID and
        # after the previous number, so parsing gives the same list back, in order.
        cdef uint8_t* b
        cdef list fci = []
        cdef uint16_t pid = 0, offset, last = 0, blp = 0
        cdef uint32_t seq
        cdef Py_ssize_t i, last_pair = -1
        for value in self.lost:
            seq = checked(value, 0xFFFF, "NACK sequence number")
            offset = <uint16_t>(seq - pid)
            if last_pair >= 0 and last < offset <= 16:
                blp |= 1 << (offset - 1)
                fci[last_pair] = (<uint32_t>pid << 16) | blp
                last = offset
            else:
                pid, blp, last = seq, 0, 0
                fci.append(<uint32_t>pid << 16)
                last_pair += 1
        cdef bytes out = new_packet(RTPFB, FMT_NACK, 8 + 4 * len(fci), &b)
        write_feedback_ssrcs(b, self.sender_ssrc, self.media_ssrc)
        for i in range(len(fci)):
            wr32(b + 8 + 4 * i, fci[i])
        return out


cdef int write_feedback_ssrcs(uint8_t* b, object sender, object media) except -1:
    wr32(b, checked(sender, 0xFFFFFFFF, "sender_ssrc"))
    wr32(b + 4, checked(media, 0xFFFFFFFF, "media_ssrc"))
    return 0


@dataclass
cdef class TransportFeedback:
    """transport-cc feedback (RTPFB 15). ``packets`` is ``[(sequence_number,
    delta_us or None), ...]`` from ``base_sequence`` on; a delta is relative to the
    previous received packet (the first to ``reference_time`` x 64 ms), None = lost.
    ``reference_time`` is the signed 24-bit field."""

    sender_ssrc: object = 0
    media_ssrc: object = 0
    base_sequence: object = 0
    reference_time: object = 0
    feedback_count: object = 0
    packets: list = field(default_factory=list)

    def serialize(self) -> bytes:
        cdef Py_ssize_t count = len(self.packets), i, pos
        if count > MAX_FEEDBACK_PACKETS:
            raise ValueError(f"at most {MAX_FEEDBACK_PACKETS} packets per transport feedback")
        cdef uint16_t base = checked(self.base_sequence, 0xFFFF, "base_sequence")
        cdef uint32_t reference = checked_signed24(self.reference_time, "reference_time")
        cdef uint8_t feedback_count = checked(self.feedback_count, 0xFF, "feedback_count")
        cdef bytearray symbols = bytearray(count)
        cdef bytearray deltas = bytearray(2 * count)
        cdef Py_ssize_t delta_length = twcc_symbols(self.packets, base, symbols, deltas)
        cdef list chunks = twcc_chunks(symbols)
        cdef uint8_t* b
        cdef bytes out = new_packet(RTPFB, FMT_TWCC, 16 + 2 * len(chunks) + delta_length, &b)
        write_feedback_ssrcs(b, self.sender_ssrc, self.media_ssrc)
        wr16(b + 8, base)
        wr16(b + 10, count)
        wr24(b + 12, reference)
        b[15] = feedback_count
        pos = 16
        for i in range(len(chunks)):
            wr16(b + pos, chunks[i])
            pos += 2
        memcpy(b + pos, <char*>deltas, delta_length)
        return out


cdef Py_ssize_t twcc_symbols(list packets, uint16_t base, bytearray symbols,
                             bytearray deltas) except -1:
    """Fill status symbols (0 lost, 1 small, 2 large) and delta bytes; the delta length.

    Times are rounded to 250 µs ticks on the running total, so rounding errors do not
    add up across packets."""
    cdef uint8_t* s = symbols
    cdef uint8_t* d = deltas
    cdef Py_ssize_t i, pos = 0
    cdef object elapsed_us = 0, sent_ticks = 0, ticks
    for i in range(len(packets)):
        seq, delta_us = packets[i]
        if seq != <uint16_t>(base + i):
            raise ValueError("packets must be consecutive from base_sequence")
        if delta_us is None:
            s[i] = 0
            continue
        elapsed_us += delta_us
        ticks = (elapsed_us + TICK_US // 2) // TICK_US - sent_ticks
        sent_ticks += ticks
        if 0 <= ticks <= 0xFF:
            s[i] = 1
            d[pos] = ticks
            pos += 1
        elif -0x8000 <= ticks <= 0x7FFF:
            s[i] = 2
            wr16(d + pos, <uint16_t>(<int16_t>ticks))
            pos += 2
        else:
            raise ValueError("transport feedback delta out of range")
    return pos


cdef list twcc_chunks(bytearray symbols):
    """Packet status chunks: run-length for runs of 7 or more, else status vectors."""
    cdef const uint8_t* s = symbols
    cdef Py_ssize_t i = 0, k, run, n = len(symbols), per_chunk, width
    cdef uint16_t chunk
    cdef list chunks = []
    while i < n:
        run = 1
        while i + run < n and run < 0x1FFF and s[i + run] == s[i]:
            run += 1
        if run >= 7:
            chunks.append((s[i] << 13) | run)
            i += run
            continue
        width, per_chunk, chunk = 1, 14, 0x8000
        for k in range(i, min(i + 14, n)):
            if s[k] > 1:  # a large delta among the next 14: 7 two-bit symbols instead
                width, per_chunk, chunk = 2, 7, 0xC000
                break
        for k in range(min(per_chunk, n - i)):
            chunk |= s[i + k] << (14 - width * (k + 1))
        i += per_chunk
        chunks.append(chunk)
    return chunks


@dataclass
cdef class Pli:
    """RFC 4585 picture loss indication (PSFB 1)."""

    sender_ssrc: object = 0
    media_ssrc: object = 0

    def serialize(self) -> bytes:
        cdef uint8_t* b
        cdef bytes out = new_packet(PSFB, FMT_PLI, 8, &b)
        write_feedback_ssrcs(b, self.sender_ssrc, self.media_ssrc)
        return out


@dataclass
cdef class Fir:
    """RFC 5104 full intra request (PSFB 4): ``entries`` is ``[(ssrc, seq_nr), ...]``."""

    sender_ssrc: object = 0
    media_ssrc: object = 0
    entries: list = field(default_factory=list)

    def serialize(self) -> bytes:
        cdef uint8_t* b
        cdef Py_ssize_t pos = 8
        cdef bytes out = new_packet(PSFB, FMT_FIR, 8 + 8 * len(self.entries), &b)
        write_feedback_ssrcs(b, self.sender_ssrc, self.media_ssrc)
        for ssrc, seq_nr in self.entries:
            wr32(b + pos, checked(ssrc, 0xFFFFFFFF, "ssrc"))
            wr32(b + pos + 4, checked(seq_nr, 0xFF, "seq_nr") << 24)
            pos += 8
        return out


@dataclass
cdef class Remb:
    """Receiver estimated maximum bitrate (PSFB 15, "REMB"), ``bitrate`` in bit/s."""

    sender_ssrc: object = 0
    bitrate: object = 0
    ssrcs: list = field(default_factory=list)

    def serialize(self) -> bytes:
        cdef uint8_t* b
        cdef Py_ssize_t i, n = len(self.ssrcs)
        cdef int exponent = 0
        if self.bitrate < 0 or n > 255:
            raise ValueError("REMB bitrate must be >= 0, with at most 255 SSRCs")
        mantissa = self.bitrate
        while mantissa > 0x3FFFF:
            mantissa >>= 1
            exponent += 1
        if exponent > 63:
            raise ValueError("REMB bitrate too large")
        cdef bytes out = new_packet(PSFB, FMT_AFB, 16 + 4 * n, &b)
        write_feedback_ssrcs(b, self.sender_ssrc, 0)
        memcpy(b + 8, b"REMB", 4)
        b[12] = n
        wr24(b + 13, (exponent << 18) | <uint32_t>mantissa)
        for i in range(n):
            wr32(b + 16 + 4 * i, checked(self.ssrcs[i], 0xFFFFFFFF, "ssrc"))
        return out


@dataclass
cdef class UnknownRtcp:
    """APP, XR or an unknown packet or feedback kind, kept opaque: ``count`` is the
    5-bit count/FMT field, ``payload`` everything after the 4-byte header."""

    packet_type: object = 0
    count: object = 0
    payload: bytes = b""

    def serialize(self) -> bytes:
        cdef uint8_t* b
        cdef int packet_type = checked(self.packet_type, 0xFF, "packet_type")
        cdef bytes out = new_packet(packet_type, self.count, len(self.payload), &b)
        memcpy(b, PyBytes_AS_STRING(self.payload), len(self.payload))
        return out


cdef Sdes parse_sdes(const uint8_t* b, Py_ssize_t n, int count):
    cdef Py_ssize_t pos = 0, length
    cdef int i
    cdef uint8_t item_type
    cdef list chunks = [], items
    for i in range(count):
        if pos + 4 > n:
            raise MalformedPacket("RTCP SDES chunk truncated")
        ssrc = rd32(b + pos)
        pos += 4
        items = []
        while True:
            if pos >= n:
                raise MalformedPacket("RTCP SDES chunk without end")
            item_type = b[pos]
            if item_type == 0:  # end of the item list, then pad to 32 bits
                pos = (pos + 4) & ~3
                break
            if pos + 2 > n or pos + 2 + b[pos + 1] > n:
                raise MalformedPacket("RTCP SDES item truncated")
            length = b[pos + 1]
            items.append((item_type, slice_bytes(b + pos + 2, length)))
            pos += 2 + length
        chunks.append((ssrc, items))
    return Sdes(chunks)


cdef Bye parse_bye(const uint8_t* b, Py_ssize_t n, int count):
    cdef Py_ssize_t pos = 4 * count
    cdef int i
    if n < pos:
        raise MalformedPacket("RTCP BYE truncated")
    reason = None
    if pos < n:
        if pos + 1 + b[pos] > n:
            raise MalformedPacket("RTCP BYE reason truncated")
        reason = slice_bytes(b + pos + 1, b[pos])
    return Bye([rd32(b + 4 * i) for i in range(count)], reason)


cdef Nack parse_nack(const uint8_t* b, Py_ssize_t n):
    cdef Py_ssize_t pos
    cdef uint16_t pid, blp
    cdef int bit
    cdef list lost = []
    if n & 3:
        raise MalformedPacket("RTCP NACK FCI not a multiple of 4 bytes")
    for pos in range(8, n, 4):
        pid = rd16(b + pos)
        blp = rd16(b + pos + 2)
        lost.append(pid)
        for bit in range(16):
            if blp >> bit & 1:
                lost.append(<uint16_t>(pid + bit + 1))
    return Nack(rd32(b), rd32(b + 4), lost)


cdef TransportFeedback parse_twcc(const uint8_t* b, Py_ssize_t n):
    if n < 16:
        raise MalformedPacket("transport feedback truncated")
    cdef uint16_t base = rd16(b + 8), chunk
    cdef Py_ssize_t count = rd16(b + 10), have = 0, pos = 16, i, k
    if count > MAX_FEEDBACK_PACKETS:
        raise MalformedPacket(f"transport feedback reports {count} packets; at most "
                              f"{MAX_FEEDBACK_PACKETS} are read")
    cdef bytearray symbols = bytearray(count + 14)  # room for a whole last vector chunk
    cdef uint8_t* s = symbols
    cdef int32_t ticks
    while have < count:
        if pos + 2 > n:
            raise MalformedPacket("transport feedback status chunks truncated")
        chunk = rd16(b + pos)
        pos += 2
        if not chunk & 0x8000:  # run length
            k = min(chunk & 0x1FFF, count - have)
            memset(s + have, (chunk >> 13) & 3, k)
            have += k
        elif not chunk & 0x4000:  # 14 one-bit symbols
            for k in range(14):
                s[have + k] = (chunk >> (13 - k)) & 1
            have += 14
        else:  # 7 two-bit symbols
            for k in range(7):
                s[have + k] = (chunk >> (12 - 2 * k)) & 3
            have += 7
    cdef list packets = []
    for i in range(count):
        if s[i] == 0:
            packets.append((<uint16_t>(base + i), None))
            continue
        if s[i] == 1:
            if pos + 1 > n:
                raise MalformedPacket("transport feedback deltas truncated")
            ticks = b[pos]
            pos += 1
        elif s[i] == 2:
            if pos + 2 > n:
                raise MalformedPacket("transport feedback deltas truncated")
            ticks = <int16_t>rd16(b + pos)
            pos += 2
        else:
            raise MalformedPacket("transport feedback reserved status symbol")
        packets.append((<uint16_t>(base + i), ticks * TICK_US))
    return TransportFeedback(rd32(b), rd32(b + 4), base, signed24(rd24(b + 12)), b[15], packets)


cdef object parse_psfb(int fmt, const uint8_t* b, Py_ssize_t n):
    cdef Py_ssize_t pos, i
    cdef int exponent
    if fmt == FMT_PLI:
        return Pli(rd32(b), rd32(b + 4))
    if fmt == FMT_FIR:
        if n & 7:
            raise MalformedPacket("RTCP FIR FCI not a multiple of 8 bytes")
        return Fir(rd32(b), rd32(b + 4), [(rd32(b + pos), b[pos + 4]) for pos in range(8, n, 8)])
    if fmt == FMT_AFB and n >= 12 and b[8] == b'R' and b[9] == b'E' and b[10] == b'M' and b[11] == b'B':
        if n < 16 or n < 16 + 4 * b[12]:
            raise MalformedPacket("REMB truncated")
        exponent = b[13] >> 2
        mantissa = <object>(rd24(b + 13) & 0x3FFFF)
        return Remb(rd32(b), mantissa << exponent, [rd32(b + 16 + 4 * i) for i in range(b[12])])
    return UnknownRtcp(PSFB, fmt, slice_bytes(b, n))


cdef object parse_one(int packet_type, int count, const uint8_t* b, Py_ssize_t n):
    if packet_type == SR:
        if n < 24:
            raise MalformedPacket("RTCP SR truncated")
        return SenderReport(rd32(b), (<uint64_t>rd32(b + 4) << 32) | rd32(b + 8), rd32(b + 12),
                            rd32(b + 16), rd32(b + 20), parse_blocks(b, n, 24, count))
    if packet_type == RR:
        if n < 4:
            raise MalformedPacket("RTCP RR truncated")
        return ReceiverReport(rd32(b), parse_blocks(b, n, 4, count))
    if packet_type == SDES:
        return parse_sdes(b, n, count)
    if packet_type == BYE:
        return parse_bye(b, n, count)
    if packet_type == RTPFB or packet_type == PSFB:
        if n < 8:
            raise MalformedPacket("RTCP feedback truncated")
        if packet_type == PSFB:
            return parse_psfb(count, b, n)
        if count == FMT_NACK:
            return parse_nack(b, n)
        if count == FMT_TWCC:
            return parse_twcc(b, n)
    return UnknownRtcp(packet_type, count, slice_bytes(b, n))


def parse_rtcp(data) -> list:
    """Parse a compound RTCP packet into a list of packet objects."""
    cdef bytes buf = data if type(data) is bytes else bytes(data)
    cdef const uint8_t* d = <const uint8_t*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf), pos = 0, end, length
    cdef list packets = []
    if n == 0:
        raise MalformedPacket("empty RTCP packet")
    while pos < n:
        if pos + 4 > n:
            raise MalformedPacket("RTCP header truncated")
        if d[pos] >> 6 != 2:
            raise MalformedPacket("RTCP version is not 2")
        end = pos + 4 + 4 * <Py_ssize_t>rd16(d + pos + 2)
        if end > n:
            raise MalformedPacket("RTCP length field runs past the end")
        length = end - pos - 4
        if d[pos] & 0x20:
            if length == 0 or d[end - 1] == 0 or d[end - 1] > length:
                raise MalformedPacket("RTCP padding length invalid")
            length -= d[end - 1]
        packets.append(parse_one(d[pos + 1], d[pos] & 0x1F, d + pos + 4, length))
        pos = end
    return packets


def serialize_rtcp(packets) -> bytes:
    """A compound RTCP packet from packet objects."""
    return b"".join([packet.serialize() for packet in packets])
