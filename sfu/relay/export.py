"""The serving side of a trunk: local producers that the far node subscribed to.

Each ``subscribe {flow, room, track_id}`` is looked up with ``find_producer(room,
track_id)``; the producer gets a `ProducerExport` as one more tap beside its consumers,
which frames every packet into a datagram of the flow right on the packet path. One
flow per track per trunk, however many subscribers wait on the far node: the far node
fans out from its own copy. Upstream, ``keyframe`` asks the producer for a keyframe (it
throttles), and NACKs arriving as RTCP datagrams are answered from its `NackCache`.

Split horizon: a producer that itself arrived over a trunk (`is_remote`) is never
exported: ``error {code: not_found}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import Closed, MalformedPacket
from ..producer import Producer
from ..rtcp import Fir, Nack, Pli, SenderReport, parse_rtcp, serialize_rtcp
from .framing import (
    ControlMessage,
    ErrorMessage,
    FlowClosed,
    Keyframe,
    Subscribe,
    Subscribed,
    TrackInfo,
    Unsubscribe,
    datagram_prefix,
)
from .remote import is_remote

if TYPE_CHECKING:
    from .trunk import Trunk

__all__ = ["ProducerExport", "ExportTable", "track_info", "NACK_RESEND_INTERVAL_S",
           "NACK_MAX_PER_REQUEST"]

logger = logging.getLogger(__name__)

NACK_RESEND_INTERVAL_S = 0.1
"""A packet the far node asks for again within this is not resent again."""
NACK_MAX_PER_REQUEST = 256
"""Most packets one upstream NACK makes the origin resend."""


def track_info(producer: Producer) -> TrackInfo:
    """What the far node needs to build the same producer (`TrackInfo`)."""
    codec = producer.codec
    return TrackInfo(
        track_id=producer.id, participant_id=producer.participant_id, kind=producer.kind,
        codec=codec.mime_type, clock_rate=codec.clock_rate, payload_type=codec.payload_type,
        channels=codec.channels, ext_ids=dict(producer.ext_ids),
        parameters={k: v for k, v in codec.parameters.items()
                    if isinstance(k, str) and isinstance(v, (str, int)) and not isinstance(v, bool)},
        source=producer.source, name=producer.name, mid=producer.mid)


class ProducerExport:
    """``producer`` sent to the far node as ``flow`` (a `ProducerTap`)."""

    def __init__(self, trunk: Trunk, flow: int, room: str, producer: Producer,
                 on_closed: Callable[[ProducerExport], None]) -> None:
        self.trunk = trunk
        self.flow = flow
        self.room = room
        self.key = (room, producer.id)
        self.producer = producer
        self.packets = 0
        self.retransmitted = 0
        self.keyframe_requests = 0
        self._on_closed = on_closed
        self._send = trunk.send_datagram
        self._rtp = datagram_prefix(flow)
        self._rtcp = datagram_prefix(flow, rtcp=True)
        self._resent_at: dict[int, float] = {}
        self.closed = False

    def start(self) -> None:
        """Tap the producer and give the far node a start: the packets since the latest
        keyframe when it is fresh (its first subscriber then shows a picture at once),
        a keyframe request otherwise, and the latest sender report."""
        producer = self.producer
        producer.add_tap(self)
        if producer.video:
            fresh = producer.replay_from_keyframe(self)
            if not fresh or producer.keyframe_age() > producer.keyframe_replay_age / 2:
                self.request_keyframe()
        if producer.last_sr is not None:
            self.sender_report(producer.last_sr.ntp_timestamp, producer.last_sr.rtp_timestamp, 0.0)

    # -- ProducerTap: runs on the producer's packet path -----------------------------

    def rtp(self, data: bytes, arrival: float, keyframe: bool) -> None:
        self.packets += 1
        self._send(self._rtp + data)

    def sender_report(self, ntp: int, rtp_ts: int, arrival: float) -> None:
        reception = self.producer.reception
        if reception is None:
            return
        report = SenderReport(ssrc=reception.ssrc, ntp_timestamp=ntp, rtp_timestamp=rtp_ts,
                              packet_count=self.producer.packets & 0xFFFFFFFF,
                              octet_count=self.producer.octets & 0xFFFFFFFF)
        self._send(self._rtcp + serialize_rtcp([report]))

    def stream_changed(self, ssrc: int) -> None:
        pass  # the far producer sees the new SSRC in the packets and restarts alike

    def producer_closed(self) -> None:
        if not self.closed:
            self.trunk.send_control(FlowClosed(self.flow, "unpublished"))
            self.close()

    def forward(self, data: bytes, seq: int, ts: int, length: int, keyframe: bool,
                stamp: int, *, now: float = 0.0) -> None:
        """A cached packet replayed by `Producer.replay_from_keyframe` (``stamp`` and
        ``now`` are for a subscriber's extensions: the far node stamps its own)."""
        self.rtp(data, 0.0, keyframe)

    # -- from the far node -----------------------------------------------------------

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self.trunk.metrics.keyframe_requests += 1
        self.producer.request_keyframe()

    def rtcp(self, packet: bytes, now: float) -> None:
        """RTCP the far node sent upstream on this flow: NACKs, PLI/FIR."""
        try:
            packets = parse_rtcp(packet)
        except (MalformedPacket, ValueError):
            self.trunk.metrics.malformed += 1
            return
        for item in packets:
            if isinstance(item, Nack):
                self._retransmit(item.lost, now)
            elif isinstance(item, (Pli, Fir)):
                self.request_keyframe()

    def _retransmit(self, lost: list[int], now: float) -> None:
        cache = self.producer.cache
        if cache is None:
            return
        wanted = [seq for seq in dict.fromkeys(lost)
                  if now - self._resent_at.get(seq, float("-inf")) >= NACK_RESEND_INTERVAL_S]
        if len(self._resent_at) > 4 * NACK_MAX_PER_REQUEST:
            self._resent_at = {s: t for s, t in self._resent_at.items()
                               if now - t < NACK_RESEND_INTERVAL_S}
        for seq in wanted[-NACK_MAX_PER_REQUEST:]:  # the newest are still worth having
            self._resent_at[seq] = now
            data = cache.get(seq)
            if data is not None and self._send(self._rtp + data):
                self.retransmitted += 1
                self.trunk.metrics.retransmitted += 1

    def close(self) -> None:
        """Stop sending (idempotent); the far node is not told (see `producer_closed`)."""
        if self.closed:
            return
        self.closed = True
        self.producer.remove_tap(self)
        self._on_closed(self)


class ExportTable:
    """The far node's subscriptions to this node's producers, on one trunk."""

    def __init__(self, trunk: Trunk, find_producer: Callable[[str, str], Producer | None] | None
                 ) -> None:
        self.trunk = trunk
        self.flow_base = 2 if trunk.is_client else 0  # flows the far node chooses
        self._find = find_producer
        self.by_flow: dict[int, ProducerExport] = {}
        self._by_track: dict[tuple[str, str], ProducerExport] = {}

    def __len__(self) -> int:
        return len(self.by_flow)

    def handlers(self) -> dict[type[ControlMessage], Callable[[Any], None]]:
        return {Subscribe: self.subscribe, Unsubscribe: self.unsubscribe, Keyframe: self.keyframe}

    def subscribe(self, message: Subscribe) -> None:
        flow, where = message.flow, f"track {message.track_id!r} of room {message.room!r}"
        problem = None
        if flow & 2 != self.flow_base:
            problem = ("bad_request", f"flow {flow} is not one the subscriber may choose")
        elif flow in self.by_flow:
            problem = ("conflict", f"flow {flow} is in use")
        if problem is None:
            producer, problem = self._lookup(message.room, message.track_id, where)
        if problem is None and (message.room, producer.id) in self._by_track:
            flow_in_use = self._by_track[message.room, producer.id].flow
            problem = ("conflict", f"{where} is already sent on this trunk as flow {flow_in_use}")
        if problem is not None:
            self.trunk.send_control(ErrorMessage(flow, *problem))
            return
        export = ProducerExport(self.trunk, flow, message.room, producer, self._closed)
        self.by_flow[flow] = self._by_track[export.key] = export
        self.trunk.send_control(Subscribed(flow, track_info(producer)))
        try:
            export.start()
        except Closed:  # closed while we answered: the far node hears of it next
            self.trunk.send_control(FlowClosed(flow, "unpublished"))
            export.close()
        self.trunk.flows_changed()

    def _lookup(self, room: str, track_id: str, where: str
                ) -> tuple[Producer | None, tuple[str, str] | None]:
        try:
            producer = self._find(room, track_id) if self._find is not None else None
        except Exception:
            logger.exception("trunk to %s: looking up %s failed", self.trunk.peer_node_id, where)
            return None, ("internal", f"looking up {where} failed")
        if producer is None or producer.closed:
            return None, ("not_found", f"{where} is not published on node {self.trunk.node_id!r}")
        if is_remote(producer):
            return None, ("not_found", f"{where} arrived over a trunk itself and is never relayed on")
        return producer, None

    def unsubscribe(self, message: Unsubscribe) -> None:
        export = self.by_flow.get(message.flow)
        if export is not None:
            export.close()

    def keyframe(self, message: Keyframe) -> None:
        export = self.by_flow.get(message.flow)
        if export is not None:
            export.request_keyframe()

    def datagram(self, wire_flow: int, data: bytes, start: int) -> None:
        """A datagram on a flow the far node chose: only RTCP goes that way."""
        export = self.by_flow.get(wire_flow & ~1)
        if export is not None and wire_flow & 1:
            export.rtcp(data[start:], export.producer.clock.monotonic())

    def _closed(self, export: ProducerExport) -> None:
        self.by_flow.pop(export.flow, None)
        if self._by_track.get(export.key) is export:
            del self._by_track[export.key]
        self.trunk.flows_changed()

    def close_all(self) -> None:
        for export in list(self.by_flow.values()):
            export.close()
