"""RtpDemuxer: which producer an incoming RTP packet of a publisher belongs to.

Offers differ by stack: Chromium declares SSRCs (except when simulcasting) and sends
the mid header extension on early packets; GStreamer's webrtcbin sends no mid
extension, so its tracks are told apart by payload type. The demuxer learns an SSRC
the first time a packet is matched by mid or payload type, then routes by SSRC.

A simulcast producer (`sfu.simulcast`) has a stream per layer, all on one mid: its
``learn_stream`` names the layer from the packet's rid (or, for RTX, repaired-rid)
header extension, which rides only on each stream's first packets; a packet of an
unknown SSRC without it is unroutable.
"""

from __future__ import annotations

from typing import Any

from .rtp import find_extension

__all__ = ["RtpDemuxer"]


class RtpDemuxer:
    def __init__(self) -> None:
        self.by_ssrc: dict[int, Any] = {}
        self.by_mid: dict[str, Any] = {}
        self.by_payload_type: dict[int, list[Any]] = {}
        self.mid_ext_id = 0
        self.unroutable = 0

    def add(self, producer: Any, ssrcs: tuple[int, ...] | set[int] = (),
            rtx_ssrcs: tuple[int, ...] = ()) -> None:
        self.by_mid[producer.mid] = producer
        self.by_payload_type.setdefault(producer.codec.payload_type, []).append(producer)
        for ssrc in (*ssrcs, *rtx_ssrcs):
            self.by_ssrc[ssrc] = producer

    def remove(self, producer: Any) -> None:
        self.by_mid.pop(producer.mid, None)
        same_pt = self.by_payload_type.get(producer.codec.payload_type, [])
        if producer in same_pt:
            same_pt.remove(producer)
        for ssrc in [s for s, p in self.by_ssrc.items() if p is producer]:
            del self.by_ssrc[ssrc]

    def route(self, data: bytes, ssrc: int, payload_type: int) -> Any | None:
        """The producer of this packet, or None (counted as unroutable)."""
        producer = self.by_ssrc.get(ssrc)
        if producer is not None:
            return producer
        producer = None
        if self.mid_ext_id:
            mid = find_extension(data, self.mid_ext_id)
            if mid is not None:
                producer = self.by_mid.get(mid.decode("ascii", "replace"))
        if producer is None:
            candidates = self.by_payload_type.get(payload_type, [])
            if len(candidates) == 1:
                producer = candidates[0]
        if producer is None:
            self.unroutable += 1
            return None
        if getattr(producer, "simulcast", False):
            if not producer.learn_stream(data, ssrc, payload_type):
                self.unroutable += 1
                return None
            self.by_ssrc[ssrc] = producer
            return producer
        if payload_type == producer.codec.payload_type:  # not its rtx stream
            self.by_ssrc[ssrc] = producer
            producer.ssrcs.add(ssrc)
        return producer
