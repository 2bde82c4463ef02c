"""Pure-Python twin of ``sfu/_rtcp.pyx``: RTCP packets.

RFC 3550 (SR, RR, SDES, BYE), RFC 4585 (generic NACK, PLI), RFC 5104 (FIR),
draft-alvestrand-rmcat-remb (REMB) and draft-holmer-rmcat-transport-wide-cc
(transport-wide feedback). APP, XR and unknown feedback kinds stay opaque as
``UnknownRtcp``. Bad bytes raise ``MalformedPacket``; out-of-range fields given to
``serialize()`` raise ``ValueError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

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

SR, RR, SDES, BYE, APP, RTPFB, PSFB, XR = range(200, 208)
FMT_NACK, FMT_TWCC = 1, 15
FMT_PLI, FMT_FIR, FMT_AFB = 1, 4, 15

_HEADER = struct.Struct("!BBH")
_REPORT = struct.Struct("!IB3sIIII")
_SENDER_INFO = struct.Struct("!IQIII")
_FEEDBACK = struct.Struct("!II")
_TWCC = struct.Struct("!IIHH3sB")
_U32 = struct.Struct("!I")

_TICK_US = 250  # transport-cc receive deltas are multiples of 250 µs
MAX_FEEDBACK_PACKETS = 8192
"""Most packets one transport-cc feedback may report (a browser's, every 50-100 ms,
reports a few hundred at most). More is refused as malformed: a 20-byte feedback could
otherwise claim 65,535 packets, each read into a result (work out of all proportion)."""


def _pack(fmt: struct.Struct | str, *values) -> bytes:
    try:
        return struct.pack(fmt, *values) if isinstance(fmt, str) else fmt.pack(*values)
    except struct.error as exc:
        raise ValueError(f"RTCP field out of range: {exc}") from None


def _packet(packet_type: int, count: int, body: bytes) -> bytes:
    """Common header + body; a body that is not 32-bit aligned gets RTCP padding."""
    pad = -len(body) % 4
    if pad:
        body += bytes(pad - 1) + bytes((pad,))
    if not 0 <= count <= 31 or len(body) > 4 * 0xFFFF:
        raise ValueError("RTCP count must be 0..31 and the packet under 256 KiB")
    return _pack(_HEADER, 0x80 | (0x20 if pad else 0) | count, packet_type, len(body) // 4) + body


def _signed24(raw: bytes) -> int:
    value = int.from_bytes(raw, "big")
    return value - 0x1000000 if value & 0x800000 else value


def _pack_signed24(value: int, name: str) -> bytes:
    if not -0x800000 <= value <= 0x7FFFFF:
        raise ValueError(f"{name} must fit in a signed 24-bit field")
    return (value & 0xFFFFFF).to_bytes(3, "big")


@dataclass
class ReportBlock:
    """RFC 3550 reception report block; ``packets_lost`` is signed 24-bit."""

    ssrc: int = 0
    fraction_lost: int = 0
    packets_lost: int = 0
    highest_sequence: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> ReportBlock:
        if len(data) < offset + 24:
            raise MalformedPacket("RTCP report block truncated")
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _REPORT.unpack_from(data, offset)
        return cls(ssrc, fraction, _signed24(lost), highest, jitter, lsr, dlsr)

    def serialize(self) -> bytes:
        lost = _pack_signed24(self.packets_lost, "packets_lost")
        return _pack(
            _REPORT, self.ssrc, self.fraction_lost, lost, self.highest_sequence,
            self.jitter, self.lsr, self.dlsr,
        )


def _report_blocks(body: bytes, offset: int, count: int) -> list:
    if len(body) < offset + 24 * count:
        raise MalformedPacket("RTCP report blocks truncated")
    return [ReportBlock.parse(body, offset + 24 * i) for i in range(count)]


def _serialize_blocks(reports: list) -> bytes:
    return b"".join(report.serialize() for report in reports)


@dataclass
class SenderReport:
    """RFC 3550 SR; ``ntp_timestamp`` is the 64-bit NTP value."""

    ssrc: int = 0
    ntp_timestamp: int = 0
    rtp_timestamp: int = 0
    packet_count: int = 0
    octet_count: int = 0
    reports: list = field(default_factory=list)

    def serialize(self) -> bytes:
        info = _pack(
            _SENDER_INFO, self.ssrc, self.ntp_timestamp, self.rtp_timestamp,
            self.packet_count, self.octet_count,
        )
        return _packet(SR, len(self.reports), info + _serialize_blocks(self.reports))


@dataclass
class ReceiverReport:
    """RFC 3550 RR."""

    ssrc: int = 0
    reports: list = field(default_factory=list)

    def serialize(self) -> bytes:
        return _packet(RR, len(self.reports), _pack(_U32, self.ssrc) + _serialize_blocks(self.reports))


@dataclass
class Sdes:
    """RFC 3550 SDES: ``chunks`` is ``[(ssrc, [(item_type, value), ...]), ...]``."""

    chunks: list = field(default_factory=list)

    def serialize(self) -> bytes:
        body = bytearray()
        for ssrc, items in self.chunks:
            body += _pack(_U32, ssrc)
            for item_type, value in items:
                if not 1 <= item_type <= 255 or len(value) > 255:
                    raise ValueError("SDES item type must be 1..255, value at most 255 bytes")
                body += bytes((item_type, len(value))) + value
            body += bytes(4 - len(body) % 4)  # the null item, then pad to 32 bits
        return _packet(SDES, len(self.chunks), bytes(body))


@dataclass
class Bye:
    """RFC 3550 BYE; ``reason`` is the raw reason text or None."""

    sources: list = field(default_factory=list)
    reason: bytes | None = None

    def serialize(self) -> bytes:
        body = _pack(f"!{len(self.sources)}I", *self.sources)
        if self.reason is not None:
            if len(self.reason) > 255:
                raise ValueError("BYE reason is at most 255 bytes")
            reason = bytes((len(self.reason),)) + self.reason
            body += reason + bytes(-len(reason) % 4)
        return _packet(BYE, len(self.sources), body)


@dataclass
class Nack:
    """RFC 4585 generic NACK; ``lost`` lists sequence numbers in the order sent."""

    sender_ssrc: int = 0
    media_ssrc: int = 0
    lost: list = field(default_factory=list)

    def serialize(self) -> bytes:
        # A number joins the current PID/BLP pair when it lies 1..16 after the PID and
        # after the previous number, so parsing gives the same list back, in order.
        fci: list = []
        pid = last = 0
        for seq in self.lost:
            if not 0 <= seq <= 0xFFFF:
                raise ValueError("NACK sequence numbers must be 0..65535")
            offset = (seq - pid) & 0xFFFF
            if fci and last < offset <= 16:
                fci[-1][1] |= 1 << (offset - 1)
                last = offset
            else:
                fci.append([seq, 0])
                pid, last = seq, 0
        body = _pack(_FEEDBACK, self.sender_ssrc, self.media_ssrc)
        body += b"".join(struct.pack("!HH", p, b) for p, b in fci)
        return _packet(RTPFB, FMT_NACK, body)


@dataclass
class TransportFeedback:
    """transport-cc feedback (RTPFB 15). ``packets`` is ``[(sequence_number,
    delta_us or None), ...]`` from ``base_sequence`` on; a delta is relative to the
    previous received packet (the first to ``reference_time`` x 64 ms), None = lost.
    ``reference_time`` is the signed 24-bit field."""

    sender_ssrc: int = 0
    media_ssrc: int = 0
    base_sequence: int = 0
    reference_time: int = 0
    feedback_count: int = 0
    packets: list = field(default_factory=list)

    def serialize(self) -> bytes:
        symbols, deltas = _twcc_symbols(self.base_sequence, self.packets)
        body = _pack(
            _TWCC, self.sender_ssrc, self.media_ssrc, self.base_sequence, len(symbols),
            _pack_signed24(self.reference_time, "reference_time"), self.feedback_count,
        )
        body += b"".join(struct.pack("!H", chunk) for chunk in _twcc_chunks(symbols))
        body += deltas
        return _packet(RTPFB, FMT_TWCC, body)


def _twcc_symbols(base_sequence: int, packets: list) -> tuple[list, bytes]:
    """Status symbols (0 lost, 1 small delta, 2 large delta) and the delta bytes.

    Times are rounded to 250 µs ticks on the running total, so rounding errors do
    not add up across packets."""
    if len(packets) > MAX_FEEDBACK_PACKETS:
        raise ValueError(f"at most {MAX_FEEDBACK_PACKETS} packets per transport feedback")
    symbols = []
    deltas = bytearray()
    elapsed_us = 0
    sent_ticks = 0
    for i, (seq, delta_us) in enumerate(packets):
        if seq != (base_sequence + i) & 0xFFFF:
            raise ValueError("packets must be consecutive from base_sequence")
        if delta_us is None:
            symbols.append(0)
            continue
        elapsed_us += delta_us
        ticks = (elapsed_us + _TICK_US // 2) // _TICK_US - sent_ticks
        sent_ticks += ticks
        if 0 <= ticks <= 0xFF:
            symbols.append(1)
            deltas.append(ticks)
        elif -0x8000 <= ticks <= 0x7FFF:
            symbols.append(2)
            deltas += struct.pack("!h", ticks)
        else:
            raise ValueError("transport feedback delta out of range")
    return symbols, bytes(deltas)


def _twcc_chunks(symbols: list) -> list:
    """Packet status chunks: run-length for runs of 7 or more, else status vectors."""
    chunks = []
    i, n = 0, len(symbols)
    while i < n:
        run = 1
        while i + run < n and run < 0x1FFF and symbols[i + run] == symbols[i]:
            run += 1
        if run >= 7:
            chunks.append((symbols[i] << 13) | run)
            i += run
            continue
        if max(symbols[i : i + 14]) <= 1:  # 14 one-bit symbols
            width, per_chunk, chunk = 1, 14, 0x8000
        else:  # 7 two-bit symbols
            width, per_chunk, chunk = 2, 7, 0xC000
        for k, symbol in enumerate(symbols[i : i + per_chunk]):
            chunk |= symbol << (14 - width * (k + 1))
        i += per_chunk
        chunks.append(chunk)
    return chunks


@dataclass
class Pli:
    """RFC 4585 picture loss indication (PSFB 1)."""

    sender_ssrc: int = 0
    media_ssrc: int = 0

    def serialize(self) -> bytes:
        return _packet(PSFB, FMT_PLI, _pack(_FEEDBACK, self.sender_ssrc, self.media_ssrc))


@dataclass
class Fir:
    """RFC 5104 full intra request (PSFB 4): ``entries`` is ``[(ssrc, seq_nr), ...]``."""

    sender_ssrc: int = 0
    media_ssrc: int = 0
    entries: list = field(default_factory=list)

    def serialize(self) -> bytes:
        body = _pack(_FEEDBACK, self.sender_ssrc, self.media_ssrc)
        body += b"".join(_pack("!IB3x", ssrc, seq_nr) for ssrc, seq_nr in self.entries)
        return _packet(PSFB, FMT_FIR, body)


@dataclass
class Remb:
    """Receiver estimated maximum bitrate (PSFB 15, "REMB"), ``bitrate`` in bit/s."""

    sender_ssrc: int = 0
    bitrate: int = 0
    ssrcs: list = field(default_factory=list)

    def serialize(self) -> bytes:
        if self.bitrate < 0 or len(self.ssrcs) > 255:
            raise ValueError("REMB bitrate must be >= 0, with at most 255 SSRCs")
        exponent, mantissa = 0, self.bitrate
        while mantissa > 0x3FFFF:
            mantissa >>= 1
            exponent += 1
        if exponent > 63:
            raise ValueError("REMB bitrate too large")
        body = _pack(_FEEDBACK, self.sender_ssrc, 0) + b"REMB"
        body += bytes((len(self.ssrcs), (exponent << 2) | (mantissa >> 16)))
        body += (mantissa & 0xFFFF).to_bytes(2, "big")
        body += _pack(f"!{len(self.ssrcs)}I", *self.ssrcs)
        return _packet(PSFB, FMT_AFB, body)


@dataclass
class UnknownRtcp:
    """APP, XR or an unknown packet or feedback kind, kept opaque: ``count`` is the
    5-bit count/FMT field, ``payload`` everything after the 4-byte header."""

    packet_type: int = 0
    count: int = 0
    payload: bytes = b""

    def serialize(self) -> bytes:
        if not 0 <= self.packet_type <= 255:
            raise ValueError("packet_type must be 0..255")
        return _packet(self.packet_type, self.count, self.payload)


def _parse_sdes(body: bytes, count: int) -> Sdes:
    chunks = []
    pos, n = 0, len(body)
    for _ in range(count):
        if pos + 4 > n:
            raise MalformedPacket("RTCP SDES chunk truncated")
        ssrc = _U32.unpack_from(body, pos)[0]
        pos += 4
        items = []
        while True:
            if pos >= n:
                raise MalformedPacket("RTCP SDES chunk without end")
            item_type = body[pos]
            if item_type == 0:  # end of the item list, then pad to 32 bits
                pos = (pos + 4) & ~3
                break
            if pos + 2 > n or pos + 2 + body[pos + 1] > n:
                raise MalformedPacket("RTCP SDES item truncated")
            length = body[pos + 1]
            items.append((item_type, bytes(body[pos + 2 : pos + 2 + length])))
            pos += 2 + length
        chunks.append((ssrc, items))
    return Sdes(chunks)


def _parse_bye(body: bytes, count: int) -> Bye:
    if len(body) < 4 * count:
        raise MalformedPacket("RTCP BYE truncated")
    sources = list(struct.unpack_from(f"!{count}I", body))
    reason = None
    pos = 4 * count
    if pos < len(body):
        length = body[pos]
        if pos + 1 + length > len(body):
            raise MalformedPacket("RTCP BYE reason truncated")
        reason = bytes(body[pos + 1 : pos + 1 + length])
    return Bye(sources, reason)


def _parse_nack(sender: int, media: int, body: bytes) -> Nack:
    if len(body) % 4:
        raise MalformedPacket("RTCP NACK FCI not a multiple of 4 bytes")
    lost = []
    for pos in range(8, len(body), 4):
        pid, blp = struct.unpack_from("!HH", body, pos)
        lost.append(pid)
        lost.extend((pid + bit + 1) & 0xFFFF for bit in range(16) if blp >> bit & 1)
    return Nack(sender, media, lost)


def _parse_twcc(body: bytes) -> TransportFeedback:
    n = len(body)
    if n < 16:
        raise MalformedPacket("transport feedback truncated")
    sender, media, base, count, reference, feedback_count = _TWCC.unpack_from(body)
    if count > MAX_FEEDBACK_PACKETS:
        raise MalformedPacket(f"transport feedback reports {count} packets; at most "
                              f"{MAX_FEEDBACK_PACKETS} are read")
    symbols: list = []
    pos = 16
    while len(symbols) < count:
        if pos + 2 > n:
            raise MalformedPacket("transport feedback status chunks truncated")
        chunk = (body[pos] << 8) | body[pos + 1]
        pos += 2
        if not chunk & 0x8000:  # run length
            symbols.extend([(chunk >> 13) & 3] * min(chunk & 0x1FFF, count - len(symbols)))
        elif not chunk & 0x4000:  # 14 one-bit symbols
            symbols.extend((chunk >> (13 - k)) & 1 for k in range(14))
        else:  # 7 two-bit symbols
            symbols.extend((chunk >> (12 - 2 * k)) & 3 for k in range(7))
    del symbols[count:]
    packets = []
    ticks = 0
    for i, symbol in enumerate(symbols):
        seq = (base + i) & 0xFFFF
        if symbol == 0:
            packets.append((seq, None))
            continue
        if symbol == 1:
            if pos + 1 > n:
                raise MalformedPacket("transport feedback deltas truncated")
            ticks = body[pos]
            pos += 1
        elif symbol == 2:
            if pos + 2 > n:
                raise MalformedPacket("transport feedback deltas truncated")
            ticks = struct.unpack_from("!h", body, pos)[0]
            pos += 2
        else:
            raise MalformedPacket("transport feedback reserved status symbol")
        packets.append((seq, ticks * _TICK_US))
    return TransportFeedback(sender, media, base, _signed24(reference), feedback_count, packets)


def _parse_psfb(fmt: int, sender: int, media: int, body: bytes):
    if fmt == FMT_PLI:
        return Pli(sender, media)
    if fmt == FMT_FIR:
        if len(body) % 8:
            raise MalformedPacket("RTCP FIR FCI not a multiple of 8 bytes")
        entries = [struct.unpack_from("!IB", body, pos) for pos in range(8, len(body), 8)]
        return Fir(sender, media, entries)
    if fmt == FMT_AFB and body[8:12] == b"REMB":
        if len(body) < 16 or len(body) < 16 + 4 * body[12]:
            raise MalformedPacket("REMB truncated")
        exponent = body[13] >> 2
        mantissa = ((body[13] & 3) << 16) | (body[14] << 8) | body[15]
        ssrcs = list(struct.unpack_from(f"!{body[12]}I", body, 16))
        return Remb(sender, mantissa << exponent, ssrcs)
    return UnknownRtcp(PSFB, fmt, bytes(body))


def parse_rtcp(data: bytes) -> list:
    """Parse a compound RTCP packet into a list of packet objects."""
    data = bytes(data)
    n = len(data)
    if n == 0:
        raise MalformedPacket("empty RTCP packet")
    packets: list = []
    pos = 0
    while pos < n:
        if pos + 4 > n:
            raise MalformedPacket("RTCP header truncated")
        b0, packet_type, words = _HEADER.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise MalformedPacket("RTCP version is not 2")
        end = pos + 4 + 4 * words
        if end > n:
            raise MalformedPacket("RTCP length field runs past the end")
        body = data[pos + 4 : end]
        pos = end
        if b0 & 0x20:
            if not body or body[-1] == 0 or body[-1] > len(body):
                raise MalformedPacket("RTCP padding length invalid")
            body = body[: len(body) - body[-1]]
        count = b0 & 0x1F
        packets.append(_parse_one(packet_type, count, body))
    return packets


def _parse_one(packet_type: int, count: int, body: bytes):
    if packet_type == SR:
        if len(body) < 24:
            raise MalformedPacket("RTCP SR truncated")
        ssrc, ntp, rtp_ts, packet_count, octet_count = _SENDER_INFO.unpack_from(body)
        return SenderReport(ssrc, ntp, rtp_ts, packet_count, octet_count, _report_blocks(body, 24, count))
    if packet_type == RR:
        if len(body) < 4:
            raise MalformedPacket("RTCP RR truncated")
        return ReceiverReport(_U32.unpack_from(body)[0], _report_blocks(body, 4, count))
    if packet_type == SDES:
        return _parse_sdes(body, count)
    if packet_type == BYE:
        return _parse_bye(body, count)
    if packet_type in (RTPFB, PSFB):
        if len(body) < 8:
            raise MalformedPacket("RTCP feedback truncated")
        sender, media = _FEEDBACK.unpack_from(body)
        if packet_type == PSFB:
            return _parse_psfb(count, sender, media, body)
        if count == FMT_NACK:
            return _parse_nack(sender, media, body)
        if count == FMT_TWCC:
            return _parse_twcc(body)
    return UnknownRtcp(packet_type, count, bytes(body))


def serialize_rtcp(packets) -> bytes:
    """A compound RTCP packet from packet objects."""
    return b"".join(packet.serialize() for packet in packets)
