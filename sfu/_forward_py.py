"""The forwarding hot path, pure-Python twin of ``sfu/_forward.pyx``.

``ConsumerState`` is the per-consumer rewriting state (SSRC, sequence number and
timestamp offsets, payload type, header-extension map) and its send path;
``fan_out`` forwards one inbound packet to every consumer of a producer;
``NackCache`` keeps a producer's recent packets for retransmission;
``ConsumerState.retransmit`` resends one, as an RTX packet (``to_rtx``, RFC 4588) when
the subscriber negotiated RTX.

Simulcast (see ``sfu/simulcast.py``): every inbound packet comes with the index of the
spatial ``layer`` it belongs to, and a state forwards only the packets of its own
``layer`` (the others are skipped at once). A state in ``vp8`` mode also keeps the
VP8 PictureID and TL0PICIDX continuous across layer switches, drops the temporal
layers above ``temporal_limit`` (read from the payload descriptor at ``vp8_offset``)
with its output sequence kept gap-free, and maps sequence numbers through two rings
(input to output for late packets, output to input for NACKs) that survive the drops.

Transport-cc (``twcc``: the subscriber transport's ``SendLog``, ``twcc_id``: its id of
the extension): every packet a state sends, retransmissions and RTX included, carries a
transport-wide sequence number from the log, recorded there with ``now`` (the caller's
monotonic clock) and the packet's size. It takes the place of the abs-send-time
element (3 bytes of value: 2 for the number, 1 of padding, so no length changes); a
packet without one goes unstamped and is counted (``twcc_unstamped``).
"""

from __future__ import annotations

import random

from ._rtp_py import _rewrite
from ._vp8_py import _layout, _write_ids
from .bwe.sendlog import SendLog
from .errors import MalformedPacket
from .rtp import parse_header, rewrite

__all__ = ["ConsumerState", "NackCache", "SendLog", "fan_out", "to_rtx", "vp8_info", "MAX_SEQ_JUMP", "MAX_SEQ_AGE",
           "SEQ_RING", "MAX_RESERVED_GAP", "ALL_TEMPORAL", "PARALLEL_MIN", "set_fanout_threads",
           "fanout_threads", "parallel_stats"]

# The output sequence must stay sane whatever the publisher sends: a subscriber's SRTP
# derives its rollover counter from it, and a jump of half the sequence space makes it
# fail to decrypt everything after. A packet further ahead than MAX_SEQ_JUMP is a
# discontinuity (the output continues from the last number sent); one further behind
# than MAX_SEQ_AGE is stale and dropped.
MAX_SEQ_JUMP = 1000
MAX_SEQ_AGE = 1000
# vp8 mode: how many sequence numbers each mapping ring remembers, and the longest gap
# in the input whose missing numbers keep their output numbers for a late arrival.
SEQ_RING = 1024
MAX_RESERVED_GAP = 64
ALL_TEMPORAL = 3  # VP8's highest temporal layer id: a limit of 3 drops nothing
_NO_VP8 = (-1, -1, 0, -1, -1, -1, False)
PARALLEL_MIN = 16  # the compiled fan-out's threshold for sending copies in parallel
_helpers = 0


def set_fanout_threads(helpers: int) -> int:
    """The compiled fan-out sends a packet's copies on helper threads too; this twin
    sends them one by one on the caller's thread whatever is set (the number is kept,
    so that the twins answer alike)."""
    global _helpers
    if helpers < 0:
        raise ValueError(f"fan-out helper threads must be 0 or more, not {helpers}")
    _helpers = min(helpers, 16)
    return _helpers


def fanout_threads() -> int:
    return _helpers


def parallel_stats() -> dict:
    """As the compiled module's: this twin sends nothing in parallel."""
    return {"helpers": _helpers, "batches": 0, "copies": 0, "serial": 0}


def vp8_info(data, vp8_offset: int, payload_len: int) -> tuple:
    """``(picture_id, picture_id_pos, picture_id_size, tl0picidx, tl0_pos, tid, begins)``
    of the VP8 payload descriptor at ``vp8_offset`` (positions in ``data``; -1 where a
    field is absent or the descriptor is malformed; ``begins``: the first packet of a
    picture, S=1 and PID=0). The fan-out reads it once per inbound packet."""
    if vp8_offset < 0 or payload_len < 1 or vp8_offset + payload_len > len(data):
        return _NO_VP8
    payload = memoryview(data)[vp8_offset:vp8_offset + payload_len]
    try:
        size, pic_at, pic_size, tl0_at = _layout(payload)
    except MalformedPacket:
        return _NO_VP8
    b0 = payload[0]
    pic = -1
    if pic_size == 2:
        pic = (payload[pic_at] & 0x7F) << 8 | payload[pic_at + 1]
    elif pic_size == 1:
        pic = payload[pic_at] & 0x7F
    tl0 = payload[tl0_at] if tl0_at >= 0 else -1
    tid = payload[size - 1] >> 6 if b0 & 0x80 and payload[1] & 0x20 else -1
    return (pic, vp8_offset + pic_at if pic_at >= 0 else -1, pic_size, tl0,
            vp8_offset + tl0_at if tl0_at >= 0 else -1, tid, bool(b0 & 0x10) and not b0 & 0x07)


class NackCache:
    """The last ``size`` packets of one producer, by sequence number (size: power of 2)."""

    def __init__(self, size: int = 1024) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError("NackCache size must be a power of two")
        self.size = size
        self._mask = size - 1
        self._packets: list[bytes | None] = [None] * size
        self._seqs: list[int] = [-1] * size

    def put(self, seq: int, data: bytes) -> None:
        i = seq & self._mask
        self._packets[i] = data
        self._seqs[i] = seq

    def get(self, seq: int) -> bytes | None:
        i = seq & self._mask
        if self._seqs[i] == seq:
            return self._packets[i]
        return None

    def clear(self) -> None:
        self._packets = [None] * self.size
        self._seqs = [-1] * self.size


class ConsumerState:
    """Rewriting state and send path of one consumer.

    A consumer forwards nothing until it is bound to a send path and not paused; a
    video consumer then waits for a keyframe and starts its output sequence there.
    ``layer`` is the spatial layer it forwards (0 unless the producer is simulcast);
    ``vp8`` turns on the VP8 rewriting described in the module's docstring.
    """

    def __init__(self, ssrc: int, payload_type: int, ext_map: bytes | None,
                 abs_send_time_id: int, video: bool) -> None:
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
        self.send_errors = 0
        self.layer = 0
        self.vp8 = False
        self.temporal_limit = ALL_TEMPORAL  # wanted: the highest temporal layer forwarded
        self.temporal = ALL_TEMPORAL        # in force (changes at the start of a TL0 picture)
        self.pic_offset = 0
        self.tl0_offset = 0
        self.next_pic = random.getrandbits(15)
        self.next_tl0 = random.getrandbits(8)
        self.last_pic = -1
        self.last_tl0 = -1
        self.temporal_dropped = 0
        self._newest_in = 0
        self._last_in_pic = -1
        self._in_ring: list = [None] * SEQ_RING   # input seq -> (seq, output seq or -1, pic offset)
        self._out_ring: list = [None] * SEQ_RING  # output seq -> (out seq, input seq, pic offset)
        self._protect = None
        self._sendto = None
        self._addr = None
        self._twcc = None
        self._twcc_id = 0
        self.twcc_unstamped = 0

    native = False  # the twin always sends through Python

    @property
    def twcc(self):
        """The subscriber transport's send log (``send(now, size) -> seq16``) when it
        negotiated transport-cc, else None; one log is shared by every consumer of the
        transport (the numbers are transport-wide)."""
        return self._twcc

    @twcc.setter
    def twcc(self, value) -> None:
        if value is not None and not callable(getattr(value, "send", None)):
            raise TypeError("ConsumerState.twcc must be a send log (an object with send) "
                            f"or None, not {type(value).__name__}")
        self._twcc = value

    @property
    def twcc_id(self) -> int:
        """The subscriber's id of the transport-cc header extension, 0: off."""
        return self._twcc_id

    @twcc_id.setter
    def twcc_id(self, value: int) -> None:
        if not isinstance(value, int) or not 0 <= value <= 255:
            raise ValueError(f"ConsumerState.twcc_id must be 0..255, not {value!r}")
        self._twcc_id = value

    def _rewrite(self, data: bytes, out_seq: int, out_ts: int, abs_send_time: int,
                 now: float, size: int) -> bytes:
        """``rewrite`` with this consumer's mapping; transport-cc stamped when it is on
        (``size``: the packet's length on the wire before SRTP, for the send log)."""
        if self._twcc is None or not self._twcc_id:
            return rewrite(data, self.ssrc, out_seq, out_ts, self.payload_type, self.ext_map,
                           self.abs_send_time_id, abs_send_time)
        # the log is written only once the packet is known to be stamped (and before it
        # is sent: the number is used even if sending fails)
        packet, stamped = _rewrite(data, self.ssrc, out_seq, out_ts, self.payload_type,
                                   self.ext_map, self.abs_send_time_id, abs_send_time,
                                   self._twcc_id, lambda: self._twcc.send(now, size))
        if not stamped:
            self.twcc_unstamped += 1
        return packet

    def bind(self, protect, sendto, addr, native=None) -> None:
        """Set the send path: ``sendto(protect(packet), addr)``. ``native`` (the
        compiled module's direct libsrtp/sendto path) is ignored by this twin."""
        self._protect = protect
        self._sendto = sendto
        self._addr = addr

    def unbind(self) -> None:
        self._protect = self._sendto = self._addr = None

    def restart(self) -> None:
        """Start again at the next keyframe (video) or packet, continuing the output
        sequence, timestamps and (vp8) picture ids (after a pause, a change of source
        or of simulcast layer). ``next_ts`` may be set after this to leave a gap."""
        if self.started:
            self.next_seq = (self.last_seq + 1) & 0xFFFF
            self.next_ts = (self.last_ts + 1) & 0xFFFFFFFF
            if self.last_pic >= 0:
                self.next_pic = (self.last_pic + 1) & 0x7FFF
            if self.last_tl0 >= 0:
                self.next_tl0 = (self.last_tl0 + 1) & 0xFF
        self.started = False

    def _start(self, seq: int, ts: int) -> None:
        self.seq_offset = (self.next_seq - seq) & 0xFFFF
        self.ts_offset = (self.next_ts - ts) & 0xFFFFFFFF
        self.started = True

    def forward(self, data: bytes, seq: int, ts: int, payload_len: int,
                keyframe: bool, abs_send_time: int, layer: int = 0,
                vp8_offset: int = -1, *, now: float = 0.0) -> bool:
        """Rewrite and send one packet of the producer's spatial ``layer``; True if it
        was sent. ``vp8_offset`` locates the VP8 payload (vp8 mode); ``now`` (seconds,
        the estimator's monotonic clock) is its send time in the transport-cc log."""
        if layer != self.layer:
            return False
        if self.vp8:
            return self._forward_vp8(data, seq, ts, payload_len, keyframe, abs_send_time,
                                     vp8_info(data, vp8_offset, payload_len), now)
        if self.paused or self._sendto is None:
            return False
        if not self.started:
            if self.video and not keyframe:
                self.dropped += 1
                return False
            self._start(seq, ts)
        out_seq = (seq + self.seq_offset) & 0xFFFF
        if self.last_seq >= 0:
            ahead = (out_seq - self.last_seq) & 0xFFFF
            if MAX_SEQ_JUMP < ahead < 0x10000 - MAX_SEQ_AGE:
                if ahead >= 0x8000:  # stale (or hostile): never sent
                    self.dropped += 1
                    return False
                self.seq_offset = (self.last_seq + 1 - seq) & 0xFFFF
                out_seq = (self.last_seq + 1) & 0xFFFF
        out_ts = (ts + self.ts_offset) & 0xFFFFFFFF
        packet = self._rewrite(data, out_seq, out_ts, abs_send_time, now, len(data))
        try:
            self._sendto(self._protect(packet), self._addr)
        except Exception:  # noqa: BLE001 - SRTP or socket error: count, keep serving
            self.dropped += 1
            return False
        if ((out_seq - self.last_seq) & 0xFFFF) < 0x8000 or self.last_seq < 0:
            self.last_seq = out_seq
            self.last_ts = out_ts
        self.packets += 1
        self.octets += payload_len
        return True

    def _forward_vp8(self, data: bytes, seq: int, ts: int, payload_len: int, keyframe: bool,
                     abs_send_time: int, info: tuple, now: float) -> bool:
        if self.paused or self._sendto is None:
            return False
        pic, pic_pos, pic_size, tl0, tl0_pos, tid, begins = info
        if not self.started:
            if self.video and not keyframe:
                self.dropped += 1
                return False
            self._start(seq, ts)
            self.pic_offset = (self.next_pic - pic) & 0x7FFF if pic >= 0 else 0
            self.tl0_offset = (self.next_tl0 - tl0) & 0xFF if tl0 >= 0 else 0
            self.temporal = self.temporal_limit
            self._newest_in = (seq - 1) & 0xFFFF
            self._last_in_pic = -1
            self._in_ring = [None] * SEQ_RING
            self._out_ring = [None] * SEQ_RING
        mask = SEQ_RING - 1
        ahead = (seq - self._newest_in) & 0xFFFF
        if 0 < ahead < 0x8000:  # the newest so far (perhaps after a gap)
            if ahead > MAX_SEQ_JUMP:  # a discontinuity: the output continues gap-free
                self.seq_offset = (self.last_seq + 1 - seq) & 0xFFFF
                self._in_ring = [None] * SEQ_RING
            else:  # what is missing keeps its number, should it arrive late
                for back in range(1, min(ahead, MAX_RESERVED_GAP + 1)):
                    missing = (seq - back) & 0xFFFF
                    self._in_ring[missing & mask] = (missing, (missing + self.seq_offset) & 0xFFFF,
                                                     self.pic_offset)
            self._newest_in = seq
            pic_mask = 0x7F if pic_size == 1 else 0x7FFF
            new_picture = pic >= 0 and (self._last_in_pic < 0 or 0 < (
                (pic - self._last_in_pic) & pic_mask) <= pic_mask >> 1)
            if new_picture:
                self._last_in_pic = pic
            if tid >= 0:
                if begins and tid == 0:  # a TL0 picture: the place to change the limit
                    self.temporal = self.temporal_limit
                if tid > self.temporal:  # dropped; the numbers after it close the gap
                    self.seq_offset = (self.seq_offset - 1) & 0xFFFF
                    if new_picture:
                        self.pic_offset = (self.pic_offset - 1) & 0x7FFF
                    self._in_ring[seq & mask] = (seq, -1, 0)
                    self.temporal_dropped += 1
                    return False
            out_seq = (seq + self.seq_offset) & 0xFFFF
            pic_offset = self.pic_offset
            self._in_ring[seq & mask] = (seq, out_seq, pic_offset)
            newest = True
        else:  # late or repeated: the number it was given, if it has one
            entry = self._in_ring[seq & mask]
            if entry is None or entry[0] != seq or entry[1] < 0 or tid > self.temporal:
                self.dropped += 1
                return False
            out_seq, pic_offset = entry[1], entry[2]
            newest = False
        out_ts = (ts + self.ts_offset) & 0xFFFFFFFF
        packet = self._rewrite(data, out_seq, out_ts, abs_send_time, now, len(data))
        out_pic = (pic + pic_offset) & 0x7FFF if pic >= 0 else -1
        out_tl0 = (tl0 + self.tl0_offset) & 0xFF if tl0 >= 0 else -1
        if out_pic >= 0 or out_tl0 >= 0:
            packet = _patch_vp8(packet, pic_pos, pic_size, out_pic, tl0_pos, out_tl0)
        try:
            self._sendto(self._protect(packet), self._addr)
        except Exception:  # noqa: BLE001 - SRTP or socket error: count, keep serving
            self.dropped += 1
            return False
        if newest:
            self.last_seq = out_seq
            self.last_ts = out_ts
            if out_pic >= 0:
                self.last_pic = out_pic
            if out_tl0 >= 0:
                self.last_tl0 = out_tl0
        self._out_ring[out_seq & mask] = (out_seq, seq, pic_offset)
        self.packets += 1
        self.octets += payload_len
        return True

    def retransmit(self, data: bytes, abs_send_time: int, out_seq: int = -1,
                   rtx_ssrc: int = 0, rtx_payload_type: int = -1, rtx_seq: int = 0, *,
                   now: float = 0.0) -> bool:
        """Send a cached producer packet again with this consumer's mapping (in vp8
        mode: as the output packet ``out_seq`` it was, which `producer_seq` found).
        With ``rtx_payload_type`` >= 0 it goes as an RTX packet (RFC 4588): on
        ``rtx_ssrc`` with sequence number ``rtx_seq``, the output sequence number in the
        first two payload bytes; otherwise as the original packet again. Either way it
        is a new packet on the wire: with transport-cc, a new transport-wide number."""
        if not self.started or self._sendto is None:
            return False
        seq = (data[2] << 8) | data[3]
        ts = int.from_bytes(data[4:8], "big")
        if not self.vp8:
            out_seq, pic_offset = (seq + self.seq_offset) & 0xFFFF, -1
        else:
            entry = self._out_ring[out_seq & (SEQ_RING - 1)] if out_seq >= 0 else None
            if entry is None or entry[0] != out_seq or entry[1] != seq:
                return False
            pic_offset = entry[2]
        packet = self._rewrite(data, out_seq, (ts + self.ts_offset) & 0xFFFFFFFF, abs_send_time,
                               now, len(data) + 2 if rtx_payload_type >= 0 else len(data))
        if pic_offset >= 0:
            _, _, _, _, _, offset, end, *_ = parse_header(data)
            pic, pic_pos, pic_size, tl0, tl0_pos, _, _ = vp8_info(data, offset, end - offset)
            packet = _patch_vp8(packet, pic_pos, pic_size, (pic + pic_offset) & 0x7FFF if pic >= 0 else -1,
                                tl0_pos, (tl0 + self.tl0_offset) & 0xFF if tl0 >= 0 else -1)
        if rtx_payload_type >= 0:
            packet = to_rtx(packet, rtx_ssrc, rtx_payload_type, rtx_seq)
        try:
            self._sendto(self._protect(packet), self._addr)
        except Exception:  # noqa: BLE001
            return False
        return True

    def producer_seq(self, out_seq: int) -> int:
        """The producer's sequence number for an output sequence number (vp8 mode: -1
        if this consumer sent no such packet since it last started)."""
        if self.vp8:
            entry = self._out_ring[out_seq & (SEQ_RING - 1)]
            return entry[1] if entry is not None and entry[0] == out_seq else -1
        return (out_seq - self.seq_offset) & 0xFFFF


def to_rtx(packet: bytes, ssrc: int, payload_type: int, seq: int) -> bytes:
    """``packet`` (as the subscriber would have got it) as an RTX packet (RFC 4588):
    the same header on ``ssrc`` with ``payload_type`` and ``seq``, the original
    sequence number (OSN) before the payload; extensions and padding kept."""
    offset = parse_header(packet)[5]
    out = bytearray(packet[:offset])
    out[1] = (out[1] & 0x80) | (payload_type & 0x7F)
    out[2:4] = (seq & 0xFFFF).to_bytes(2, "big")
    out[8:12] = (ssrc & 0xFFFFFFFF).to_bytes(4, "big")
    out += packet[2:4]  # the OSN: the sequence number the packet was sent with
    out += packet[offset:]
    return bytes(out)


def _patch_vp8(packet: bytes, pic_pos: int, pic_size: int, pic: int, tl0_pos: int, tl0: int) -> bytes:
    """``packet`` with the descriptor's PictureID and TL0PICIDX set (where present)."""
    out = bytearray(packet)
    _write_ids(out, pic_pos, pic_size, pic, tl0_pos, tl0)
    return bytes(out)


def fan_out(states: list, data: bytes, seq: int, ts: int, payload_len: int,
            keyframe: bool, abs_send_time: int, layer: int = 0, vp8_offset: int = -1, *,
            now: float = 0.0) -> int:
    """Forward one inbound packet of spatial ``layer`` to every consumer state (those
    of another layer skip it); return how many sent. The VP8 descriptor (vp8 mode) is
    read once, for all of them; ``now`` is the send time for transport-cc."""
    sent = 0
    info = None
    for state in states:
        if state.layer != layer:
            continue
        if state.vp8:
            if info is None:
                info = vp8_info(data, vp8_offset, payload_len)
            if state._forward_vp8(data, seq, ts, payload_len, keyframe, abs_send_time, info, now):
                sent += 1
        elif state.forward(data, seq, ts, payload_len, keyframe, abs_send_time, layer, now=now):
            sent += 1
    return sent
