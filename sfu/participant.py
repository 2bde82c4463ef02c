"""Participant: one member of a room, with its two peer connections.

``pub`` carries what the participant publishes (the client offers, the SFU answers),
``sub`` what it receives (the SFU offers, the client answers). Offers to the
subscriber are serialised: a subscribe that arrives while an offer is out waits for
the answer and then goes out as one new offer.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiortc.exceptions import InvalidStateError
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import SessionDescription

from . import _aiortc_internals as internals
from .bandwidth import LossBasedEstimate
from .bwe.allocator import TICK_S, SubscriberBandwidth
from .clock import ASYNCIO_SCHEDULER, SYSTEM_CLOCK, Cancellable, Clock, Scheduler
from .consumer import Consumer
from .demux import RtpDemuxer
from .errors import Closed, NegotiationError, NotFound, OfferTooLarge
from .extensions import EXT_MID, EXT_TRANSPORT_CC
from .producer import CodecInfo, Producer
from .rtcp import (
    ReceiverReport,
    Remb,
    Sdes,
    SenderReport,
    TransportFeedback,
    parse_rtcp,
    serialize_rtcp,
)
from .rtp import parse_header
from .rtx import ResendBudget
from .send_side import SendSideBandwidth
from .simulcast import SimulcastProducer
from .transport import IdleTrack, WebRtcTransport

__all__ = ["MediaSettings", "Participant", "mline_count"]

logger = logging.getLogger(__name__)


class MediaSettings:
    """Codecs a node accepts from publishers, in order of preference, ICE servers, and
    the most m-lines one publisher offer may have (``max_mlines_per_offer``, 0: no limit).
    ``max_video_bitrate`` caps the REMB of a video track, ``simulcast_bitrate`` is the
    REMB of a simulcast one (every layer must fit: Chromium drops its top layer under a
    lower REMB; 720p VP8 in three layers wants about 2.5 + 0.7 + 0.2 Mbit/s).
    ``transport_cc`` offers subscribers transport-cc (send-side estimation and probes,
    `sfu.send_side`); those that do not take it are estimated from their REMBs."""

    def __init__(self, video_codecs: tuple[str, ...] = ("video/VP8", "video/H264"),
                 audio_codecs: tuple[str, ...] = ("audio/opus",),
                 ice_servers: tuple[str, ...] = (),
                 nack_cache_size: int = 1024, keyframe_interval: float = 1.0,
                 max_video_bitrate: int = 2_500_000, feedback_interval: float = 1.0,
                 keyframe_replay_age: float = 1.0, max_mlines_per_offer: int = 0,
                 simulcast_bitrate: int = 4_000_000, transport_cc: bool = True) -> None:
        self.video_codecs = video_codecs
        self.audio_codecs = audio_codecs
        self.ice_servers = ice_servers
        self.nack_cache_size = nack_cache_size
        self.keyframe_interval = keyframe_interval
        self.max_video_bitrate = max_video_bitrate
        self.feedback_interval = feedback_interval
        self.keyframe_replay_age = keyframe_replay_age
        self.max_mlines_per_offer = max_mlines_per_offer
        self.simulcast_bitrate = simulcast_bitrate
        self.transport_cc = transport_cc

    def codecs_for(self, kind: str) -> tuple[str, ...]:
        return self.video_codecs if kind == "video" else self.audio_codecs


def mline_count(sdp: str) -> int:
    """The m-lines (``m=`` lines, of any media) of an SDP, counted without parsing it."""
    return sum(1 for line in sdp.splitlines() if line.startswith("m="))


def _preferred(transceiver: Any, wanted: tuple[str, ...]) -> list[RTCRtpCodecCapability]:
    from aiortc import RTCRtpSender

    caps = RTCRtpSender.getCapabilities(transceiver.kind).codecs
    order = {mime.lower(): i for i, mime in enumerate(wanted)}
    chosen = [c for c in caps if c.mimeType.lower() in order]
    chosen.sort(key=lambda c: order[c.mimeType.lower()])
    rtx = [c for c in caps if c.mimeType.lower().endswith("/rtx")]
    return chosen + rtx


def _declared_ssrcs(media: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The media and RTX SSRCs an offer's m-line declares (``a=ssrc``, ``a=ssrc-group:FID``)."""
    rtx = tuple(int(g.items[1]) for g in media.ssrc_group
                if g.semantic == "FID" and len(g.items) == 2)
    main = tuple(s.ssrc for s in media.ssrc if s.ssrc not in rtx)
    return main, rtx


def _payload_types(codecs: list[Any]) -> dict[str, int]:
    """mime type -> payload type of negotiated codecs (the first of each mime type)."""
    out: dict[str, int] = {}
    for codec in codecs:
        out.setdefault(codec.mimeType, codec.payloadType)
    return out


class Participant:
    """One member of a room. ``clock`` and ``scheduler`` (the machine's and the running
    asyncio loop's by default) time its reports and are passed to its producers and
    consumers."""

    def __init__(self, identity: str, name: str | None = None, metadata: Any = None,
                 settings: MediaSettings | None = None, participant_id: str | None = None,
                 *, clock: Clock | None = None, scheduler: Scheduler | None = None) -> None:
        self.id = participant_id or "PA_" + uuid.uuid4().hex[:12]
        self.clock = clock or SYSTEM_CLOCK
        self.scheduler = scheduler or ASYNCIO_SCHEDULER
        self.identity = identity
        self.name = name
        self.metadata = metadata
        self.settings = settings or MediaSettings()
        self.pub: WebRtcTransport | None = None
        self.sub: WebRtcTransport | None = None
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}  # by producer id
        self.demux = RtpDemuxer()
        self.send_offer: Callable[[str], Awaitable[None]] | None = None
        self._offer_out = False
        self._renegotiate = False
        self._feedback: Cancellable | None = None
        self._reports: Cancellable | None = None
        self._transceivers: dict[str, Any] = {}  # consumer id -> its m-line on ``sub``
        self._estimates: dict[str, LossBasedEstimate] = {}
        self.bandwidth = SubscriberBandwidth()
        """The subscriber's estimate and its simulcast consumers' layer choices."""
        self.resend_budget = ResendBudget(estimate=self.bandwidth.start_bitrate)
        """What retransmissions to the subscriber may use (a share of its estimate)."""
        self.send_side: SendSideBandwidth | None = None
        """Transport-cc toward the subscriber (send log, feedback, probes), with ``sub``."""
        self._bandwidth_timer: Cancellable | None = None
        self.on_bandwidth: Callable[[Consumer, str | None], None] | None = None
        """Told when a consumer pauses for bandwidth (with the reason, ``"bandwidth"``)
        and when it resumes by itself (None): the ``track_paused``/``track_resumed``
        events, for this subscriber only."""
        self.on_media_lost: Callable[[Participant], None] | None = None
        """Told when the last of its peer connections failed or closed."""
        self.closed = False

    def media_lost(self) -> bool:
        """Whether this participant had peer connections and every one of them failed
        or closed."""
        transports = [t for t in (self.pub, self.sub) if t is not None]
        return bool(transports) and all(
            t.closed or t.pc.connectionState in ("failed", "closed") for t in transports)

    def describe(self) -> dict[str, Any]:
        return {"participant_id": self.id, "identity": self.identity, "name": self.name,
                "metadata": self.metadata,
                "tracks": [p.describe() for p in self.producers.values()]}

    def _transport(self, role: str) -> WebRtcTransport:
        from .ice import rtc_configuration

        transport = WebRtcTransport(role, configuration=rtc_configuration(self.settings.ice_servers),
                                    name=self.id, clock=self.clock)
        if role == "pub":
            transport.on_rtp = self._on_publisher_rtp
            transport.on_rtcp = self._on_publisher_rtcp
        else:
            transport.on_rtcp = self._on_subscriber_rtcp
            transport.rtcp_out_filter = self._filter_outgoing_rtcp
        transport.on_state = lambda state: self._transport_state(transport, state)
        return transport

    def _transport_state(self, transport: WebRtcTransport, state: str) -> None:
        """A peer connection that fails or closes under us (ICE consent lost, DTLS
        closed: the peer vanished while its websocket lives on) stops costing anything:
        its tracks are unpublished, its consumers paused and cut from its socket."""
        if state not in ("failed", "closed") or self.closed:
            return
        if self.on_media_lost is not None and self.media_lost():
            self.on_media_lost(self)
        why = transport.diagnostics() if state == "failed" else {}
        logger.warning("%s peer connection %s", transport.role, state,
                       extra={"participant": self.id, "identity": self.identity, **why})
        if transport is self.pub:
            for producer in list(self.producers.values()):
                producer.close()
        else:
            for consumer in self.consumers.values():
                consumer.pause()
                consumer.state.unbind()  # its socket is going away: never write to it

    # -- publishing ----------------------------------------------------------------

    async def publish(self, sdp: str, tracks: list[dict[str, Any]]) -> tuple[str, list[Producer]]:
        """Apply a publisher offer; return the answer and the new producers.

        ``tracks`` names each new m-line to publish by ``mid`` with its ``kind``,
        ``source`` and optional ``name``. The offer is checked before it is applied:
        a bad one changes nothing.
        """
        wanted = self._check_offer(sdp, tracks)
        if self.pub is None:
            self.pub = self._transport("pub")
        pub = self.pub

        def prepare() -> None:
            for transceiver in pub.pc.getTransceivers():
                if transceiver.mid in wanted:
                    transceiver.setCodecPreferences(
                        _preferred(transceiver, self.settings.codecs_for(transceiver.kind)))

        async with pub.negotiation_lock:
            answer = await pub.accept_offer(sdp, prepare)
        remote = SessionDescription.parse(pub.pc.remoteDescription.sdp)
        ssrcs_by_mid = {m.rtp.muxId: _declared_ssrcs(m) for m in remote.media}
        created = []
        for transceiver in pub.pc.getTransceivers():
            mid = transceiver.mid
            if mid not in wanted or mid in {p.mid for p in self.producers.values()}:
                continue
            producer = self._make_producer(transceiver, wanted[mid], *ssrcs_by_mid.get(mid, ((), ())))
            if producer is not None:
                created.append(producer)
        return answer, created

    def _check_offer(self, sdp: str, tracks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        cap = self.settings.max_mlines_per_offer
        count = mline_count(sdp) if cap else 0
        if count > cap:  # before aiortc parses it
            raise OfferTooLarge(f"the offer has {count} m-lines; this node takes at "
                                   f"most {cap} (max_mlines_per_offer)")
        try:
            offer = SessionDescription.parse(sdp)
        except Exception as exc:  # noqa: BLE001 - aiortc raises assorted errors on junk
            # aiortc's text describes its internals, not the client's mistake: log it only
            logger.info("unparsable SDP offer from %s: %r", self.id, exc)
            raise NegotiationError("the SDP offer cannot be parsed") from exc
        media = {m.rtp.muxId: m for m in offer.media if m.kind in ("audio", "video")}
        if not media:
            raise NegotiationError("the offer has no audio or video")
        wanted = {}
        for track in tracks:
            mid = track["mid"]
            m = media.get(mid)
            if m is None:
                raise NegotiationError(f"track mid {mid!r} is not in the offer")
            if m.kind != track["kind"]:
                raise NegotiationError(f"track mid {mid!r} is {m.kind} in the offer, not {track['kind']}")
            if m.direction not in ("sendonly", "sendrecv"):
                raise NegotiationError(f"track mid {mid!r} is {m.direction} in the offer, not sendonly")
            accepted = {c.lower() for c in self.settings.codecs_for(m.kind)}
            offered = list(dict.fromkeys(c.mimeType for c in m.rtp.codecs
                                         if not c.mimeType.lower().endswith("/rtx")))
            if not any(c.lower() in accepted for c in offered):
                raise NegotiationError(
                    f"track mid {mid!r} offers {', '.join(offered) or 'no codec'}; this node "
                    f"takes {', '.join(self.settings.codecs_for(m.kind))}")
            wanted[mid] = track
        return wanted

    def _make_producer(self, transceiver: Any, track: dict[str, Any],
                       ssrcs: tuple[int, ...], rtx_ssrcs: tuple[int, ...]) -> Producer | None:
        negotiated = internals.negotiated_codecs(transceiver)
        codecs = [c for c in negotiated if not c.mimeType.lower().endswith("/rtx")]
        if not codecs:
            logger.warning("participant %s: no common codec for mid %s", self.id, transceiver.mid)
            return None
        main = codecs[0]
        rtx = next((c.payloadType for c in negotiated
                    if c.mimeType.lower().endswith("/rtx")
                    and c.parameters.get("apt") == main.payloadType), None)
        codec = CodecInfo(main.mimeType, main.clockRate, main.payloadType, main.channels,
                          dict(main.parameters), rtx)
        simulcast = self.pub.simulcast.get(transceiver.mid) if transceiver.kind == "video" else None
        make: Any = partial(SimulcastProducer, rids=simulcast.rids) if simulcast else Producer
        producer = make(
            participant_id=self.id, kind=transceiver.kind, mid=transceiver.mid, codec=codec,
            ext_ids=internals.header_extension_ids(transceiver), transport=self.pub,
            rtcp_ssrc=internals.sender_ssrc(transceiver.sender),
            ssrcs=() if simulcast else ssrcs[:1], source=track.get("source", "camera"),
            name=track.get("name"),
            nack_cache_size=self.settings.nack_cache_size,
            keyframe_interval=self.settings.keyframe_interval,
            keyframe_replay_age=self.settings.keyframe_replay_age,
            clock=self.clock, scheduler=self.scheduler)
        if simulcast:  # its streams are learned from their rids
            self.add_producer(producer)
        else:
            self.add_producer(producer, ssrcs[:1], rtx_ssrcs)
        return producer

    def add_producer(self, producer: Producer, ssrcs: tuple[int, ...] = (),
                     rtx_ssrcs: tuple[int, ...] = ()) -> None:
        """Own ``producer``: route the publisher's packets of ``ssrcs`` (and of its mid)
        to it and report on its reception to the publisher every ``feedback_interval``."""
        if EXT_MID in producer.ext_ids:
            self.demux.mid_ext_id = producer.ext_ids[EXT_MID]
        if producer.identity is None:
            producer.identity = self.identity
        self.producers[producer.id] = producer
        self.demux.add(producer, ssrcs, rtx_ssrcs)
        producer.on_close.append(self._producer_closed)
        if self._feedback is None and not self.closed:
            self._feedback = self.scheduler.call_on_grid(self.settings.feedback_interval,
                                                       self._publisher_feedback_due)

    def _producer_closed(self, producer: Producer) -> None:
        self.producers.pop(producer.id, None)
        self.demux.remove(producer)

    def unpublish(self, track_id: str) -> Producer:
        producer = self.producers.get(track_id)
        if producer is None:
            raise NotFound(f"track {track_id!r} is not published by this participant")
        producer.close()
        return producer

    def _on_publisher_rtp(self, data: bytes, arrival: float) -> None:
        try:
            pt, _marker, seq, ts, ssrc, off, end, *_ = parse_header(data)
        except ValueError:
            return
        producer = self.demux.route(data, ssrc, pt)
        if producer is not None:
            producer.receive_rtp(data, pt, seq, ts, ssrc, off, end)

    def _publisher_feedback_due(self) -> None:
        """Once a second: a receiver report of every published stream, and a REMB
        with the loss-based estimate for the video ones."""
        if self.closed:
            return
        self._feedback = self.scheduler.call_on_grid(self.settings.feedback_interval,
                                                   self._publisher_feedback_due)
        packet = self.publisher_feedback(self.clock.monotonic())
        if packet and self.pub is not None:  # a local publisher (sfu.local) has no peer
            self.pub.send_rtcp(packet)

    def publisher_feedback(self, now: float) -> bytes | None:
        """The compound RTCP (RR, REMB) for the publisher at ``now``; None if nothing to say.
        A simulcast producer's layers are measured (its tick) and each of its streams
        reported; its REMB covers them all and starts at ``simulcast_bitrate``."""
        for producer in self.producers.values():
            producer.tick(now)
        reported = [(p, p.report_blocks(now)) for p in self.producers.values()]
        reported = [(p, blocks) for p, blocks in reported if blocks]
        if not reported:
            return None
        packets: list[Any] = [ReceiverReport(ssrc=reported[0][0].rtcp_ssrc,
                                             reports=[b for _, blocks in reported for b in blocks][:31])]
        for producer, blocks in reported:
            if not producer.video:
                continue
            estimate = self._estimates.get(producer.id)
            if estimate is None:
                top = self.settings.simulcast_bitrate if producer.simulcast \
                    else self.settings.max_video_bitrate
                estimate = self._estimates[producer.id] = LossBasedEstimate(
                    top, start=top if producer.simulcast else 1_000_000)
            bitrate = estimate.update(max(block.fraction_lost for block in blocks))
            needed = producer.needed_bitrate(now) if producer.simulcast else None
            if needed is not None:  # only the layers someone needs (issue 13, point 2)
                bitrate = min(bitrate, max(needed, estimate.minimum))
            packets.append(Remb(sender_ssrc=producer.rtcp_ssrc, bitrate=bitrate,
                                ssrcs=[block.ssrc for block in blocks]))
        return serialize_rtcp(packets)

    def _on_publisher_rtcp(self, data: bytes) -> None:
        try:
            packets = parse_rtcp(data)
        except ValueError:
            return
        for packet in packets:
            if isinstance(packet, SenderReport):
                producer = self.demux.by_ssrc.get(packet.ssrc)
                if producer is not None:
                    producer.receive_sender_report(packet, self.clock.monotonic())

    # -- subscribing ---------------------------------------------------------------

    async def subscribe(self, producers: list[Producer]) -> list[Consumer]:
        """Add consumers for ``producers`` (already consumed ones are skipped) and send
        the subscriber a new offer (now, or after the answer to the one that is out)."""
        if self.sub is None:
            self.sub = self._transport("sub")
            if self.settings.transport_cc:
                self.send_side = SendSideBandwidth(self.bandwidth.estimator, self.sub.send_rtp,
                                                   self.clock, self.scheduler)
        created = []
        for producer in producers:
            if producer.id in self.consumers or producer.closed:
                continue
            # msid "<publisher's participant id> <track id>": a browser groups a
            # participant's audio and video in one stream (and plays them in sync)
            transceiver = self.sub.pc.addTransceiver(IdleTrack(producer.kind, producer.id),
                                                     direction="sendonly")
            internals.set_stream_id(transceiver.sender, producer.participant_id)
            internals.quiet_sender_reports(transceiver.sender)
            # RTX offered with the codec (a=ssrc-group:FID): NACKs answered as RTX
            transceiver.setCodecPreferences(_preferred(transceiver, (producer.codec.mime_type,)))
            consumer = Consumer(producer, self.id, self.sub, internals.sender_ssrc(transceiver.sender),
                                clock=self.clock, scheduler=self.scheduler,
                                rtx_ssrc=internals.sender_rtx_ssrc(transceiver.sender))
            self._transceivers[consumer.id] = transceiver
            self.add_consumer(consumer)
            created.append(consumer)
        if created:
            await self.renegotiate()
        return created

    def add_consumer(self, consumer: Consumer) -> None:
        """Own ``consumer`` (one per producer): route the subscriber's RTCP about its
        SSRC to it and send the subscriber its sender reports."""
        consumer.on_close.append(self._consumer_closed)
        self.consumers[consumer.producer.id] = consumer
        consumer.resend_budget = self.resend_budget
        if self.send_side is not None:
            consumer.send_log = self.send_side.log
        if self._reports is None and not self.closed:
            self._reports = self.scheduler.call_on_grid(0.5 + random.random(),
                                                      self._subscriber_reports_due)
        if self._bandwidth_timer is None and not self.closed:
            self._bandwidth_timer = self.scheduler.call_on_grid(TICK_S, self._bandwidth_due)

    def _bandwidth_due(self) -> None:
        if self.closed:
            return
        self._bandwidth_timer = self.scheduler.call_on_grid(TICK_S, self._bandwidth_due)
        self.allocate(self.clock.monotonic())

    def allocate(self, now: float) -> None:
        """Share the subscriber's estimate among its consumers (`sfu.bwe.allocator`);
        tell ``on_bandwidth`` of the consumers paused and resumed."""
        consumers = list(self.consumers.values())
        estimator = self.bandwidth.estimator
        self.resend_budget.set_estimate(estimator.bitrate if estimator.mode is not None
                                        else self.bandwidth.start_bitrate)
        for change in self.bandwidth.tick(now, consumers):
            if (change.paused or change.resumed) and self.on_bandwidth is not None:
                try:
                    self.on_bandwidth(change.consumer, change.choice.reason if change.paused else None)
                except Exception:  # an observer's bug must not stop the allocation
                    logger.exception("participant %s: on_bandwidth failed", self.id)
        if self.send_side is not None:
            self.send_side.probe(now, consumers, self.bandwidth.fixed, self.bandwidth.video_share)

    def _subscriber_reports_due(self) -> None:
        """About once a second, one compound RTCP to the subscriber: a translated sender
        report per started consumer and their CNAME (RFC 3550's 0.5-1.5 s spread)."""
        if self.closed:
            return
        self._reports = self.scheduler.call_on_grid(0.5 + random.random(),
                                                  self._subscriber_reports_due)
        packet = self.subscriber_reports()
        if packet and self.sub is not None:
            self.sub.send_rtcp(packet)

    def subscriber_reports(self) -> bytes | None:
        """The compound RTCP for the subscriber now; None when nothing has started."""
        reports = [r for r in (c.sender_report() for c in self.consumers.values()) if r]
        if not reports:
            return None
        cname = self.sub.cname.encode() if self.sub else b""
        sdes = Sdes(chunks=[(r.ssrc, [(1, cname)]) for r in reports])
        return serialize_rtcp([*reports, sdes])

    def unsubscribe(self, producer_id: str) -> Consumer:
        consumer = self.consumers.get(producer_id)
        if consumer is None:
            raise NotFound(f"not subscribed to track {producer_id!r}")
        consumer.close()
        return consumer

    def _consumer_closed(self, consumer: Consumer) -> None:
        self.consumers.pop(consumer.producer.id, None)
        transceiver = self._transceivers.pop(consumer.id, None)
        if transceiver is not None:
            try:
                transceiver.direction = "inactive"  # in the next offer
            except Exception:  # noqa: BLE001 - the peer connection may be gone
                pass

    async def renegotiate(self) -> None:
        """Send the subscriber a new offer, or remember to once the pending one is answered."""
        if self.sub is None or self.closed or self.sub.closed:
            return
        if self._offer_out:
            self._renegotiate = True
            return
        self._offer_out = True
        self._renegotiate = False
        try:
            sdp = await self.sub.create_offer(transport_cc=self.send_side is not None)
        except (Closed, InvalidStateError):
            return  # the participant is leaving: nobody to offer to
        if self.send_offer is not None:
            await self.send_offer(sdp)

    def pending_offer(self) -> str | None:
        """The offer the subscriber has not answered yet (to send again to a participant
        whose signalling connection came back), or ``None``."""
        if not self._offer_out or self.sub is None or self.sub.closed:
            return None
        return self.sub.offer_sdp

    def offered_tracks(self) -> list[dict[str, Any]]:
        """What each m-line of the subscriber's peer connection carries: ``{mid, track_id,
        participant_id, kind}`` (the m-lines of closed consumers are left out)."""
        out = []
        for consumer in self.consumers.values():
            transceiver = self._transceivers.get(consumer.id)
            if transceiver is not None and transceiver.mid is not None:
                producer = consumer.producer
                out.append({"mid": transceiver.mid, "track_id": producer.id,
                            "participant_id": producer.participant_id, "kind": producer.kind})
        return out

    def repoint(self, consumer: Consumer, producer: Producer) -> None:
        """Let ``consumer`` forward ``producer`` (a successor of its producer) on the
        same m-line: nothing to renegotiate."""
        self.consumers.pop(consumer.producer.id, None)
        consumer.repoint(producer)
        self.consumers[producer.id] = consumer

    async def answer(self, sdp: str) -> None:
        """The subscriber's answer to our offer."""
        if self.sub is None or not self._offer_out:
            raise NegotiationError("no offer is waiting for an answer")
        await self.sub.accept_answer(sdp)
        self._offer_out = False
        for consumer in list(self.consumers.values()):
            transceiver = self._transceivers.get(consumer.id)
            if transceiver is not None:
                ext_ids = dict(internals.header_extension_ids(transceiver))
                twcc_id = self.sub.transport_cc_ids.get(transceiver.mid)
                if twcc_id is not None:  # aiortc keeps no transport-cc: read from the answer
                    ext_ids[EXT_TRANSPORT_CC] = twcc_id
                    self.bandwidth.use_transport_cc()
                consumer.negotiate(_payload_types(internals.negotiated_codecs(transceiver)),
                                   ext_ids)
        # the first layer choices now, for the mode the answer says, before any
        # consumer starts forwarding (its default, the top layer, would flood a slow link)
        self.allocate(self.clock.monotonic())
        if self._renegotiate:
            await self.renegotiate()

    def _consumer_by_ssrc(self, ssrc: int) -> Consumer | None:
        for consumer in self.consumers.values():
            if consumer.ssrc == ssrc:
                return consumer
        return None

    def _on_subscriber_rtcp(self, data: bytes) -> None:
        try:
            packets = parse_rtcp(data)
        except ValueError:
            return
        now = self.clock.monotonic()
        for packet in packets:
            if isinstance(packet, Remb):
                self.bandwidth.on_remb(now, packet.sender_ssrc, packet.bitrate, packet.ssrcs)
            elif isinstance(packet, TransportFeedback):
                if self.send_side is not None:
                    self.send_side.on_feedback(now, packet)
                continue  # about the transport, not one stream
            elif isinstance(packet, (ReceiverReport, SenderReport)):
                for block in packet.reports:
                    consumer = self._consumer_by_ssrc(block.ssrc)
                    if consumer is not None and consumer.kind == "video":
                        self.bandwidth.on_report_block(now, block.ssrc, block.fraction_lost,
                                                       block.highest_sequence,
                                                       consumer.seq_skipped)
            media_ssrc = getattr(packet, "media_ssrc", None)
            if media_ssrc is not None:
                consumer = self._consumer_by_ssrc(media_ssrc)
                if consumer is not None:
                    consumer.receive_rtcp(packet)
            elif hasattr(packet, "ssrcs"):  # REMB names the streams it covers
                for ssrc in packet.ssrcs:
                    consumer = self._consumer_by_ssrc(ssrc)
                    if consumer is not None:
                        consumer.receive_rtcp(packet)
            elif hasattr(packet, "reports"):
                for block in packet.reports:
                    consumer = self._consumer_by_ssrc(block.ssrc)
                    if consumer is not None:
                        consumer.receive_rtcp(packet)

    def _filter_outgoing_rtcp(self, data: bytes) -> bytes | None:
        """Drop any sender report aiortc itself writes (NTP 0): the subscriber gets the
        translated ones of :meth:`subscriber_reports`. What else aiortc writes (a BYE
        when a sender stops) passes."""
        try:
            packets = parse_rtcp(data)
        except ValueError:
            return None
        out = []
        for packet in packets:
            if isinstance(packet, SenderReport):
                # aiortc's (NTP 0): never sent; ours come from subscriber_reports
                continue
            out.append(packet)
        return serialize_rtcp(out) if out else None

    # -- lifecycle -----------------------------------------------------------------

    async def close(self) -> None:
        """Close producers, consumers and both peer connections (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for task in (self._feedback, self._reports, self._bandwidth_timer):
            if task is not None:
                task.cancel()
        if self.send_side is not None:
            self.send_side.close()
        for producer in list(self.producers.values()):
            producer.close()
        for consumer in list(self.consumers.values()):
            consumer.close()
        for transport in (self.pub, self.sub):
            if transport is not None:
                await transport.close()
