"""What a subscriber transport sent: transport-wide sequence number -> send time, size.

transport-cc feedback names packets by their transport-wide sequence number and says
when each arrived; the sender needs its own record of when it sent each one and how big
it was to turn that into delays and rates. ``SendLog`` is that record for one
subscriber transport: a ring of the last ``capacity`` packets, written once per packet
at the node's own send time (so it must stay cheap: three list stores), read once per
feedback. ``abs_send_time(now)`` is the value of the abs-send-time header extension,
the REMB flavour of the same idea. Sans-IO: the caller passes ``now``.
"""

from __future__ import annotations

__all__ = ["NOT_PROBE", "SendLog", "abs_send_time"]

NOT_PROBE = -1
"""The probe cluster id of a packet that belongs to no probe (media, RTX, audio)."""


def abs_send_time(now: float) -> int:
    """The 24-bit abs-send-time value for a packet sent at ``now`` (seconds, any clock
    that does not jump): 6.18 fixed-point seconds, wrapping every 64 s. Written as 3
    big-endian bytes (``value.to_bytes(3, "big")``) in the extension element."""
    return int(now * 262144.0) & 0xFFFFFF  # 2**18 units per second


class SendLog:
    """A ring of the last ``capacity`` packets sent on one transport.

    ``send(now, size)`` gives the next transport-wide sequence number (16 bits, for the
    transport-cc header extension) and records the packet; ``lookup(seq)`` finds it again
    from the 16-bit number a feedback carries. Sequence numbers are kept unwrapped
    (a plain growing int) so that a feedback can be placed without ambiguity as long as
    it names one of the last ``capacity`` packets; older or never-sent numbers are not
    found (a hostile or very late feedback is ignored, not misread).
    """

    __slots__ = ("_mask", "_probe", "_send_time", "_seq", "_size", "capacity", "next_seq")

    def __init__(self, capacity: int = 8192) -> None:
        if capacity <= 0 or capacity & (capacity - 1) or capacity > 32768:
            raise ValueError(f"SendLog capacity must be a power of two up to 32768, not {capacity}")
        self.capacity = capacity
        self._mask = capacity - 1
        self._send_time = [0.0] * capacity
        self._size = [0] * capacity
        self._probe = [NOT_PROBE] * capacity
        self._seq = [-1] * capacity  # unwrapped seq stored in each slot, -1 = empty
        self.next_seq = 0
        """The unwrapped sequence number the next ``send`` gets."""

    def send(self, now: float, size: int, probe: int = NOT_PROBE) -> int:
        """Record a packet of ``size`` bytes (the whole RTP packet, as on the wire)
        sent at ``now``; returns its 16-bit transport-wide sequence number."""
        seq = self.next_seq
        i = seq & self._mask
        self._send_time[i] = now
        self._size[i] = size
        self._probe[i] = probe
        self._seq[i] = seq
        self.next_seq = seq + 1
        return seq & 0xFFFF

    def unwrap(self, seq16: int) -> int:
        """The unwrapped number of a 16-bit ``seq16``: the latest one sent or due, with
        those low bits (may be one not recorded or not sent yet)."""
        last = self.next_seq - 1
        diff = (seq16 - last) & 0xFFFF
        if diff >= 0x8000:
            diff -= 0x10000
        return last + diff

    def lookup(self, seq: int) -> tuple[float, int, int] | None:
        """``(send_time, size, probe)`` of the unwrapped ``seq``, or None if it was
        never sent or has been overwritten."""
        if seq < 0:
            return None
        i = seq & self._mask
        if self._seq[i] != seq:
            return None
        return self._send_time[i], self._size[i], self._probe[i]
