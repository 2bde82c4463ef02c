"""Sending the probes a subscriber's estimator asks for: padding on an RTX stream.

A delay-based estimate (`sfu.bwe`) never rises far above what the node sends, and the
node sends a layer, not what the path takes; a probe (`sfu.bwe.Probe`) is a short burst
faster than the estimate whose receive rate, from the subscriber's transport-cc
feedback, tells what the path can take. It is sent as RTP padding-only packets on the
RTX stream of one of the subscriber's video consumers (the receiver drops them, as
libwebrtc's own probes are dropped), each with the transport-cc header extension and
recorded in the transport's send log with the probe's cluster id; the media packets
sent meanwhile are counted with the cluster by the estimator's probe results through
their own send times.

:func:`padding_packet` builds one packet (pure); :class:`Prober` paces a cluster on the
participant's scheduler (bursts every ``BURST_S``), through the transport's Python send
path (probes are rare: a few per second at most while a subscriber wants more).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

from .bwe import Probe
from .clock import Clock, Scheduler

__all__ = ["BURST_S", "PADDING", "Prober", "padding_packet"]

PADDING = 255
"""Padding bytes per probe packet (the most RTP padding can say: one length byte)."""
BURST_S = 0.005
"""A cluster is sent in bursts this far apart (the scheduler's resolution, roughly)."""

_HEADER = struct.Struct("!BBHII")


def padding_packet(ssrc: int, payload_type: int, seq: int, timestamp: int,
                   twcc_id: int, twcc_seq: int, padding: int = PADDING) -> bytes:
    """An RTP padding-only packet: no payload, ``padding`` bytes of padding (1-255, the
    last one its count), one header extension element (one-byte form) carrying the
    transport-wide sequence number ``twcc_seq`` under ``twcc_id`` (1-14)."""
    if not 1 <= twcc_id <= 14:
        raise ValueError(f"a one-byte extension id is 1..14, not {twcc_id}")
    if not 1 <= padding <= 255:
        raise ValueError(f"RTP padding is 1..255 bytes, not {padding}")
    header = _HEADER.pack(0xB0, payload_type & 0x7F, seq & 0xFFFF, timestamp & 0xFFFFFFFF,
                          ssrc & 0xFFFFFFFF)  # V=2, P=1, X=1
    extension = struct.pack("!HHBHB", 0xBEDE, 1, (twcc_id << 4) | 1, twcc_seq & 0xFFFF, 0)
    return header + extension + bytes(padding - 1) + bytes([padding])


class Prober:
    """Sends probe clusters for one subscriber transport. ``log`` is its send log
    (`sfu.forward.SendLog`), ``send_rtp`` its Python send path (protect and send one
    packet, True if sent). ``sent`` counts probe packets sent, ``clusters`` clusters."""

    def __init__(self, log: Any, send_rtp: Callable[[bytes], bool], clock: Clock,
                 scheduler: Scheduler) -> None:
        self.log = log
        self.send_rtp = send_rtp
        self.clock = clock
        self.scheduler = scheduler
        self.sent = 0
        self.clusters = 0
        self._busy = False
        self._timer: Any = None

    @property
    def busy(self) -> bool:
        """A cluster is being sent (a new one is refused meanwhile)."""
        return self._busy

    def send(self, probe: Probe, consumer: Any, twcc_id: int) -> bool:
        """Send ``probe`` as padding on ``consumer``'s RTX stream (it must have
        negotiated RTX: ``rtx_ssrc``, ``rtx_payload_type``); False if it cannot be sent
        now (no RTX, or a cluster under way)."""
        if self._busy or consumer.rtx_ssrc is None or consumer.rtx_payload_type is None:
            return False
        size = _HEADER.size + 8 + PADDING
        count = probe.count(size)
        per_burst = max(1, math.ceil(BURST_S / probe.interval(size)))
        self._busy = True
        self.clusters += 1
        self._burst(probe, consumer, twcc_id, count, per_burst)
        return True

    def _burst(self, probe: Probe, consumer: Any, twcc_id: int, left: int, per_burst: int) -> None:
        self._timer = None
        if consumer.closed:
            self._busy = False
            return
        now = self.clock.monotonic()
        for _ in range(min(left, per_burst)):
            size = _HEADER.size + 8 + PADDING
            twcc_seq = self.log.send(now, size, probe.cluster)
            packet = padding_packet(consumer.rtx_ssrc, consumer.rtx_payload_type,
                                    consumer.take_rtx_seq(), consumer.state.last_ts,
                                    twcc_id, twcc_seq)
            if self.send_rtp(packet):
                self.sent += 1
            left -= 1
        if left > 0:
            self._timer = self.scheduler.call_later(
                BURST_S, lambda: self._burst(probe, consumer, twcc_id, left, per_burst))
        else:
            self._busy = False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._busy = False
