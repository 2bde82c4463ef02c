"""Consumer: one producer forwarded to one subscriber.

Like mediasoup's consumers it starts paused: it forwards nothing until the subscriber
has answered the offer that carries it and its peer connection is up. A video consumer
then asks the publisher for a keyframe and starts its output there, so a late joiner's
first frame decodes. It rewrites SSRC, sequence number, timestamp, payload type and
header-extension ids (``ConsumerState``), answers the subscriber's NACKs from the
producer's cache, passes PLI/FIR upstream (throttled by the producer), and turns the
sender reports aiortc writes (NTP 0) into translations of the publisher's.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc.mediastreams import MediaStreamTrack

from .errors import MalformedPacket
from .forward import ConsumerState
from .producer import EXT_ABS_SEND_TIME, EXT_AUDIO_LEVEL, Producer
from .rtcp import Fir, Nack, Pli, ReceiverReport, Remb, SenderReport
from .rtp import abs_send_time

if TYPE_CHECKING:
    from .transport import WebRtcTransport

__all__ = ["Consumer", "IdleTrack", "FORWARDED_EXTENSIONS"]

logger = logging.getLogger(__name__)

# Header extensions a consumer passes on (remapped to the subscriber's ids); every
# other extension (mid, rid, transport-cc, ...) describes the publisher's leg and is
# blanked to padding.
FORWARDED_EXTENSIONS = (EXT_AUDIO_LEVEL, EXT_ABS_SEND_TIME)


class IdleTrack(MediaStreamTrack):
    """A sendonly track with no encoder: ``recv()`` waits forever, so aiortc's sender
    task sleeps at no cost while the SFU writes the packets itself."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:
        await asyncio.Event().wait()


def quiet_sender_reports(sender: Any) -> None:
    """Replace aiortc's per-sender RTCP loop (an SR and SDES built per sender every
    0.5-1.5 s, with NTP 0 here) by one that only says BYE when the sender stops: the
    participant sends one compound report for all its consumers instead."""

    async def run_rtcp() -> None:
        sender._RTCRtpSender__rtcp_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
        from aiortc.rtp import RtcpByePacket

        await sender._send_rtcp([RtcpByePacket(sources=[sender._ssrc])])
        sender._RTCRtpSender__rtcp_exited.set()

    sender._run_rtcp = run_rtcp


class Consumer:
    """Forwards ``producer`` to a subscriber's ``transport`` through ``transceiver``."""

    def __init__(self, producer: Producer, subscriber_id: str, transport: WebRtcTransport,
                 transceiver: Any, consumer_id: str | None = None) -> None:
        self.id = consumer_id or "CO_" + uuid.uuid4().hex[:12]
        self.producer = producer
        self.subscriber_id = subscriber_id
        self.transport = transport
        self.transceiver = transceiver
        self.kind = producer.kind
        self.state = ConsumerState(transceiver.sender._ssrc, producer.codec.payload_type,
                                   None, 0, producer.video)
        self.ssrc = transceiver.sender._ssrc
        self.closed = False
        self.negotiated = False
        self.remb_bitrate: int | None = None
        self.fraction_lost = 0
        self.nacks = 0
        self.retransmitted = 0
        self.keyframe_requests = 0
        self.on_close: list[Callable[[Consumer], None]] = []
        self._activation: asyncio.Task | None = None
        producer.add_consumer(self)

    # -- negotiation ---------------------------------------------------------------

    def negotiate(self) -> None:
        """The subscriber answered: take the negotiated payload type and extension
        ids, then start forwarding once the peer connection is up."""
        if self.closed or self.negotiated:
            return
        mime = self.producer.codec.mime_type.lower()
        codec = next((c for c in self.transceiver._codecs if c.mimeType.lower() == mime), None)
        if codec is None:
            logger.warning("consumer %s: subscriber refused %s; not forwarding", self.id, mime)
            return
        ext_map = bytearray(256)
        ast_id = 0
        for ext in self.transceiver._headerExtensions:
            if ext.uri in FORWARDED_EXTENSIONS and ext.uri in self.producer.ext_ids:
                ext_map[self.producer.ext_ids[ext.uri]] = ext.id
                if ext.uri == EXT_ABS_SEND_TIME:
                    ast_id = ext.id
        state = self.state
        state.payload_type = codec.payloadType
        state.ext_map = bytes(ext_map)
        state.abs_send_time_id = ast_id
        self.negotiated = True
        self._activation = asyncio.ensure_future(self._activate())

    async def _activate(self) -> None:
        await self.transport.connected.wait()
        path = self.transport.send_path
        if self.closed or path is None:
            return
        self.state.bind(*path, native=self.transport.native_send_path())
        self.resume()

    def pause(self) -> None:
        self.state.paused = True

    def resume(self) -> None:
        """Start (again): from the producer's latest keyframe if it is fresh (a burst of
        the packets since, so the first frame shows at once), else at the next one,
        which the publisher is asked for."""
        if self.closed:
            return
        self.state.restart()
        self.state.paused = False
        producer = self.producer
        fresh = producer.video and producer.replay_from_keyframe(self.state)
        if not fresh or time.monotonic() - producer.last_keyframe_at > producer.keyframe_replay_age / 2:
            self.request_keyframe()

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self.producer.request_keyframe()

    # -- RTCP from the subscriber ----------------------------------------------------

    def receive_rtcp(self, packet: Any) -> None:
        """One RTCP packet from the subscriber about this consumer's stream."""
        if isinstance(packet, Nack):
            self._retransmit(packet.lost)
        elif isinstance(packet, (Pli, Fir)):
            self.request_keyframe()
        elif isinstance(packet, Remb):
            self.remb_bitrate = packet.bitrate
        elif isinstance(packet, (ReceiverReport, SenderReport)):
            for block in packet.reports:
                if block.ssrc == self.ssrc:
                    self.fraction_lost = block.fraction_lost

    def _retransmit(self, lost: list[int]) -> None:
        cache = self.producer.cache
        self.nacks += len(lost)
        if cache is None:
            return
        stamp = abs_send_time(time.time()) if self.state.abs_send_time_id else 0
        for out_seq in lost:
            data = cache.get(self.state.producer_seq(out_seq))
            try:
                if data is not None and self.state.retransmit(data, stamp):
                    self.retransmitted += 1
            except MalformedPacket:  # it was forwarded once, so this cannot happen; be safe
                continue

    def sender_report(self, reports: list | None = None) -> SenderReport | None:
        """Our sender report for the subscriber: the publisher's latest one, translated
        (NTP kept, RTP timestamp shifted by our offset, our own counts)."""
        sr = self.producer.last_sr
        state = self.state
        if sr is None or not state.started:
            return None
        return SenderReport(
            ssrc=self.ssrc,
            ntp_timestamp=sr.ntp_timestamp,
            rtp_timestamp=(sr.rtp_timestamp + state.ts_offset) & 0xFFFFFFFF,
            packet_count=state.packets & 0xFFFFFFFF,
            octet_count=state.octets & 0xFFFFFFFF,
            reports=reports or [],
        )

    # -- lifecycle -----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        s = self.state
        return {
            "consumer_id": self.id, "track_id": self.producer.id, "kind": self.kind,
            "packets": s.packets, "octets": s.octets, "dropped": s.dropped,
            "nacks": self.nacks, "retransmitted": self.retransmitted,
            "remb_bitrate": self.remb_bitrate, "fraction_lost": self.fraction_lost,
        }

    def close(self) -> None:
        """Stop forwarding; the subscriber's transceiver goes inactive at the next offer."""
        if self.closed:
            return
        self.closed = True
        self.state.paused = True
        self.state.unbind()
        self.producer.remove_consumer(self)
        if self._activation is not None and not self._activation.done():
            self._activation.cancel()
        try:
            self.transceiver.direction = "inactive"
        except Exception:  # noqa: BLE001 - the peer connection may be gone
            pass
        for callback in self.on_close:
            callback(self)
