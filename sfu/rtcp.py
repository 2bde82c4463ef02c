"""RTCP packets on the wire: RFC 3550 reports, RFC 4585/5104 feedback, REMB and
transport-cc feedback; anything else round-trips as ``UnknownRtcp``.

``parse_rtcp(data)`` splits a compound packet into objects, ``serialize_rtcp(packets)``
joins them back. The compiled ``sfu._rtcp`` is used when built, else its pure-Python
twin ``sfu._rtcp_py`` (``DOCKCAST_PUREPYTHON=1`` forces the twin). Bad bytes raise
``MalformedPacket``; out-of-range fields raise ``ValueError`` from ``serialize()``.
"""

from __future__ import annotations

from . import speedups

_impl = speedups.load("sfu._rtcp", "sfu._rtcp_py")

MAX_FEEDBACK_PACKETS = _impl.MAX_FEEDBACK_PACKETS
Bye = _impl.Bye
Fir = _impl.Fir
Nack = _impl.Nack
Pli = _impl.Pli
ReceiverReport = _impl.ReceiverReport
Remb = _impl.Remb
ReportBlock = _impl.ReportBlock
Sdes = _impl.Sdes
SenderReport = _impl.SenderReport
TransportFeedback = _impl.TransportFeedback
UnknownRtcp = _impl.UnknownRtcp
parse_rtcp = _impl.parse_rtcp
serialize_rtcp = _impl.serialize_rtcp

IMPLEMENTATION = speedups.implementation(_impl)

__all__ = ["IMPLEMENTATION", *_impl.__all__]
