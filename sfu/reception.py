"""ReceptionStats: what the SFU tells a publisher about one of its streams.

Per packet it keeps the extended highest sequence number and the count received, and
notices gaps so that the missing packets can be NACKed upstream at once (the publisher
resends them, over RTX when negotiated). Once a second it gives an RFC 3550 report
block (loss fraction and cumulative loss since the last report, LSR/DLSR from the
publisher's last sender report) for the SFU's receiver report. Sans-IO: times are
passed in.
"""

from __future__ import annotations

from .rtcp import ReportBlock

__all__ = ["ReceptionStats", "MAX_NACK_BATCH"]

# A larger jump is a restart or a hostile packet, not loss worth asking for.
MAX_NACK_BATCH = 64


class ReceptionStats:
    __slots__ = ("ssrc", "received", "_base", "_max", "_cycles", "_missing",
                 "_expected_prior", "_received_prior", "_lsr", "_sr_arrival")

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.received = 0
        self._base = -1
        self._max = 0
        self._cycles = 0
        self._missing: set[int] = set()
        self._expected_prior = 0
        self._received_prior = 0
        self._lsr = 0
        self._sr_arrival: float | None = None

    def update(self, seq: int) -> list[int]:
        """One packet arrived; returns the sequence numbers newly found missing."""
        self.received += 1
        if self._base < 0:
            self._base = self._max = seq
            return []
        delta = (seq - self._max) & 0xFFFF
        if delta == 0:
            return []
        if delta < 0x8000:  # newer than everything so far
            if seq < self._max:
                self._cycles += 0x10000
            gap = delta - 1
            self._max = seq
            if 0 < gap <= MAX_NACK_BATCH:
                lost = [(seq - i) & 0xFFFF for i in range(gap, 0, -1)]
                self._missing.update(lost)
                return lost
            return []
        self._missing.discard(seq)  # late or resent: no longer missing
        return []

    @property
    def extended_max(self) -> int:
        return self._cycles + self._max

    @property
    def expected(self) -> int:
        return 0 if self._base < 0 else self.extended_max - self._base + 1

    def still_missing(self, seqs: list[int]) -> list[int]:
        """Those of ``seqs`` that have not arrived since they were found missing."""
        return [s for s in seqs if s in self._missing]

    def sender_report(self, ntp_timestamp: int, arrival: float) -> None:
        """The publisher sent a sender report (for LSR/DLSR)."""
        self._lsr = (ntp_timestamp >> 16) & 0xFFFFFFFF
        self._sr_arrival = arrival

    def report_block(self, now: float) -> ReportBlock:
        """The report block for a receiver report sent at ``now``."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior, self._received_prior = expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = 0 if expected_interval <= 0 or lost_interval <= 0 else \
            min(255, (lost_interval << 8) // expected_interval)
        lost_total = max(-0x800000, min(0x7FFFFF, expected - self.received))
        self._missing.clear()  # too old to ask for again
        dlsr = 0
        if self._sr_arrival is not None:
            dlsr = max(0, min(0xFFFFFFFF, int((now - self._sr_arrival) * 65536)))
        return ReportBlock(ssrc=self.ssrc, fraction_lost=fraction, packets_lost=lost_total,
                           highest_sequence=self.extended_max & 0xFFFFFFFF, jitter=0,
                           lsr=self._lsr, dlsr=dlsr)
