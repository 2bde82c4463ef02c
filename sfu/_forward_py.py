"""The forwarding hot path, pure-Python twin of ``sfu/_forward.pyx``.

``ConsumerState`` is the per-consumer rewriting state (SSRC, sequence number and
timestamp offsets, payload type, header-extension map) and its send path;
``fan_out`` forwards one inbound packet to every consumer of a producer;
``NackCache`` keeps a producer's recent packets for retransmission.
"""

from __future__ import annotations

import random

from .rtp import rewrite

__all__ = ["ConsumerState", "NackCache", "fan_out", "MAX_SEQ_JUMP", "MAX_SEQ_AGE"]

# The output sequence must stay sane whatever the publisher sends: a subscriber's SRTP
# derives its rollover counter from it, and a jump of half the sequence space makes it
# fail to decrypt everything after. A packet further ahead than MAX_SEQ_JUMP is a
# discontinuity (the output continues from the last number sent); one further behind
# than MAX_SEQ_AGE is stale and dropped.
MAX_SEQ_JUMP = 1000
MAX_SEQ_AGE = 1000


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
        self._protect = None
        self._sendto = None
        self._addr = None

    native = False  # the twin always sends through Python

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
        sequence and timestamps (after a pause or a change of source)."""
        if self.started:
            self.next_seq = (self.last_seq + 1) & 0xFFFF
            self.next_ts = (self.last_ts + 1) & 0xFFFFFFFF
        self.started = False

    def _start(self, seq: int, ts: int) -> None:
        self.seq_offset = (self.next_seq - seq) & 0xFFFF
        self.ts_offset = (self.next_ts - ts) & 0xFFFFFFFF
        self.started = True

    def forward(self, data: bytes, seq: int, ts: int, payload_len: int,
                keyframe: bool, abs_send_time: int) -> bool:
        """Rewrite and send one packet of the producer; True if it was sent."""
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
        packet = rewrite(data, self.ssrc, out_seq, out_ts, self.payload_type,
                         self.ext_map, self.abs_send_time_id, abs_send_time)
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

    def retransmit(self, data: bytes, abs_send_time: int) -> bool:
        """Send a cached producer packet again with this consumer's current mapping."""
        if not self.started or self._sendto is None:
            return False
        seq = (data[2] << 8) | data[3]
        ts = int.from_bytes(data[4:8], "big")
        packet = rewrite(data, self.ssrc, (seq + self.seq_offset) & 0xFFFF,
                         (ts + self.ts_offset) & 0xFFFFFFFF, self.payload_type,
                         self.ext_map, self.abs_send_time_id, abs_send_time)
        try:
            self._sendto(self._protect(packet), self._addr)
        except Exception:  # noqa: BLE001
            return False
        return True

    def producer_seq(self, out_seq: int) -> int:
        """The producer's sequence number for an output sequence number."""
        return (out_seq - self.seq_offset) & 0xFFFF


def fan_out(states: list, data: bytes, seq: int, ts: int, payload_len: int,
            keyframe: bool, abs_send_time: int) -> int:
    """Forward one inbound packet to every consumer state; return how many sent."""
    sent = 0
    for state in states:
        if state.forward(data, seq, ts, payload_len, keyframe, abs_send_time):
            sent += 1
    return sent
