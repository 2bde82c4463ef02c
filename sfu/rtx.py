"""Loss recovery: the NACKs the node sends publishers, and Opus FEC in the SDP.

Packets lost on the way from a publisher are asked for again (RFC 4585 generic NACK)
by a :class:`NackRequester`, one per producer, sans-IO (times are passed in):

- a gap is not NACKed at once: a packet only late by a few milliseconds (reordered on
  the path) arrives during the hold (``hold``, 10 ms), as libwebrtc also waits;
- a packet still missing is NACKed, and again every ``interval`` (1.5 x the round
  trip measured from NACK to retransmission, within 50-300 ms; 100 ms before the first
  measure) up to ``retries`` times (3), then given up: the producer asks for a keyframe
  (`sfu.keyframe`), since every subscriber lost that packet too;
- what came back is counted (``recovered`` after a NACK, ``reordered`` before one),
  as are the NACKs sent (``requested``, retries included) and the packets given up
  (``failed``).

Retransmissions *to subscribers* are answered by `sfu.consumer.Consumer` from the
producer's cache, as RTX (RFC 4588, ``to_rtx`` in `sfu.forward`) when the subscriber
negotiated it.

Opus in-band FEC: a publisher's encoder adds FEC only when the answer it gets says
``useinbandfec=1``, and aiortc writes no Opus ``fmtp`` at all; `with_opus_fec` adds it
to the SDP the node sends (answers to publishers, offers to subscribers).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "NACK_HOLD_S",
    "NACK_MAX_AGE_S",
    "NACK_MAX_INTERVAL_S",
    "NACK_MAX_PENDING",
    "NACK_MIN_INTERVAL_S",
    "NACK_RETRIES",
    "RESEND_MIN_BITRATE",
    "RESEND_SHARE",
    "NackRequester",
    "NackRound",
    "ResendBudget",
    "Unrecovered",
    "with_opus_fec",
]

NACK_HOLD_S = 0.01
"""A gap is NACKed once it has been missing this long (a reordered packet arrives first)."""
NACK_RETRIES = 3
"""NACKs per lost packet before it is given up."""
NACK_MIN_INTERVAL_S = 0.05
NACK_MAX_INTERVAL_S = 0.3
NACK_DEFAULT_INTERVAL_S = 0.1
"""Between two NACKs of one packet: 1.5 x the measured round trip, within these bounds
(the default until a retransmission has been timed)."""
NACK_MAX_AGE_S = 1.0
"""A packet missing this long is given up whatever the retries (far too late to show)."""
NACK_MAX_PENDING = 512
"""Missing packets followed per stream; beyond, the oldest is given up."""

RESEND_SHARE = 0.25
"""Retransmissions to one subscriber may use this share of its bandwidth estimate."""
RESEND_MIN_BITRATE = 64_000
"""... and at least this (bit/s), so that a low estimate still gets a lost packet back."""
RESEND_BURST_S = 0.25
"""The budget a quiet subscriber saves up: this long at its rate."""


class ResendBudget:
    """A token bucket of retransmitted bytes for one subscriber transport.

    Resending everything a subscriber NACKs is right when loss is random and wrong when
    it is congestion: on a full link each resend pushes out another packet, which is
    NACKed in turn, and the subscriber's link carries more than its media (seen: a
    300 kbit/s subscriber receiving more packets than a 3 Mbit/s one). The resends are
    held to ``share`` of the estimate (``set_estimate``, at each bandwidth tick), at
    least ``minimum``; what does not fit is not resent (the consumer counts it, and a
    packet never recovered leads to a keyframe, as for one the cache has lost).
    Sans-IO: ``now`` in seconds."""

    __slots__ = ("_at", "_tokens", "burst", "minimum", "rate", "refused", "share")

    def __init__(self, share: float = RESEND_SHARE, minimum: int = RESEND_MIN_BITRATE,
                 burst: float = RESEND_BURST_S, estimate: int = 1_000_000) -> None:
        self.share, self.minimum, self.burst = share, minimum, burst
        self.rate = 0.0
        self.refused = 0
        self.set_estimate(estimate)
        self._tokens = self.rate / 8 * burst
        self._at: float | None = None

    def set_estimate(self, bitrate: int) -> None:
        """The subscriber's estimate changed (bit/s)."""
        self.rate = max(float(self.minimum), self.share * max(0, bitrate))

    def take(self, now: float, size: int) -> bool:
        """May ``size`` bytes be resent now? (They are counted if so.)"""
        depth = self.rate / 8 * self.burst
        if self._at is not None:
            self._tokens = min(depth, self._tokens + max(0.0, now - self._at) * self.rate / 8)
        self._at = now
        if self._tokens < size:
            self.refused += 1
            return False
        self._tokens -= size
        return True


@dataclass(frozen=True, slots=True)
class Unrecovered:
    """A packet given up: stream ``ssrc``, sequence number ``seq``, missing since ``since``."""

    ssrc: int
    seq: int
    since: float


@dataclass(frozen=True, slots=True)
class NackRound:
    """What `NackRequester.poll` decided: the NACKs to send now (SSRC -> sequence
    numbers, oldest first) and the packets given up."""

    nacks: dict[int, list[int]] = field(default_factory=dict)
    lost: list[Unrecovered] = field(default_factory=list)


@dataclass(slots=True)
class _Missing:
    since: float
    due: float
    sent: int = 0          # NACKs sent for it
    last_sent: float = 0.0


class NackRequester:
    """Which lost packets of a publisher's streams to NACK, when, and when to give up.

    ``missing(ssrc, seqs, now)`` when a gap is seen; ``poll(now, arrived)`` when
    `get_timer` says (``arrived(ssrc, seq)``: is the packet there now, e.g. in the
    producer's cache); ``recovered(ssrc, seq, now)`` when an RTX packet restores one
    (this times the round trip)."""

    def __init__(self, *, hold: float = NACK_HOLD_S, retries: int = NACK_RETRIES,
                 min_interval: float = NACK_MIN_INTERVAL_S,
                 max_interval: float = NACK_MAX_INTERVAL_S, max_age: float = NACK_MAX_AGE_S,
                 max_pending: int = NACK_MAX_PENDING) -> None:
        self.hold, self.retries, self.max_age, self.max_pending = hold, retries, max_age, max_pending
        self.min_interval, self.max_interval = min_interval, max_interval
        self.rtt: float | None = None
        """Smoothed seconds from a NACK to the retransmission it brought (None: not yet)."""
        self.requested = 0   # sequence numbers NACKed, retries included
        self.recovered_count = 0
        self.reordered = 0
        self.failed = 0
        self._streams: dict[int, dict[int, _Missing]] = {}
        self._dropped: list[Unrecovered] = []  # over max_pending, reported by the next poll

    @property
    def interval(self) -> float:
        """Seconds between two NACKs of one packet."""
        if self.rtt is None:
            return NACK_DEFAULT_INTERVAL_S
        return min(self.max_interval, max(self.min_interval, 1.5 * self.rtt))

    @property
    def pending(self) -> int:
        return sum(len(s) for s in self._streams.values())

    def missing(self, ssrc: int, seqs: list[int], now: float) -> None:
        """``seqs`` of stream ``ssrc`` were found missing at ``now`` (a gap)."""
        stream = self._streams.setdefault(ssrc, {})
        for seq in seqs:
            if seq not in stream:
                stream[seq] = _Missing(now, now + self.hold)
        while len(stream) > self.max_pending:
            seq, oldest = next(iter(stream.items()))
            del stream[seq]
            self.failed += 1
            self._dropped.append(Unrecovered(ssrc, seq, oldest.since))

    def recovered(self, ssrc: int, seq: int, now: float) -> bool:
        """A retransmission of ``seq`` arrived at ``now``: True if it was missing."""
        stream = self._streams.get(ssrc)
        entry = stream.pop(seq, None) if stream else None
        if entry is None:
            return False
        if entry.sent:
            self.recovered_count += 1
            sample = min(2.0, max(0.001, now - entry.last_sent))
            self.rtt = sample if self.rtt is None else 0.875 * self.rtt + 0.125 * sample
        else:
            self.reordered += 1
        return True

    def poll(self, now: float, arrived: Callable[[int, int], bool]) -> NackRound:
        """Forget what arrived, NACK what is due, give up what had its retries."""
        out = NackRound(lost=self._dropped)
        self._dropped = []
        interval = self.interval
        for ssrc, stream in list(self._streams.items()):
            nacks = []
            for seq, entry in list(stream.items()):
                if arrived(ssrc, seq):
                    del stream[seq]
                    if entry.sent:
                        self.recovered_count += 1
                    else:
                        self.reordered += 1
                elif entry.due <= now:
                    if entry.sent >= self.retries or now - entry.since >= self.max_age:
                        del stream[seq]
                        self.failed += 1
                        out.lost.append(Unrecovered(ssrc, seq, entry.since))
                        continue
                    entry.sent += 1
                    entry.last_sent = now
                    entry.due = now + interval
                    nacks.append(seq)
            if nacks:
                self.requested += len(nacks)
                out.nacks[ssrc] = nacks
            if not stream:
                del self._streams[ssrc]
        return out

    def get_timer(self) -> float | None:
        """When `poll` has something to do next (None: nothing is missing)."""
        if self._dropped:
            return float("-inf")
        return min((e.due for s in self._streams.values() for e in s.values()), default=None)

    def forget(self, ssrc: int | None = None) -> None:
        """Stop following stream ``ssrc`` (None: every stream): it restarted or closed."""
        if ssrc is None:
            self._streams.clear()
        else:
            self._streams.pop(ssrc, None)

    def stats(self) -> dict[str, float | int | None]:
        return {"requested": self.requested, "recovered": self.recovered_count,
                "reordered": self.reordered, "failed": self.failed, "pending": self.pending,
                "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 1)}


# -- Opus in-band FEC in the SDP ----------------------------------------------------------

_OPUS_RTPMAP = re.compile(r"^a=rtpmap:(\d+) opus/", re.IGNORECASE)


def with_opus_fec(sdp: str) -> str:
    """``sdp`` with ``useinbandfec=1`` in the ``fmtp`` of every Opus payload type (an
    ``fmtp`` line ``minptime=10;useinbandfec=1`` added after the ``rtpmap`` where there
    is none, as Chromium writes it). Anything else is left as it is."""
    newline = "\n" if "\n" in sdp and "\r\n" not in sdp else "\r\n"  # SDP's is CRLF
    lines = sdp.split(newline)
    opus = {m.group(1): i for i, line in enumerate(lines) if (m := _OPUS_RTPMAP.match(line))}
    if not opus:
        return sdp
    out = list(lines)
    inserts = []
    for pt, rtpmap_at in opus.items():
        prefix = f"a=fmtp:{pt} "
        at = next((i for i, line in enumerate(out) if line.startswith(prefix)), None)
        if at is None:
            inserts.append(rtpmap_at)
            continue
        params = out[at][len(prefix):]
        if "useinbandfec=" not in params.replace(" ", "").lower():
            out[at] = f"{prefix}{params.rstrip(';')};useinbandfec=1"
    for rtpmap_at in sorted(inserts, reverse=True):
        pt = _OPUS_RTPMAP.match(out[rtpmap_at]).group(1)
        out.insert(rtpmap_at + 1, f"a=fmtp:{pt} minptime=10;useinbandfec=1")
    return newline.join(out)
