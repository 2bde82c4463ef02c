"""Producer: one incoming track of a publisher, fanned out to its consumers.

The producer owns the per-track state that all its consumers share: the negotiated
codec and header-extension ids, the learned SSRC, the NACK packet cache, the latest
sender report (to translate for each consumer) and the keyframe-request throttle.
Video packets lost on the way in are NACKed (`sfu.rtx.NackRequester`: after a short
reordering hold, retried, then given up with a keyframe request) and restored from
the publisher's RTX.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .audio_level import SAMPLE_EVERY, AudioLevelMeter
from .clock import ASYNCIO_SCHEDULER, SYSTEM_CLOCK, Cancellable, Clock, Scheduler
from .errors import Closed, MalformedPacket
from .extensions import EXT_ABS_SEND_TIME, EXT_AUDIO_LEVEL
from .forward import NackCache, fan_out
from .h264 import h264_is_keyframe
from .keyframe import KeyframeRequestThrottle, keyframe_repairs
from .reception import ReceptionStats
from .rtcp import Nack, Pli, SenderReport, serialize_rtcp
from .rtp import abs_send_time, parse_header, rewrite
from .rtx import NackRequester, NackRound
from .vp8 import vp8_is_keyframe

if TYPE_CHECKING:
    from .consumer import Consumer

__all__ = ["CodecInfo", "Producer", "ProducerTap", "SenderReportInfo", "RtcpSink"]

logger = logging.getLogger(__name__)


class RtcpSink(Protocol):
    """Where a producer writes its RTCP to the publisher (a :class:`WebRtcTransport`)."""

    def send_rtcp(self, packet: bytes) -> bool: ...


class ProducerTap(Protocol):
    """A sink beside the consumers that sees every packet of a producer as it arrived
    (a recorder). ``rtp`` runs on the packet path, once per packet: it must not block,
    do I/O or await (queue the bytes and return). Added with `Producer.add_tap`."""

    def rtp(self, data: bytes, arrival: float, keyframe: bool) -> None:
        """One decrypted RTP packet as the publisher sent it (RTX already restored);
        ``arrival`` is wall-clock seconds, ``keyframe`` whether it starts a keyframe."""

    def sender_report(self, ntp: int, rtp_ts: int, arrival: float) -> None:
        """The publisher's RTCP sender report of this track (a wall-clock anchor)."""

    def stream_changed(self, ssrc: int) -> None:
        """The publisher restarted the track under a new SSRC (new seq and timestamps)."""

    def producer_closed(self) -> None:
        """The producer closed: no more packets."""


@dataclass(frozen=True)
class CodecInfo:
    """The codec a producer was negotiated with (on the publisher's peer connection)."""

    mime_type: str
    clock_rate: int
    payload_type: int
    channels: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    rtx_payload_type: int | None = None

    @property
    def name(self) -> str:
        return self.mime_type.split("/", 1)[1].upper()


def _keyframe_detector(codec: CodecInfo) -> Callable[[bytes], bool] | None:
    if codec.name == "VP8":
        return vp8_is_keyframe
    if codec.name == "H264":
        return h264_is_keyframe
    return None


@dataclass
class SenderReportInfo:
    """The publisher's latest RTCP sender report of this track."""

    ntp_timestamp: int
    rtp_timestamp: int
    arrival: float


class Producer:
    """An incoming track. ``close()`` closes its consumers.

    ``transport`` is where RTCP to the publisher goes (NACK, PLI); ``clock`` and
    ``scheduler`` (the machine's and the running asyncio loop's by default) time the
    keyframe cache and the keyframe-request throttle.

    A plain producer is one stream, spatial layer 0; `sfu.simulcast.SimulcastProducer`
    has several. The methods that take a ``layer`` ignore it here.
    """

    simulcast = False

    def __init__(
        self,
        *,
        participant_id: str,
        kind: str,
        mid: str,
        codec: CodecInfo,
        ext_ids: dict[str, int],
        transport: RtcpSink,
        rtcp_ssrc: int,
        ssrcs: tuple[int, ...] = (),
        source: str = "camera",
        name: str | None = None,
        producer_id: str | None = None,
        nack_cache_size: int = 1024,
        keyframe_interval: float = 1.0,
        keyframe_replay_age: float = 1.0,
        clock: Clock | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.clock = clock or SYSTEM_CLOCK
        self.scheduler = scheduler or ASYNCIO_SCHEDULER
        self.id = producer_id or "TR_" + uuid.uuid4().hex[:12]
        self.participant_id = participant_id
        self.kind = kind
        self.mid = mid
        self.codec = codec
        self.ext_ids = dict(ext_ids)
        self.transport = transport
        self.rtcp_ssrc = rtcp_ssrc
        self.ssrcs = set(ssrcs)
        self.source = source
        self.name = name
        self.consumers: list[Consumer] = []
        self._states: list[Any] = []
        self._taps: list[ProducerTap] = []
        self.video = kind == "video"
        self._is_keyframe = _keyframe_detector(codec) if self.video else None
        self.cache = NackCache(nack_cache_size) if self.video else None
        self.keyframes = KeyframeRequestThrottle(keyframe_interval)
        self.keyframe_replay_age = keyframe_replay_age
        self._keyframe_timer: Cancellable | None = None
        self.stamps_abs_send_time = EXT_ABS_SEND_TIME in self.ext_ids
        self.audio_level: AudioLevelMeter | None = (
            AudioLevelMeter(self.ext_ids[EXT_AUDIO_LEVEL])
            if kind == "audio" and EXT_AUDIO_LEVEL in self.ext_ids else None)
        """The track's RFC 6464 level, if the publisher sends it (the room's speakers)."""
        self.last_sr: SenderReportInfo | None = None
        self.reception: ReceptionStats | None = None
        self.nacks = NackRequester()
        """Which packets lost on the way in to NACK, and what came back (`nacks_sent`...)."""
        self._nack_timer: Cancellable | None = None
        self._nack_timer_at = float("inf")
        self.keyframes_for_loss = 0
        self.resyncs_for_loss = 0  # consumers restarted past a packet given up (`Consumer.lost_upstream`)
        """Keyframes asked for because a lost packet could not be recovered."""
        self.malformed = 0
        self.rtx_received = 0
        self.packets = 0
        self.octets = 0
        self.keyframes_seen = 0
        self.last_keyframe_seq = -1
        self.last_keyframe_at = float("-inf")
        self.replays = 0
        self.closed = False
        self.on_close: list[Callable[[Producer], None]] = []
        self.on_consumers_gone: Callable[[Producer], None] | None = None
        """Told when its last consumer is removed (a track imported from another node
        is then given back)."""
        self.on_orphans: Callable[[Producer, list[Consumer]], bool] | None = None
        """Asked, as it closes, whether someone takes over its consumers (paused, to be
        repointed at a successor) instead of closing them."""
        self.identity: str | None = None
        """Whose track this is (the publisher's identity), when known."""

    def describe(self) -> dict[str, Any]:
        """The track as PROTOCOL.md lists it (``tracks`` in ``joined``, ``track_published``)."""
        return {
            "track_id": self.id,
            "participant_id": self.participant_id,
            "kind": self.kind,
            "source": self.source,
            "name": self.name,
            "mid": self.mid,
            "codec": self.codec.mime_type,
        }

    # -- consumers -----------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self._states.append(consumer.state)

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            self._states.remove(consumer.state)
            if not self.consumers and self.on_consumers_gone is not None:
                self.on_consumers_gone(self)

    # -- taps ------------------------------------------------------------------------

    def add_tap(self, tap: ProducerTap) -> None:
        """Give ``tap`` every packet from now on (see `ProducerTap`)."""
        if self.closed:
            raise Closed(f"track {self.id} is closed")
        if tap not in self._taps:
            self._taps.append(tap)

    def remove_tap(self, tap: ProducerTap) -> None:
        if tap in self._taps:
            self._taps.remove(tap)

    def _tell_taps(self, method: str, *args: Any) -> None:
        """Call ``method`` of every tap (not on the per-packet path: `receive_rtp` calls
        ``rtp`` itself)."""
        for tap in list(self._taps):
            try:
                getattr(tap, method)(*args)
            except Exception:  # a tap's bug must not stop the forwarding
                logger.exception("track %s: tap %r failed in %s", self.id, tap, method)

    # -- packet path -----------------------------------------------------------------

    def receive_rtp(self, data: bytes, payload_type: int, seq: int, ts: int, ssrc: int,
                    payload_offset: int, payload_end: int) -> None:
        """One decrypted RTP packet of this track from the publisher."""
        if self.closed:
            return
        if payload_type != self.codec.payload_type:
            if payload_type == self.codec.rtx_payload_type and self.codec.rtx_payload_type is not None:
                self._receive_rtx(data, ts, payload_offset, payload_end)
            return  # red, fec: not forwarded
        reception = self.reception
        if reception is None or reception.ssrc != ssrc:
            changed = reception is not None
            reception = self.reception = ReceptionStats(ssrc)
            if changed:
                self._stream_changed(ssrc)
        lost = reception.update(seq)
        keyframe = False
        if self.video:
            if lost:
                self._nack_upstream(ssrc, lost)
            self.cache.put(seq, data)
            if self._is_keyframe is not None and self._is_keyframe(
                    data[payload_offset:payload_offset + 16]):
                keyframe = True
                self.keyframes_seen += 1
                self.keyframes.satisfied()
                self.last_keyframe_seq = seq
                self.last_keyframe_at = self.clock.monotonic()
        self.packets += 1
        self.octets += payload_end - payload_offset
        if self.audio_level is not None and not self.packets % SAMPLE_EVERY:
            self.audio_level.observe_packet(data)
        if self._taps:
            self._tap_rtp(data, keyframe)
        if self._states:
            stamp = abs_send_time(self.clock.wall()) if self.stamps_abs_send_time else 0
            try:
                fan_out(self._states, data, seq, ts, payload_end - payload_offset, keyframe, stamp,
                        now=self.clock.monotonic())
            except MalformedPacket:  # e.g. a header-extension element past its block
                self.malformed += 1

    def _tap_rtp(self, data: bytes, keyframe: bool) -> None:
        """Give every tap one packet (on the packet path)."""
        arrival = self.clock.wall()
        for tap in self._taps:
            try:
                tap.rtp(data, arrival, keyframe)
            except Exception:  # a tap's bug must not stop the forwarding
                logger.exception("track %s: tap %r failed", self.id, tap)

    def _stream_changed(self, ssrc: int) -> None:
        """The publisher restarted the track under a new SSRC (new sequence numbers and
        timestamps): every consumer continues its own output from the new stream's
        next keyframe (video) or packet, and the old stream's packets are forgotten."""
        self.ssrcs.add(ssrc)
        self.nacks.forget()  # the old stream's numbers mean nothing now
        for state in self._states:
            state.restart()
        if self._taps:
            self._tell_taps("stream_changed", ssrc)
        if self.video:
            self.cache.clear()
            self.last_keyframe_seq = -1
            self.last_keyframe_at = float("-inf")
            self.request_keyframe()

    def _receive_rtx(self, data: bytes, ts: int, payload_offset: int, payload_end: int,
                     media_ssrc: int | None = None) -> None:
        """A retransmission (RFC 4588): restore the original packet of ``media_ssrc``
        (by default the stream received) and forward it."""
        if media_ssrc is None:
            media_ssrc = self.reception.ssrc if self.reception is not None else None
        if payload_end - payload_offset < 2 or media_ssrc is None:
            return  # padding-only probe
        self.rtx_received += 1
        original_seq = (data[payload_offset] << 8) | data[payload_offset + 1]
        self.nacks.recovered(media_ssrc, original_seq, self.clock.monotonic())
        restored = bytearray(data[:payload_offset])
        restored[0] &= 0xDF  # the padding (if any) stays behind
        restored += data[payload_offset + 2:payload_end]
        packet = rewrite(bytes(restored), media_ssrc, original_seq, ts,
                         self.codec.payload_type, None, 0, 0)
        self.receive_rtp(packet, self.codec.payload_type, original_seq, ts, media_ssrc,
                         payload_offset, payload_end - 2)

    # -- loss on the way in -----------------------------------------------------------

    @property
    def nacks_sent(self) -> int:
        """Sequence numbers NACKed to the publisher (retries included)."""
        return self.nacks.requested

    @property
    def nack_recovered(self) -> int:
        """Packets that came back after a NACK."""
        return self.nacks.recovered_count

    @property
    def nack_failed(self) -> int:
        """Packets NACKed and given up (a keyframe was asked for unless one came since)."""
        return self.nacks.failed

    def _nack_upstream(self, ssrc: int, lost: list[int]) -> None:
        """``lost`` of stream ``ssrc`` are missing: NACKed once the reordering hold is
        over (`sfu.rtx.NackRequester`)."""
        now = self.clock.monotonic()
        self.nacks.missing(ssrc, lost, now)
        self._arm_nacks(now)

    def _arm_nacks(self, now: float) -> None:
        due = self.nacks.get_timer()
        if due is None or self.closed or due >= self._nack_timer_at:
            return
        if self._nack_timer is not None:
            self._nack_timer.cancel()
        self._nack_timer_at = due
        self._nack_timer = self.scheduler.call_later(max(0.0, due - now), self._nacks_due)

    def _nacks_due(self) -> None:
        self._nack_timer, self._nack_timer_at = None, float("inf")
        if self.closed:
            return
        now = self.clock.monotonic()
        caches: dict[int, tuple[Any, int | None]] = {}

        def arrived(ssrc: int, seq: int) -> bool:
            if ssrc not in caches:
                caches[ssrc] = self._loss_stream(ssrc)
            cache = caches[ssrc][0]
            return cache is not None and cache.get(seq) is not None

        self._recover(self.nacks.poll(now, arrived), caches, now)
        self._arm_nacks(now)

    def _recover(self, round_: NackRound, streams: dict[int, tuple[Any, int | None]],
                 now: float) -> None:
        """Send the round's NACKs; ask for a keyframe for what was given up (unless a
        keyframe of that stream came since the loss: `sfu.keyframe.keyframe_repairs`)."""
        for ssrc, seqs in round_.nacks.items():
            self.transport.send_rtcp(serialize_rtcp([
                Nack(sender_ssrc=self.rtcp_ssrc, media_ssrc=ssrc, lost=seqs)]))
        asked: set[int | None] = set()
        for lost in round_.lost:
            layer = streams[lost.ssrc][1] if lost.ssrc in streams else self._loss_stream(lost.ssrc)[1]
            if layer in asked or not self.video:
                continue
            for consumer in list(self.consumers):  # their subscribers have the hole too
                if consumer.lost_upstream(layer, lost.since, now):
                    self.resyncs_for_loss += 1
            if not keyframe_repairs(lost.since, now - self.keyframe_age(layer)):
                asked.add(layer)
                self.keyframes_for_loss += 1
                self.request_keyframe(layer)

    def _loss_stream(self, ssrc: int) -> tuple[NackCache | None, int | None]:
        """The packet cache of stream ``ssrc`` and its spatial layer (None: the one stream
        of a plain producer), where the NACKs check what has arrived."""
        if self.simulcast:  # sfu.simulcast.SimulcastProducer: a cache per layer
            for layer in self.layers:
                if layer.ssrc == ssrc:
                    return layer.cache, layer.spatial
            return None, None
        return self.cache, None

    def receive_sender_report(self, report: SenderReport, arrival: float) -> None:
        self.last_sr = SenderReportInfo(report.ntp_timestamp, report.rtp_timestamp, arrival)
        if self.reception is not None and self.reception.ssrc == report.ssrc:
            self.reception.sender_report(report.ntp_timestamp, arrival)
        if self._taps:
            self._tell_taps("sender_report", report.ntp_timestamp, report.rtp_timestamp,
                            self.clock.wall())

    # -- keyframes -----------------------------------------------------------------

    def keyframe_age(self, layer: int | None = None) -> float:
        """Seconds since the latest keyframe arrived (infinite before the first)."""
        return self.clock.monotonic() - self.last_keyframe_at

    def cache_for(self, layer: int) -> NackCache | None:
        """The packet cache of spatial ``layer`` (None for audio)."""
        return self.cache

    def sender_report_for(self, layer: int) -> SenderReportInfo | None:
        """The publisher's latest sender report of spatial ``layer``'s stream."""
        return self.last_sr

    def report_blocks(self, now: float) -> list:
        """A receiver-report block per stream received (for the publisher's feedback)."""
        return [self.reception.report_block(now)] if self.reception is not None else []

    def tick(self, now: float) -> None:
        """Once a second (the publisher's feedback timer): nothing to do for one stream."""

    def replay_from_keyframe(self, state: Any) -> bool:
        """Start a new consumer at once: forward to ``state`` every cached packet from
        the latest keyframe on, if that keyframe is at most ``keyframe_replay_age``
        seconds old and no packet since is missing. The consumer then continues live,
        gap-free. (Otherwise it waits for a new keyframe, which the once-a-second
        request limit may delay by up to a second.)"""
        return self._replay(state, self.cache, self.reception, self.last_keyframe_seq,
                            self.last_keyframe_at)

    def _replay(self, state: Any, cache: NackCache | None, reception: ReceptionStats | None,
                keyframe_seq: int, keyframe_at: float, layer: int | None = None,
                vp8: bool = False) -> bool:
        """`replay_from_keyframe` from one stream's cache (``layer`` given: the packets
        are forwarded as that spatial layer's, with their VP8 descriptor if ``vp8``)."""
        if (cache is None or reception is None or keyframe_seq < 0
                or self.clock.monotonic() - keyframe_at > self.keyframe_replay_age):
            return False
        first, last = keyframe_seq, reception.extended_max & 0xFFFF
        count = ((last - first) & 0xFFFF) + 1
        packets = [cache.get((first + i) & 0xFFFF) for i in range(min(count, cache.size))]
        if count > cache.size or any(p is None for p in packets):
            return False
        stamp = abs_send_time(self.clock.wall()) if self.stamps_abs_send_time else 0
        now = self.clock.monotonic()
        for i, data in enumerate(packets):
            try:
                _, _, seq, ts, _, offset, end, *_ = parse_header(data)
                if layer is None:
                    state.forward(data, seq, ts, end - offset, i == 0, stamp, now=now)
                else:
                    state.forward(data, seq, ts, end - offset, i == 0, stamp, layer,
                                  offset if vp8 else -1, now=now)
            except MalformedPacket:
                return False
        self.replays += 1
        return True

    def request_keyframe(self, layer: int | None = None) -> None:
        """Ask the publisher for a keyframe (PLI), at most once per interval."""
        if not self.video or self.closed:
            return
        now = self.clock.monotonic()
        if self.keyframes.request(now):
            self._send_pli()
        elif self._keyframe_timer is None:
            delay = self.keyframes.due(now)
            if delay is not None:
                self._keyframe_timer = self.scheduler.call_later(delay, self._pending_keyframe_due)

    def _pending_keyframe_due(self) -> None:
        self._keyframe_timer = None
        if self.keyframes.pending:
            self.request_keyframe()

    def _send_pli(self) -> None:
        for ssrc in self.ssrcs or ():
            self.transport.send_rtcp(serialize_rtcp([Pli(sender_ssrc=self.rtcp_ssrc, media_ssrc=ssrc)]))

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Close the producer and every consumer of it (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for timer in (self._keyframe_timer, self._nack_timer):
            if timer is not None:
                timer.cancel()
        self._keyframe_timer = self._nack_timer = None
        self.nacks.forget()
        consumers = list(self.consumers)
        if consumers and self.on_orphans is not None and self.on_orphans(self, consumers):
            for consumer in consumers:  # taken over (paused) rather than closed
                consumer.pause()
                self.remove_consumer(consumer)
        else:
            for consumer in consumers:
                consumer.close()
        if self.cache is not None:
            self.cache.clear()
        self._tell_taps("producer_closed")
        self._taps.clear()
        for callback in self.on_close:
            callback(self)
