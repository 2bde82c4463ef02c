"""transport-cc feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01) as
per-packet results, and feedback built from arrivals.

The wire format is :class:`sfu.rtcp.TransportFeedback` (parsed and serialized there,
compiled or pure, hostile bytes raising ``MalformedPacket``). This module adds what a
sender needs on top: :class:`FeedbackReader` places each reported packet in the
transport's :class:`~sfu.bwe.sendlog.SendLog` and gives a :class:`PacketResult` (when it
was sent, how big, whether and when it arrived, on the receiver's clock, in seconds).
:class:`FeedbackBuilder` is the receiving side: arrivals in, feedback packets out (the
tests' link simulator uses it; so can a future receive side toward publishers).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..rtcp import TransportFeedback
from .sendlog import NOT_PROBE, SendLog

__all__ = ["REFERENCE_TICK", "FeedbackBuilder", "FeedbackReader", "PacketResult"]

REFERENCE_TICK = 0.064
"""Seconds per unit of a feedback's 24-bit reference time."""

_WRAP24 = 1 << 24
_MAX_DELTA_US = 0x7FFF * 250  # the largest delta a two-byte status can carry


@dataclass(frozen=True, slots=True)
class PacketResult:
    """One packet as a feedback reported it. ``seq`` is the log's unwrapped number;
    ``send_time`` is the sender's clock (the ``now`` given to ``SendLog.send``),
    ``arrival`` the receiver's (seconds, its own origin), None if reported lost;
    ``size`` in bytes; ``probe`` the probe cluster id or ``NOT_PROBE``."""

    seq: int
    send_time: float
    size: int
    arrival: float | None
    probe: int = NOT_PROBE

    @property
    def received(self) -> bool:
        return self.arrival is not None


def _signed24(value: int) -> int:
    value %= _WRAP24
    return value - _WRAP24 if value >= _WRAP24 // 2 else value


class FeedbackReader:
    """Turns one transport's feedback packets into :class:`PacketResult` lists.

    Packets the log does not know (never sent, overwritten, or a hostile number) are
    left out; a packet already reported received is not reported again (feedbacks may
    overlap). The reference time is unwrapped across feedbacks, so arrival times keep
    growing when the 24-bit field wraps. Whatever a parsed feedback holds, ``results``
    returns at most one result per listed packet and raises nothing.
    """

    __slots__ = ("_acked", "_reference", "log")

    def __init__(self, log: SendLog) -> None:
        self.log = log
        self._acked = [-1] * log.capacity  # per ring slot: the seq last reported received
        self._reference: int | None = None  # unwrapped reference time of the last feedback

    def results(self, feedback: TransportFeedback) -> list[PacketResult]:
        reference = feedback.reference_time
        if self._reference is not None:
            reference = self._reference + _signed24(reference - self._reference)
        self._reference = reference
        arrival_us = reference * 64_000
        log, acked, mask = self.log, self._acked, self.log.capacity - 1
        out: list[PacketResult] = []
        seq = log.unwrap(feedback.base_sequence) if feedback.packets else 0
        end = log.next_seq  # nothing from here on was sent: a long hostile list stops here
        for _, delta_us in feedback.packets:
            if seq >= end:
                break
            if delta_us is not None:
                arrival_us += delta_us
            sent = log.lookup(seq)
            if sent is not None and acked[seq & mask] != seq:
                if delta_us is None:
                    out.append(PacketResult(seq, sent[0], sent[1], None, sent[2]))
                else:
                    acked[seq & mask] = seq
                    out.append(PacketResult(seq, sent[0], sent[1], arrival_us / 1e6, sent[2]))
            seq += 1
        return out


class FeedbackBuilder:
    """The receiving side of transport-cc: ``on_packet(seq, arrival)`` for each packet
    with the extension, ``build()`` every 50-100 ms for the feedback packets covering
    what arrived since the last one (several when the span is too long for one).

    A packet that arrives after its number was covered by a feedback already sent is
    dropped (it was reported lost; the sender's estimator lives with that).
    """

    def __init__(self, sender_ssrc: int = 0, media_ssrc: int = 0, max_packets: int = 1024) -> None:
        self.sender_ssrc = sender_ssrc
        self.media_ssrc = media_ssrc
        self.max_packets = max_packets
        self._arrivals: dict[int, float] = {}  # unwrapped seq -> arrival (s)
        self._next = None  # first unwrapped seq not yet covered by a feedback
        self._highest = -1
        self._count = 0

    def on_packet(self, seq16: int, arrival: float) -> None:
        if self._next is None:
            self._next = seq16
            seq = seq16
        else:
            diff = (seq16 - self._highest) & 0xFFFF
            seq = self._highest + (diff - 0x10000 if diff >= 0x8000 else diff)
            if seq < self._next:
                return
        self._arrivals.setdefault(seq, arrival)
        self._highest = max(self._highest, seq)

    def build(self) -> list[TransportFeedback]:
        out = []
        while self._next is not None and self._next <= self._highest:
            out.append(self._one())
        return out

    def _one(self) -> TransportFeedback:
        base = self._next
        first = min(t for s, t in self._arrivals.items() if s >= base)
        reference = int(first / REFERENCE_TICK)
        previous_us = reference * 64_000
        packets = []
        seq = base
        while seq <= self._highest and len(packets) < self.max_packets:
            arrival = self._arrivals.pop(seq, None)
            if arrival is None:
                packets.append((seq & 0xFFFF, None))
            else:
                delta_us = round(arrival * 1e6) - previous_us
                if abs(delta_us) > _MAX_DELTA_US and packets:
                    self._arrivals[seq] = arrival  # too far from the last: next feedback
                    break
                packets.append((seq & 0xFFFF, delta_us))
                previous_us += delta_us
            seq += 1
        self._next = seq
        feedback = TransportFeedback(
            sender_ssrc=self.sender_ssrc, media_ssrc=self.media_ssrc, base_sequence=base & 0xFFFF,
            reference_time=_signed24(reference), feedback_count=self._count & 0xFF, packets=packets)
        self._count += 1
        return feedback
