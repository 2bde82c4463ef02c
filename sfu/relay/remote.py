"""The subscribing side of a trunk: producers of this node fed by another node.

``await trunk.subscribe(room, track_id)`` sends ``subscribe`` and, once ``subscribed``
comes back, gives a `RemoteProducer`: an ordinary `sfu.Producer` built from the
`TrackInfo` (same track id, codec, payload type and header-extension ids as the origin,
whose packets it receives unchanged), fed from the flow's datagrams. Its consumers are
ordinary consumers; its RTCP toward the publisher goes back over the trunk (`TrunkRtcpSink`):
NACKs as RTCP datagrams, keyframe requests as ``keyframe`` messages. When the origin's
producer goes away (``closed``) or the trunk is lost, it closes, and its consumers with
it; when it closes here, the origin is told (``unsubscribe``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..clock import Clock, Scheduler
from ..errors import MalformedPacket
from ..producer import CodecInfo, Producer
from ..rtcp import Fir, Nack, Pli, SenderReport, parse_rtcp, serialize_rtcp
from ..rtp import parse_header
from .errors import SubscribeRefused, TrunkTimeout
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

if TYPE_CHECKING:
    from .trunk import Trunk

__all__ = ["RemoteProducer", "TrunkRtcpSink", "ImportTable", "is_remote"]

logger = logging.getLogger(__name__)


def is_remote(producer: Producer) -> bool:
    """Whether ``producer`` is fed by a trunk (split horizon: it is never exported)."""
    return getattr(producer, "origin_node", None) is not None


class TrunkRtcpSink:
    """A remote producer's "publisher": NACKs go upstream as RTCP datagrams of the flow,
    PLI and FIR as ``keyframe {flow}``. Receiver reports and REMB stay here: the origin's
    publisher gets its own from the origin node."""

    def __init__(self, trunk: Trunk, flow: int) -> None:
        self.trunk = trunk
        self.flow = flow
        self._rtcp = datagram_prefix(flow, rtcp=True)

    def send_rtcp(self, packet: bytes) -> bool:
        try:
            packets = parse_rtcp(packet)
        except (MalformedPacket, ValueError):
            return False
        nacks = [p for p in packets if isinstance(p, Nack)]
        if any(isinstance(p, (Pli, Fir)) for p in packets):
            self.keyframe()
        if not nacks or not self.trunk.send_datagram(self._rtcp + serialize_rtcp(nacks)):
            return False
        self.trunk.metrics.nacked += sum(len(n.lost) for n in nacks)
        return True

    def keyframe(self) -> None:
        self.trunk.send_control(Keyframe(self.flow))


class RemoteProducer(Producer):
    """A producer of node ``origin_node`` (``room``'s track ``id``), received as ``flow``
    of ``trunk``. ``close_reason`` says why it closed when the origin closed it."""

    def __init__(self, trunk: Trunk, flow: int, room: str, track: TrackInfo, *,
                 clock: Clock | None = None, scheduler: Scheduler | None = None) -> None:
        self.origin_node = trunk.peer_node_id
        self.trunk = trunk
        self.flow = flow
        self.room = room
        self.close_reason: str | None = None
        self.subscribed_as = (room, track.track_id)
        super().__init__(
            participant_id=track.participant_id, kind=track.kind, mid=track.mid,
            codec=CodecInfo(track.codec, track.clock_rate, track.payload_type, track.channels,
                            dict(track.parameters)),
            ext_ids=track.ext_ids, transport=TrunkRtcpSink(trunk, flow),
            rtcp_ssrc=random.getrandbits(32), source=track.source, name=track.name,
            producer_id=track.track_id, clock=clock, scheduler=scheduler)
        self.datagram_errors = 0

    def _send_pli(self) -> None:
        # Upstream is a trunk, not a publisher: one keyframe message, whatever the SSRCs
        # (the producer may not have seen a packet yet).
        self.transport.keyframe()

    def receive_datagram(self, data: bytes, start: int, rtcp: int) -> None:
        """A datagram of this flow; ``data[start:]`` is the packet."""
        packet = data[start:]
        try:
            if not rtcp:
                pt, _marker, seq, ts, ssrc, offset, end, *_ = parse_header(packet)
                self.receive_rtp(packet, pt, seq, ts, ssrc, offset, end)
                return
            reports = [p for p in parse_rtcp(packet) if isinstance(p, SenderReport)]
        except (MalformedPacket, ValueError):
            self.datagram_errors += 1
            return
        for report in reports:
            self.receive_sender_report(report, self.clock.monotonic())


@dataclass
class _Pending:
    room: str
    track_id: str
    future: asyncio.Future[RemoteProducer]
    clock: Clock | None
    scheduler: Scheduler | None
    early: list[tuple[bytes, int, int]] = field(default_factory=list)


class ImportTable:
    """This node's subscriptions on one trunk: flows it chose (``flow_base`` + 4n)."""

    def __init__(self, trunk: Trunk, flow_base: int) -> None:
        self.trunk = trunk
        self.flow_base = flow_base
        self._next_flow = flow_base
        self.by_flow: dict[int, RemoteProducer] = {}
        self._pending: dict[int, _Pending] = {}
        self._by_track: dict[tuple[str, str], int] = {}

    def __len__(self) -> int:
        return len(self.by_flow) + len(self._pending)

    def handlers(self) -> dict[type[ControlMessage], Callable[[Any], None]]:
        return {Subscribed: self._subscribed, ErrorMessage: self._error,
                FlowClosed: self._flow_closed}

    async def subscribe(self, room: str, track_id: str, *, clock: Clock | None,
                        scheduler: Scheduler | None) -> RemoteProducer:
        flow = self._by_track.get((room, track_id))
        if flow in self.by_flow:
            return self.by_flow[flow]
        pending = self._pending.get(flow) if flow is not None else None
        if pending is None:
            flow, self._next_flow = self._next_flow, self._next_flow + 4
            pending = _Pending(room, track_id, asyncio.get_running_loop().create_future(),
                               clock, scheduler)
            self._pending[flow] = pending
            self._by_track[room, track_id] = flow
            self.trunk.send_control(Subscribe(flow, room, track_id))
            self.trunk.flows_changed()
        timeout = self.trunk.settings.answer_timeout
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), timeout)
        except TimeoutError:
            if self._pending.get(flow) is pending:
                self._forget(flow, pending)
                self.trunk.send_control(Unsubscribe(flow))  # in case the answer is only late
            raise TrunkTimeout(f"node {self.trunk.peer_node_id!r} did not answer the subscribe "
                               f"to track {track_id!r} of room {room!r} in {timeout:g} s") from None

    def unsubscribe(self, flow: int) -> None:
        producer = self.by_flow.get(flow)
        if producer is not None:
            producer.close_reason = producer.close_reason or "unsubscribed"
            producer.close()  # -> _producer_closed: unsubscribe goes out

    def datagram(self, wire_flow: int, data: bytes, start: int) -> None:
        producer = self.by_flow.get(wire_flow & ~1)
        if producer is not None:
            producer.receive_datagram(data, start, wire_flow & 1)
            return
        pending = self._pending.get(wire_flow & ~1)
        if pending is not None and len(pending.early) < self.trunk.settings.early_datagrams:
            pending.early.append((data, start, wire_flow & 1))

    # -- control messages from the origin --------------------------------------------

    def _subscribed(self, message: Subscribed) -> None:
        pending = self._pending.pop(message.flow, None)
        if pending is None:  # answered after we gave up: we no longer want it
            self.trunk.send_control(Unsubscribe(message.flow))
            return
        try:
            producer = RemoteProducer(self.trunk, message.flow, pending.room, message.track,
                                      clock=pending.clock, scheduler=pending.scheduler)
        except (ValueError, TypeError) as exc:  # a codec this node cannot build
            self._forget(message.flow, pending, SubscribeRefused("bad_request", str(exc)))
            self.trunk.send_control(Unsubscribe(message.flow))
            return
        producer.subscribed_as = (pending.room, pending.track_id)
        self.by_flow[message.flow] = producer
        producer.on_close.append(self._producer_closed)
        for data, start, rtcp in pending.early:
            producer.receive_datagram(data, start, rtcp)
        if not pending.future.done():
            pending.future.set_result(producer)

    def _error(self, message: ErrorMessage) -> None:
        pending = self._pending.get(message.flow) if message.flow is not None else None
        if pending is None:
            logger.warning("trunk to %s: error %s: %s", self.trunk.peer_node_id, message.code,
                           message.message)
            return
        self._forget(message.flow, pending, SubscribeRefused(message.code, message.message))

    def _flow_closed(self, message: FlowClosed) -> None:
        producer = self.by_flow.pop(message.flow, None)
        if producer is not None:
            self._by_track.pop(producer.subscribed_as, None)
            producer.close_reason = message.reason or "closed by the origin"
            producer.close()
            self.trunk.flows_changed()
            return
        pending = self._pending.get(message.flow)
        if pending is not None:
            self._forget(message.flow, pending, SubscribeRefused("not_found", message.reason))

    # -- bookkeeping -----------------------------------------------------------------

    def _producer_closed(self, producer: Producer) -> None:
        assert isinstance(producer, RemoteProducer)
        if self.by_flow.get(producer.flow) is producer:  # closed here, not by the origin
            del self.by_flow[producer.flow]
            self._by_track.pop(producer.subscribed_as, None)
            self.trunk.send_control(Unsubscribe(producer.flow))
            self.trunk.flows_changed()

    def _forget(self, flow: int, pending: _Pending, error: Exception | None = None) -> None:
        self._pending.pop(flow, None)
        if self._by_track.get((pending.room, pending.track_id)) == flow:
            del self._by_track[pending.room, pending.track_id]
        if error is not None and not pending.future.done():
            pending.future.set_exception(error)
            pending.future.exception()  # retrieved here: every waiter may have timed out
        self.trunk.flows_changed()

    def close_all(self, reason: str, error: Exception) -> None:
        for flow, pending in list(self._pending.items()):
            self._forget(flow, pending, error)
        for producer in list(self.by_flow.values()):
            del self.by_flow[producer.flow]
            producer.close_reason = reason
            producer.close()
        self._by_track.clear()
