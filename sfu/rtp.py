"""RTP packets on the wire (RFC 3550, RFC 8285 header extensions).

The forwarding path uses the flat helpers (``parse_header``, ``find_extension``,
``rewrite``); ``RtpPacket`` is the full object for everything else. The compiled
``sfu._rtp`` is used when built, else its pure-Python twin ``sfu._rtp_py``
(``DOCKCAST_PUREPYTHON=1`` forces the twin). Bad bytes raise ``MalformedPacket``.
"""

from __future__ import annotations

from . import speedups

_impl = speedups.load("sfu._rtp", "sfu._rtp_py")

RtpPacket = _impl.RtpPacket
abs_send_time = _impl.abs_send_time
find_extension = _impl.find_extension
is_rtcp = _impl.is_rtcp
parse_header = _impl.parse_header
rewrite = _impl.rewrite
seq_diff = _impl.seq_diff
seq_newer = _impl.seq_newer

IMPLEMENTATION = speedups.implementation(_impl)

__all__ = ["IMPLEMENTATION", *_impl.__all__]
