"""A trunk's congestion window: sized for the media it carries, not cut by random loss.

aioquic's congestion controllers (NewReno, CUBIC) halve their window at each loss. That
suits a bulk transfer; on a trunk it is wrong twice over. The media's rate is decided
at its source (each publisher's node sends it a REMB sized to what its subscribers
can take), so a trunk that backs off on its own only queues and then drops what the
publisher already sent. And a long path with a little random loss (the ocean between
two regions: 150 ms, 1%) holds a loss-based window near the Mathis limit,
``1.22 * MSS / (RTT * sqrt(p))``: about 0.9 Mbit/s, under one 720p camera.

`TrunkCongestionControl` keeps the window at what ``max_bitrate`` needs over twice the
smoothed round trip (so aioquic's pacer, which spreads a window over one RTT, allows
twice that rate) and never below 64 packets. Loss changes nothing; the window follows
the measured RTT, so a path whose queue grows (real congestion) widens in time but is
still bounded by ``max_bitrate``. Persistent congestion (nothing acknowledged for
several RTTs: a dead or black-holed path) drops it to the minimum until acks come back;
the trunk's idle timeout closes a dead one soon after.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aioquic.quic.congestion.base import QuicCongestionControl, register_congestion_control

__all__ = ["TrunkCongestionControl", "register", "DEFAULT_MAX_BITRATE", "MIN_WINDOW_PACKETS"]

DEFAULT_MAX_BITRATE = 200_000_000
"""Bits per second one trunk may carry (both directions' media of many rooms)."""
MIN_WINDOW_PACKETS = 64
"""The window is never smaller than this many full packets (a keyframe's burst fits)."""
_INITIAL_RTT = 0.1  # aioquic's initial RTT estimate, until the first measurement
_RTT_GAIN = 0.125   # RFC 9002's smoothing of the RTT


class TrunkCongestionControl(QuicCongestionControl):
    def __init__(self, *, max_datagram_size: int, max_bitrate: int = DEFAULT_MAX_BITRATE) -> None:
        super().__init__(max_datagram_size=max_datagram_size)
        self._packet = max_datagram_size
        self._bytes_per_s = max_bitrate / 8
        self._rtt = _INITIAL_RTT
        self._stalled = False
        self.congestion_window = self._window()

    def _window(self) -> int:
        floor = MIN_WINDOW_PACKETS * self._packet
        if self._stalled:
            return floor
        return max(floor, int(self._bytes_per_s * self._rtt * 2))

    def on_packet_acked(self, *, now: float, packet: Any) -> None:
        self.bytes_in_flight -= packet.sent_bytes
        if self._stalled:
            self._stalled = False
            self.congestion_window = self._window()

    def on_packet_sent(self, *, packet: Any) -> None:
        self.bytes_in_flight += packet.sent_bytes

    def on_packets_expired(self, *, packets: Iterable[Any]) -> None:
        for packet in packets:
            self.bytes_in_flight -= packet.sent_bytes

    def on_packets_lost(self, *, now: float, packets: Iterable[Any]) -> None:
        for packet in packets:  # random loss: the source's estimate handles real congestion
            self.bytes_in_flight -= packet.sent_bytes

    def on_persistent_congestion(self) -> None:
        self._stalled = True
        self.congestion_window = self._window()

    def on_rtt_measurement(self, *, now: float, rtt: float) -> None:
        self._rtt += _RTT_GAIN * (rtt - self._rtt)
        self.congestion_window = self._window()


def register(max_bitrate: int = DEFAULT_MAX_BITRATE) -> str:
    """Make the controller for ``max_bitrate`` known to aioquic; its name, for
    ``QuicConfiguration.congestion_control_algorithm``."""
    name = f"dockcast-trunk-{max_bitrate}"

    def factory(*, max_datagram_size: int) -> TrunkCongestionControl:
        return TrunkCongestionControl(max_datagram_size=max_datagram_size, max_bitrate=max_bitrate)

    register_congestion_control(name, factory)
    return name
