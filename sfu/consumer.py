"""Consumer: one producer forwarded to one subscriber.

Like mediasoup's consumers it starts paused: it forwards nothing until the subscriber
has answered the offer that carries it and its peer connection is up. A video consumer
then asks the publisher for a keyframe and starts its output there, so a late joiner's
first frame decodes. It rewrites SSRC, sequence number, timestamp, payload type and
header-extension ids (``ConsumerState``), answers the subscriber's NACKs from the
producer's cache (as RTX, RFC 4588, on its own RTX SSRC when the subscriber
negotiated ``video/rtx``; else the packet again), passes PLI/FIR upstream (throttled
by the producer), and writes its sender reports as translations of the publisher's.

It knows nothing of aiortc: the participant passes the SSRC its m-line announces and,
once the subscriber answered, the negotiated payload types and extension ids.

Of a simulcast producer (`sfu.simulcast`) it forwards one spatial layer, by default
the highest the publisher sends; `set_layers` narrows the choice (a layer index, a
temporal layer, a ``max_height``, a ``max_fps``). A new layer is asked for (PLI on its
SSRC) and taken at its next keyframe; the subscriber sees one continuous stream
(one SSRC; sequence numbers, timestamps and VP8 picture ids continuing).
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .clock import Cancellable, Clock, Scheduler
from .errors import MalformedPacket
from .extensions import EXT_ABS_SEND_TIME, EXT_TRANSPORT_CC, FORWARDED_EXTENSIONS
from .forward import ALL_TEMPORAL, ConsumerState
from .producer import Producer
from .rtcp import Fir, Nack, Pli, ReceiverReport, Remb, SenderReport
from .rtp import abs_send_time
from .rtx import ResendBudget
from .simulcast import choose_temporal

__all__ = ["Consumer", "SendTransport"]

logger = logging.getLogger(__name__)

NACK_RESEND_INTERVAL_S = 0.1
"""A packet asked for again within this is not resent again (it is likely in flight)."""
NACK_MAX_PER_REQUEST = 256
"""Most packets one NACK makes a consumer resend (the cache holds 1024)."""
RESYNC_SEQ_SKIP = 960
"""How far a resync moves the output sequence numbers on: past aiortc's video jitter
buffer (512 packets), so the holes before it are dropped, not waited for, and within
the forwarder's ``MAX_SEQ_JUMP`` (1000: beyond it the output continues without a gap)."""
RESYNC_WINDOW = 2048
"""A NACKed number at most this far before the current start counts as sent before it
(further is bogus, or too old to matter)."""
RESYNC_INTERVAL_S = 1.0
"""At most one resync per this (each costs a keyframe)."""
UNANSWERED_S = 0.5
"""A NACKed packet still not in the producer's cache this long after the subscriber
first asked for it is lost for good (the node's own NACKs upstream give up within about
that: 3 tries, 1.5 round trips apart), and so is a resync's reason."""
LOSSY_S = 2.0
"""A subscriber that NACKed within this may still wait for a packet of the layer it is
moved off (aiortc NACKs a hole again only when a new one appears): the switch then
moves the sequence numbers on as a resync does."""


class SendTransport(Protocol):
    """The subscriber's side a consumer writes to (a :class:`WebRtcTransport`)."""

    connected: Any  # an asyncio.Event, set once the peer connection is up

    @property
    def send_path(self) -> tuple[Callable[[bytes], bytes], Callable[[bytes, Any], None], Any] | None: ...

    def native_send_path(self) -> tuple[Any, int, int, int, bytes] | None: ...


class Consumer:
    """Forwards ``producer`` to a subscriber's ``transport`` as the stream ``ssrc``
    (the SSRC its sendonly m-line announces), and its retransmissions as RTX on
    ``rtx_ssrc`` (the m-line's ``a=ssrc-group:FID``) if the subscriber negotiates RTX.

    ``clock`` and ``scheduler`` default to the producer's.
    """

    def __init__(self, producer: Producer, subscriber_id: str, transport: SendTransport,
                 ssrc: int, consumer_id: str | None = None, *, clock: Clock | None = None,
                 scheduler: Scheduler | None = None, rtx_ssrc: int | None = None) -> None:
        self.id = consumer_id or "CO_" + uuid.uuid4().hex[:12]
        self.producer = producer
        self.subscriber_id = subscriber_id
        self.transport = transport
        self.clock = clock or producer.clock
        self.scheduler = scheduler or producer.scheduler
        self.kind = producer.kind
        self.state = ConsumerState(ssrc, producer.codec.payload_type, None, 0, producer.video)
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.rtx_payload_type: int | None = None
        """Set when the subscriber negotiated RTX: NACKs are then answered as RTX."""
        self._rtx_seq = random.getrandbits(16)
        self.resend_budget: ResendBudget | None = None
        """The subscriber transport's budget of retransmitted bytes (`sfu.rtx`), shared
        by its consumers, set by the participant; None: no limit."""
        self.send_log: Any = None
        """The subscriber transport's send log (`sfu.forward.SendLog`), set by the
        participant: transport-cc subscribers get transport-wide numbers from it."""
        self.closed = False
        self.negotiated = False
        self.remb_bitrate: int | None = None
        self.fraction_lost = 0
        self.nacks = 0
        self.retransmitted = 0
        self.nacks_refused = 0  # asked again too soon, or over the cap of one NACK
        self._resent_at: dict[int, float] = {}  # output seq -> when last resent
        self.seq_skipped = 0
        """Output sequence numbers left unused by resyncs (a receiver counts them lost)."""
        self.resyncs = 0
        """Restarts at a keyframe because the subscriber asked for packets that cannot be
        resent (see `_retransmit`)."""
        self._resync_mark: int | None = None  # the first output seq after the last resync
        self._start_mark: int | None = None  # the first output seq of the current start
        self._resynced_at = float("-inf")
        self._started_at = float("-inf")  # when `resume` last (re)started the state
        self._nacked_at = float("-inf")
        self._unanswered: dict[int, float] = {}  # output seq -> when first NACKed, not in cache
        self.keyframe_requests = 0
        self._ext_ids: dict[str, int] = {}  # the subscriber's, once negotiated
        self.on_close: list[Callable[[Consumer], None]] = []
        self._activation: Cancellable | None = None
        self.target_layer: int | None = None
        """The highest spatial layer wanted (None: the top one); see `set_layers`."""
        self.target_temporal: int | None = None
        self.max_height: int | None = None
        self.max_fps: float | None = None
        self.pending_layer: int | None = None
        """The layer it moves to at that layer's next keyframe, if any."""
        self.layer_switches = 0
        self.selector: Any = None
        """The `sfu.bwe.LayerSelector` choosing its layer by bandwidth, once it does."""
        self._activated = False
        self.bandwidth_paused = False
        """Paused because even the lowest layer does not fit the subscriber's estimate."""
        self._simulcast_mode(producer)
        producer.add_consumer(self)

    def _simulcast_mode(self, producer: Producer) -> None:
        self.state.vp8 = producer.simulcast and producer.codec.name == "VP8"
        self.state.layer = 0
        self.pending_layer = None

    # -- negotiation ---------------------------------------------------------------

    def negotiate(self, codecs: Mapping[str, int], ext_ids: Mapping[str, int]) -> bool:
        """The subscriber answered: ``codecs`` maps each mime type negotiated on this
        consumer's m-line to its payload type (in order of preference), ``ext_ids`` each
        header-extension URI to its id. Take the producer's codec and the forwarded
        extensions from them, then start forwarding once the peer connection is up.
        False if the subscriber refused the producer's codec (nothing is forwarded)."""
        if self.closed or self.negotiated:
            return self.negotiated
        mime = self.producer.codec.mime_type.lower()
        payload_type = next((pt for m, pt in codecs.items() if m.lower() == mime), None)
        if payload_type is None:
            if codecs:  # negotiated without it: a real refusal (an empty map: not in this answer yet)
                logger.warning("consumer %s: the subscriber's answer has no %s (it offered %s); "
                               "not forwarding", self.id, mime, ", ".join(codecs))
            return False
        self._ext_ids = dict(ext_ids)
        self._map_extensions()
        self.state.payload_type = payload_type
        rtx = next((pt for m, pt in codecs.items() if m.lower() == "video/rtx"), None)
        if self.rtx_ssrc is not None and self.producer.video:
            self.rtx_payload_type = rtx
        self.negotiated = True
        self._activation = self.scheduler.spawn(self._activate())
        return True

    def _map_extensions(self) -> None:
        """The producer's extension ids -> the subscriber's, for the ones forwarded;
        and transport-wide numbers in the abs-send-time element's place when the
        subscriber negotiated transport-cc on this m-line and the transport has a
        send log (``send_log``)."""
        ext_map = bytearray(256)
        ast_id = 0
        for uri, ext_id in self._ext_ids.items():
            if uri in FORWARDED_EXTENSIONS and uri in self.producer.ext_ids:
                ext_map[self.producer.ext_ids[uri]] = ext_id
                if uri == EXT_ABS_SEND_TIME:
                    ast_id = ext_id
        twcc_id = self._ext_ids.get(EXT_TRANSPORT_CC, 0) if self.send_log is not None else 0
        if twcc_id and not ast_id and self.producer.video and EXT_ABS_SEND_TIME in self.producer.ext_ids:
            # the subscriber keeps only transport-cc: the element's place is still needed
            ast_id = next(i for i in range(1, 15) if i not in self._ext_ids.values())
            ext_map[self.producer.ext_ids[EXT_ABS_SEND_TIME]] = ast_id
        self.state.ext_map = bytes(ext_map)
        self.state.abs_send_time_id = ast_id
        self.state.twcc = self.send_log if twcc_id else None
        self.state.twcc_id = twcc_id

    @property
    def twcc_id(self) -> int:
        """The subscriber's transport-cc extension id on this stream (0: not negotiated)."""
        return self.state.twcc_id

    def take_rtx_seq(self) -> int:
        """The next sequence number of the RTX stream (for a retransmission or a probe's
        padding), counted as used."""
        seq = self._rtx_seq
        self._rtx_seq = (seq + 1) & 0xFFFF
        return seq

    def repoint(self, producer: Producer) -> None:
        """Forward ``producer`` instead, on the same stream: the subscriber keeps its
        m-line, SSRC, sequence numbers and timestamps (they continue from the next
        keyframe of the new producer) and renegotiates nothing. For a publisher back on
        another node after its node died. The codec must be the same."""
        if self.closed:
            return
        if producer.codec.mime_type.lower() != self.producer.codec.mime_type.lower():
            raise ValueError(f"cannot forward {producer.codec.mime_type} on a "
                             f"{self.producer.codec.mime_type} stream")
        old, self.producer = self.producer, producer
        old.remove_consumer(self)
        self._simulcast_mode(producer)
        producer.add_consumer(self)
        self._map_extensions()
        if self.state.started or not self.state.paused:
            self.resume()  # restart the rewriting at the new stream's keyframe

    async def _activate(self) -> None:
        await self.transport.connected.wait()
        path = self.transport.send_path
        if self.closed or path is None:
            return
        self.state.bind(*path, native=self.transport.native_send_path())
        self._activated = True
        if not self.bandwidth_paused:
            self.resume()

    def pause(self) -> None:
        self.state.paused = True

    def pause_for_bandwidth(self) -> None:
        """Stop forwarding until `resume_from_bandwidth` (audio is never paused so)."""
        self.bandwidth_paused = True
        self.state.paused = True

    def resume_from_bandwidth(self) -> None:
        """Forward again (from a keyframe of the layer chosen, the sequence numbers
        moved on as by a resync: see `_resync`), if it was started."""
        if not self.bandwidth_paused:
            return
        self.bandwidth_paused = False
        if self._activated:
            # what the subscriber lost before the pause cannot be resent after it
            self.resume(seq_skip=RESYNC_SEQ_SKIP)

    def resume(self, seq_skip: int = 0) -> None:
        """Start (again): from the producer's latest keyframe if it is fresh (a burst of
        the packets since, so the first frame shows at once), else at the next one,
        which the publisher is asked for. ``seq_skip`` leaves that many sequence
        numbers unused before it (a resync)."""
        if self.closed:
            return
        self.state.restart()
        self._started_at = self.clock.monotonic()
        if seq_skip:
            self._skip_seq(seq_skip)
        self._mark_start()
        self.state.paused = False
        producer = self.producer
        if producer.simulcast:
            self.pending_layer = None
            self._choose()
        fresh = producer.video and producer.replay_from_keyframe(self.state)
        if not fresh or producer.keyframe_age(self.state.layer) > producer.keyframe_replay_age / 2:
            self.request_keyframe()

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self.producer.request_keyframe(self.pending_layer if self.pending_layer is not None
                                       else self.state.layer)

    # -- simulcast layers ----------------------------------------------------------

    def set_layers(self, *, spatial: int | None = None, temporal: int | None = None,
                   max_height: int | None = None, max_fps: float | None = None) -> None:
        """What this subscriber wants of a simulcast producer: at most spatial layer
        ``spatial`` (0 the lowest), temporal layer ``temporal``, ``max_height`` pixels
        high and ``max_fps`` frames a second (None: no limit; the defaults take the
        top). The layer changes at its next keyframe; the temporal limit at the next
        base-layer picture. Nothing changes for a producer without simulcast."""
        self.target_layer, self.target_temporal = spatial, temporal
        self.max_height, self.max_fps = max_height, max_fps
        self.update_layer()

    def set_limits(self, *, max_height: int | None = None, max_fps: float | None = None) -> None:
        """The subscriber's own limits (``subscribe``'s ``max_height``, ``max_fps``;
        None: none), leaving the layer chosen for its bandwidth as it is: the allocator
        weighs them at its next tick. (`set_layers` with them alone would reset the
        chosen layer to the top: a 300 kbit/s viewer whose client subscribed again
        was moved to 1280x720 until the next tick, and its keyframe flooded the link.)
        Without a bandwidth selector they take effect at once."""
        self.max_height, self.max_fps = max_height, max_fps
        if self.selector is None:
            self.update_layer()

    def _choose(self) -> int | None:
        """Set the temporal limit now; return the spatial layer wanted (None: no layer
        is active). Before the state starts, the layer is taken at once."""
        producer = self.producer
        now = self.clock.monotonic()
        layer = producer.best_layer(now, spatial=self.target_layer, max_height=self.max_height)
        if layer is None:
            return None
        if self.selector is not None and self.target_layer is not None and layer > self.target_layer:
            # the layer the estimate allows is not flowing (a moment's gap, or the
            # publisher's encoder starting): not a larger one, which floods the link
            # the estimate was made for (a 300 kbit/s viewer was moved to 1280x720 so);
            # gone for good, it leaves the selector's options and the selector moves on.
            # Not started yet: start on it when it comes, not on the default top
            if not self.state.started:
                self.state.layer = self.target_layer
            return None
        self.state.temporal_limit = (ALL_TEMPORAL if not self.state.vp8 else choose_temporal(
            producer.layers[layer], self.max_fps, self.target_temporal))
        if not self.state.started:
            self.state.layer = layer
        return layer

    def update_layer(self) -> None:
        """Follow the wanted layer: called on `set_layers` and by the producer's tick
        (a layer stopped or came back). A change of spatial layer asks for its keyframe."""
        if self.closed or not self.producer.simulcast:
            return
        layer = self._choose()
        if layer is None or layer == self.state.layer:
            self.pending_layer = None
            return
        if layer != self.pending_layer:
            self.pending_layer = layer
            self.request_keyframe()

    def switch_layer(self, layer: int, ts: int) -> None:
        """Called by the producer as a keyframe (RTP timestamp ``ts``) of ``layer``
        arrives, before it is fanned out: forward ``layer`` from that keyframe on,
        continuing the output stream. Its timestamp follows the last one sent by the
        time between them (from the layers' sender reports, else arrival times); its
        sequence numbers jump past the old layer's if the subscriber was losing packets
        (`LOSSY_S`)."""
        state = self.state
        self.pending_layer = None
        if state.started:
            gap = self.producer.timestamp_gap(state.layer, (state.last_ts - state.ts_offset)
                                              & 0xFFFFFFFF, layer, ts)
            state.restart()
            state.next_ts = (state.last_ts + gap) & 0xFFFFFFFF
            if self.clock.monotonic() - self._nacked_at < LOSSY_S:
                # what it still misses of the old layer can no longer be resent
                self._skip_seq(RESYNC_SEQ_SKIP)
            self._mark_start()
        state.layer = layer
        self.layer_switches += 1

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
        """Resend what the subscriber lost, from the producer's cache. A NACK is a list
        the subscriber writes: each seq is resent at most once per `NACK_RESEND_INTERVAL_S`
        and at most `NACK_MAX_PER_REQUEST` per NACK, so a small hostile NACK (one seq
        listed thousands of times) costs one packet, not thousands."""
        cache = self.producer.cache_for(self.state.layer)
        self.nacks += len(lost)
        if cache is None:
            return
        now = self.clock.monotonic()
        self._nacked_at = now
        wanted = []
        for out_seq in dict.fromkeys(lost):  # each seq once, in order
            last = self._resent_at.get(out_seq)
            if last is not None and now - last < NACK_RESEND_INTERVAL_S:
                continue
            wanted.append(out_seq)
        if len(wanted) > NACK_MAX_PER_REQUEST:
            wanted = wanted[-NACK_MAX_PER_REQUEST:]  # the newest are still worth having
        self.nacks_refused += len(lost) - len(wanted)
        if len(self._resent_at) > 4 * NACK_MAX_PER_REQUEST:
            self._resent_at = {k: t for k, t in self._resent_at.items()
                               if now - t < NACK_RESEND_INTERVAL_S}
        if len(self._unanswered) > 4 * NACK_MAX_PER_REQUEST:
            self._unanswered = {k: t for k, t in self._unanswered.items()
                                if now - t < 4 * UNANSWERED_S}
        stamp = abs_send_time(self.clock.wall()) if self.state.abs_send_time_id else 0
        rtx_pt = self.rtx_payload_type
        lost_for_good = False
        for out_seq in wanted:
            self._resent_at[out_seq] = now
            if _before(self._start_mark, out_seq):
                # sent before the current start (or skipped): its mapping is gone
                lost_for_good = lost_for_good or not _before(self._resync_mark, out_seq)
                continue
            seq = self.state.producer_seq(out_seq)
            data = cache.get(seq) if seq >= 0 else None
            budget = self.resend_budget
            if data is not None and budget is not None and not budget.take(now, len(data)):
                # over the subscriber's resend budget (its link is full): not resent, and
                # the hole is not left open (a receiver's jitter buffer may wait on it for
                # good): restart at a keyframe, as for a packet the cache has lost
                lost_for_good = True
                continue
            if data is None:  # not here yet (lost upstream, being recovered), or gone
                if 0 <= (self.state.last_seq - out_seq) & 0xFFFF < RESYNC_WINDOW:  # not bogus
                    first = self._unanswered.setdefault(out_seq, now)
                    lost_for_good = lost_for_good or now - first >= UNANSWERED_S
                continue
            try:
                if rtx_pt is None:
                    sent = self.state.retransmit(data, stamp, out_seq, now=now)
                else:  # RFC 4588: the RTX stream numbers its own packets
                    sent = self.state.retransmit(data, stamp, out_seq, self.rtx_ssrc, rtx_pt,
                                                 self._rtx_seq, now=now)
                    if sent:
                        self.take_rtx_seq()
            except MalformedPacket:  # it was forwarded once, so this cannot happen; be safe
                continue
            if sent:
                self.retransmitted += 1
        if lost_for_good and now - self._resynced_at >= RESYNC_INTERVAL_S:
            self._resynced_at = now
            self._resync()

    def lost_upstream(self, layer: int | None, since: float, now: float) -> bool:
        """The producer gave up a packet of spatial ``layer`` (None: its one stream)
        missing since ``since``: if this consumer forwards that stream and started
        before the loss, its subscriber has a hole that nobody can fill. Resync at
        once (`_resync`, at most once per `RESYNC_INTERVAL_S`) rather than wait for
        the subscriber to NACK it again: aiortc's receiver asks once per new gap and
        its jitter buffer holds every later frame until 512 packets pushed the hole out
        (2.4 s at 210 packets a second: a freeze seen in CI). True if it resynced."""
        state = self.state
        if (self.closed or state.paused or not state.started or self._started_at > since
                or (layer is not None and state.layer != layer)
                or now - self._resynced_at < RESYNC_INTERVAL_S):
            return False
        self._resynced_at = now
        self._resync()
        return True

    def _skip_seq(self, count: int) -> None:
        """Leave ``count`` output sequence numbers unused before the next start."""
        self.state.next_seq = (self.state.next_seq + count) & 0xFFFF
        self._resync_mark = self.state.next_seq
        self.seq_skipped += count

    def _mark_start(self) -> None:
        """Just restarted: the numbers before the next one belong to an earlier start
        (or were skipped), whose output-to-input mapping is gone."""
        if self.state.packets:
            self._start_mark = self.state.next_seq

    def _resync(self) -> None:
        """The subscriber waits for packets this consumer cannot resend (sent before its
        last restart, at a pause or a change of layer; given up upstream, or gone from
        the cache: `UNANSWERED_S`): a libwebrtc receiver decodes
        again from the next keyframe, but aiortc's jitter buffer hands out no frame past
        a hole until 512 later packets pushed it out (seconds at a low layer, for ever
        while paused). So restart at a keyframe with
        the sequence numbers moved past the hole (`RESYNC_SEQ_SKIP`): every receiver
        takes that as a new start. Once per hole: NACKs of packets before the last
        resync do not start another."""
        if not self.producer.video or self.state.paused or self.closed:
            return
        self.resyncs += 1
        self.resume(seq_skip=RESYNC_SEQ_SKIP)

    def sender_report(self, reports: list | None = None) -> SenderReport | None:
        """Our sender report for the subscriber: the publisher's latest one, translated
        (NTP kept, RTP timestamp shifted by our offset, our own counts)."""
        state = self.state
        sr = self.producer.sender_report_for(state.layer)
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
            "nacks": self.nacks, "retransmitted": self.retransmitted, "resyncs": self.resyncs,
            "rtx": self.rtx_payload_type is not None,
            "remb_bitrate": self.remb_bitrate, "fraction_lost": self.fraction_lost,
            **({"layer": s.layer, "temporal": s.temporal_limit, "layer_switches": self.layer_switches,
                "temporal_dropped": s.temporal_dropped, "bandwidth_paused": self.bandwidth_paused}
               if self.producer.simulcast else {}),
        }

    def close(self) -> None:
        """Stop forwarding (the owner of the subscriber's m-line, told through
        ``on_close``, makes it inactive at the next offer)."""
        if self.closed:
            return
        self.closed = True
        self.state.paused = True
        self.state.unbind()
        self.producer.remove_consumer(self)
        if self._activation is not None:
            self._activation.cancel()  # nothing if it has run
        for callback in self.on_close:
            callback(self)


def _before(mark: int | None, out_seq: int) -> bool:
    """Whether ``out_seq`` comes before ``mark`` (within `RESYNC_WINDOW`)."""
    return mark is not None and 0 < (mark - out_seq) & 0xFFFF <= RESYNC_WINDOW
