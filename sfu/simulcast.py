"""Simulcast: one publisher track sent as several encodings (spatial layers), each a
stream of its own, and the per-subscriber choice among them.

SDP: `sfu.simulcast_sdp` finds the rids an offer simulcasts (lowest layer first) and
amends the answer; the transport registers the rid header extensions on the m-line
before aiortc answers (aiortc knows neither).

Packets: the rid header extension rides only on each stream's first packets
(Chromium: the first 14-47), so `SimulcastProducer.learn_stream` maps the SSRC to its
layer then (the demuxer routes by SSRC afterwards); RTX streams by repaired-rid. Each
`Layer` keeps its own reception statistics, NACK cache, keyframes, sender report,
bitrate, frame rates per temporal layer and picture size (from its keyframes).
aiortc's jitter buffer never sees these packets (the transport bypasses it).

Consumers forward one layer each (``ConsumerState.layer``, checked first in the
compiled fan-out loop) and change layer only at a keyframe of the new one
(`SimulcastProducer.receive_rtp` switches them just before that keyframe is fanned
out), asking the publisher for it with a PLI on that layer's SSRC. Taps (a recorder,
a relay export) get the highest layer the publisher sends, changing only at keyframes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .bwe.selector import Layer as SelectorLayer
from .bwe.selector import needed_layers, publisher_remb
from .errors import MalformedPacket
from .extensions import EXT_REPAIRED_RID, EXT_RID
from .forward import ALL_TEMPORAL, NackCache, fan_out
from .keyframe import KeyframeRequestThrottle
from .producer import Producer, SenderReportInfo
from .reception import ReceptionStats
from .rtcp import Pli, SenderReport, serialize_rtcp
from .rtp import abs_send_time, find_extension
from .vp8 import vp8_frame_size, vp8_temporal_id

__all__ = ["LAYER_TIMEOUT", "Layer", "SimulcastProducer", "choose_layer", "choose_temporal"]

LAYER_TIMEOUT = 1.0
"""A layer that sent nothing for this long is inactive (the publisher dropped it)."""
MEASURES_KEPT = 5
"""A layer is weighed for subscribers' layer choices (`Layer.for_selector`) at the
median of its last this many one-second measures while it flowed; a layer above the
lowest at the last one if larger. One second is noisy (Chromium's 320x180, 200-390
kbit/s most seconds, was measured at 640-900 now and then: at its word, the slow
viewer's lowest option moved to 640x360), and a median of five lets a layer that
grows look cheaper than it is for three seconds (Chromium's 1280x720 ramping up at a
publisher's start: the slow viewer was put on it). A larger layer weighed too high
costs an up-switch, the lowest weighed too high a pause."""
MEASURES_TRUSTED = 3
"""(At most ``MEASURES_KEPT``.) A layer is offered to subscribers' layer choices once it was measured this many
times: a publisher's first seconds are its encoder's ramp (Chromium's 1280x720 at 390
kbit/s in its first second, 810 in the next: a 300 kbit/s viewer was put on it)."""


# -- layers --------------------------------------------------------------------------


@dataclass(eq=False)
class Layer:
    """One spatial layer of a simulcast producer: its stream, caches and measures.
    ``bitrate`` and ``fps``, and per temporal id the cumulative ``temporal_fps`` and
    ``temporal_bitrates`` (up to T0, T1, ...: what dropping the layers above costs) are
    measured over the last second by `SimulcastProducer.tick` (the names of
    `sfu.bwe.selector.Layer`)."""

    spatial: int
    rid: str
    cache: NackCache
    keyframes: KeyframeRequestThrottle
    ssrc: int | None = None
    rtx_ssrc: int | None = None
    reception: ReceptionStats | None = None
    last_sr: SenderReportInfo | None = None
    packets: int = 0
    octets: int = 0
    keyframes_seen: int = 0
    last_keyframe_seq: int = -1
    last_keyframe_at: float = float("-inf")
    last_packet_at: float = float("-inf")
    width: int = 0
    height: int = 0
    bitrate: int = 0
    last_bitrate: int = 0
    """The last non-zero ``bitrate`` (what the layer costs when the publisher resumes it)."""
    peak_bitrate: int = 0
    """The most it was measured at (what the publisher's REMB must leave it room for)."""
    fps: float = 0.0
    temporal_fps: tuple[float, ...] = ()
    temporal_bitrates: tuple[int, ...] = ()
    _frames: list[int] = field(default_factory=lambda: [0] * (ALL_TEMPORAL + 1))
    _tid_octets: list[int] = field(default_factory=lambda: [0] * (ALL_TEMPORAL + 1))
    _last_ts: int = -1
    _tid: int = 0  # of the frame being received
    _window_octets: int = 0
    _window_start: float | None = None
    _windows: list = field(default_factory=list)  # the last MEASURES_KEPT (bitrate, fps, ...)
    keyframe_bytes: int = 0
    """How big its keyframes are (payload bytes): the last one, or a recent larger one
    decaying by a fifth per keyframe. A keyframe must cross a subscriber's link in
    one go (`sfu.bwe.LayerSelector`'s ``keyframe_s``)."""
    _key_ts: int = -1  # the keyframe being received (its RTP timestamp), -1: none
    _key_bytes: int = 0

    def for_selector(self, cautious: bool = True) -> SelectorLayer | None:
        """This layer as `sfu.bwe.LayerSelector` weighs it: the median of its last
        measures while it flowed, ``cautious`` the last if larger (`MEASURES_KEPT`; a
        layer the publisher paused still costs what it did), None before it was
        measured `MEASURES_TRUSTED` times."""
        if len(self._windows) < MEASURES_TRUSTED:
            return None
        # the typical second; ``cautious``, the last one if it was larger: a layer the
        # encoder is still ramping up (Chromium's 1280x720: 200, 376, 690 kbit/s in its
        # first three seconds) is weighed at what it is becoming, not at its past
        median = sorted(self._windows)[len(self._windows) // 2]
        bitrate, fps, temporal_fps, temporal_bitrates = \
            max(median, self._windows[-1]) if cautious else median
        return SelectorLayer(self.spatial, bitrate, self.width, self.height, fps or 30.0,
                             temporal_bitrates, temporal_fps, self.keyframe_bytes)

    def active(self, now: float) -> bool:
        return now - self.last_packet_at < LAYER_TIMEOUT

    def measure(self, now: float) -> None:
        """Close the measuring window at ``now``: bitrate and frame rates."""
        if self._window_start is not None and now > self._window_start:
            elapsed = now - self._window_start
            self.bitrate = int(self._window_octets * 8 / elapsed)
            counts, octets = self._frames, self._tid_octets
            top = max((t for t, n in enumerate(counts) if n), default=0)
            fps, bitrates, frames, size = [], [], 0, 0
            for t in range(top + 1):
                frames, size = frames + counts[t], size + octets[t]
                fps.append(frames / elapsed)
                bitrates.append(int(size * 8 / elapsed))
            self.temporal_fps, self.temporal_bitrates = tuple(fps), tuple(bitrates)
            self.fps = fps[-1]
            if self.bitrate:
                self.last_bitrate = self.bitrate
                self.peak_bitrate = max(self.peak_bitrate, self.bitrate)
                self._windows = [*self._windows[1 - MEASURES_KEPT:],
                                 (self.bitrate, self.fps, self.temporal_fps, self.temporal_bitrates)]
        self._window_start, self._window_octets = now, 0
        self._frames = [0] * (ALL_TEMPORAL + 1)
        self._tid_octets = [0] * (ALL_TEMPORAL + 1)

    def describe(self, now: float) -> dict:
        return {"spatial": self.spatial, "rid": self.rid, "ssrc": self.ssrc,
                "active": self.active(now), "width": self.width, "height": self.height,
                "bitrate": self.bitrate, "last_bitrate": self.last_bitrate, "fps": round(self.fps, 1), "packets": self.packets,
                "keyframes": self.keyframes_seen}


def choose_layer(layers: Sequence[Layer], now: float, *, spatial: int | None = None,
                 max_height: int | None = None) -> int | None:
    """The spatial layer to forward: the highest active one at most ``spatial`` (None:
    any) and at most ``max_height`` high (a layer whose height is not known yet is
    estimated from a known one, halving per step down); if none fits, the lowest active
    one. None while no layer is active."""
    active = [layer for layer in layers if layer.active(now)]
    if not active:
        return None
    known = next((layer for layer in reversed(layers) if layer.height), None)

    def height(layer: Layer) -> int:
        if layer.height or known is None:
            return layer.height
        return known.height >> (known.spatial - layer.spatial) if known.spatial > layer.spatial \
            else known.height << (layer.spatial - known.spatial)

    fits = [layer for layer in active
            if (spatial is None or layer.spatial <= spatial)
            and (max_height is None or height(layer) <= max_height)]
    return (fits[-1] if fits else active[0]).spatial


def choose_temporal(layer: Layer, max_fps: float | None = None,
                    temporal: int | None = None) -> int:
    """The highest temporal layer id to forward of ``layer``: at most ``temporal`` and,
    when its frame rates are known, the most frames at or under ``max_fps`` (10%
    tolerance; the lowest temporal layer at least)."""
    limit = ALL_TEMPORAL if temporal is None else max(0, min(ALL_TEMPORAL, temporal))
    if max_fps is None or not layer.temporal_fps:
        return limit
    fitting = [t for t, fps in enumerate(layer.temporal_fps) if fps <= max_fps * 1.1]
    if len(fitting) == len(layer.temporal_fps):
        return limit
    return min(limit, fitting[-1] if fitting else 0)


def _capture_time(sr: SenderReportInfo, ts: int, rate: int) -> float:
    """Seconds (NTP) of RTP timestamp ``ts`` of the stream that sent ``sr``."""
    delta = ((ts - sr.rtp_timestamp + 0x80000000) & 0xFFFFFFFF) - 0x80000000
    return (sr.ntp_timestamp >> 32) + (sr.ntp_timestamp & 0xFFFFFFFF) / 2**32 + delta / rate


# -- the producer --------------------------------------------------------------------


class SimulcastProducer(Producer):
    """A producer whose publisher sends ``rids`` (lowest layer first) as separate
    streams. Same constructor as `Producer` plus ``rids``. The attributes a plain
    producer has for its one stream (``reception``, ``cache``, ``last_sr``,
    ``last_keyframe_*``) follow the *primary* layer: the highest one the publisher
    sends, changed at its keyframes; taps get that layer's packets."""

    simulcast = True

    def __init__(self, *, rids: Iterable[str], **options) -> None:
        super().__init__(**options)
        interval = self.keyframes.interval
        size = self.cache.size if self.cache is not None else 1024
        self.layers = [Layer(i, rid, NackCache(size), KeyframeRequestThrottle(interval))
                       for i, rid in enumerate(rids)]
        if not self.layers:
            raise ValueError("a simulcast producer needs at least one rid")
        self._by_rid = {layer.rid: layer for layer in self.layers}
        self._by_ssrc: dict[int, Layer] = {}
        self._by_rtx: dict[int, Layer] = {}
        self._rid_id = self.ext_ids.get(EXT_RID, 0)
        self._repaired_id = self.ext_ids.get(EXT_REPAIRED_RID, 0)
        self._vp8 = self.codec.name == "VP8"
        self._layer_timers: dict[int, object] = {}
        self.primary: Layer | None = None
        self.unlearned = 0  # packets of a stream whose rid never came

    # -- streams -------------------------------------------------------------------

    def learn_stream(self, data: bytes, ssrc: int, payload_type: int) -> bool:
        """A packet of an SSRC not seen yet: map it to its layer by the rid (media) or
        repaired-rid (RTX) header extension. False if it names no layer of ours."""
        rtx = payload_type != self.codec.payload_type
        if rtx and payload_type != self.codec.rtx_payload_type:
            return False
        value = find_extension(data, self._repaired_id if rtx else self._rid_id) \
            if (self._repaired_id if rtx else self._rid_id) else None
        layer = self._by_rid.get(value.decode("ascii", "replace")) if value else None
        if layer is None:
            self.unlearned += 1
            return False
        if rtx:
            self._by_rtx.pop(layer.rtx_ssrc, None)
            layer.rtx_ssrc = ssrc
            self._by_rtx[ssrc] = layer
            return True
        if layer.ssrc is not None and layer.ssrc != ssrc:  # the encoder restarted
            self._by_ssrc.pop(layer.ssrc, None)
            self._restart_layer(layer)
        layer.ssrc = ssrc
        self._by_ssrc[ssrc] = layer
        self.ssrcs.add(ssrc)
        return True

    def _restart_layer(self, layer: Layer) -> None:
        layer.reception = None
        layer.cache.clear()
        layer.last_keyframe_seq, layer.last_keyframe_at = -1, float("-inf")
        for state in self._states:
            if state.layer == layer.spatial:
                state.restart()
        if layer is self.primary and self._taps:
            self._tell_taps("stream_changed", layer.ssrc)
        self.request_keyframe(layer.spatial)

    # -- packet path -----------------------------------------------------------------

    def receive_rtp(self, data: bytes, payload_type: int, seq: int, ts: int, ssrc: int,
                    payload_offset: int, payload_end: int) -> None:
        if self.closed:
            return
        if payload_type != self.codec.payload_type:
            layer = self._by_rtx.get(ssrc)
            if layer is not None and layer.ssrc is not None and layer.reception is not None:
                self._receive_rtx(data, ts, payload_offset, payload_end, layer.ssrc)
            return
        layer = self._by_ssrc.get(ssrc)
        if layer is None:
            return
        if layer.reception is None:
            layer.reception = ReceptionStats(ssrc)
            if layer is self.primary:
                self.reception = layer.reception
        lost = layer.reception.update(seq)
        if lost:
            self._nack_upstream(ssrc, lost)
        layer.cache.put(seq, data)
        now = self.clock.monotonic()
        length = payload_end - payload_offset
        layer.packets += 1
        layer.octets += length
        layer._window_octets += length
        layer.last_packet_at = now
        self.packets += 1
        self.octets += length
        if ts != layer._last_ts:  # a new frame
            layer._last_ts = ts
            if layer._key_ts >= 0:  # the keyframe before it is complete
                layer.keyframe_bytes = max(layer._key_bytes, layer.keyframe_bytes * 4 // 5)
                layer._key_ts = -1
            layer._tid = max(vp8_temporal_id(data, payload_offset), 0) if self._vp8 else 0
            layer._frames[layer._tid] += 1
        layer._tid_octets[layer._tid] += length
        keyframe = self._is_keyframe is not None and self._is_keyframe(
            data[payload_offset:payload_offset + 16])
        if keyframe:
            self._keyframe(layer, seq, ts, now, data[payload_offset:payload_offset + 20])
        if ts == layer._key_ts:
            layer._key_bytes += length
        if self._taps and layer is self.primary:
            self._tap_rtp(data, keyframe)
        if self._states:
            stamp = abs_send_time(self.clock.wall()) if self.stamps_abs_send_time else 0
            try:
                fan_out(self._states, data, seq, ts, length, keyframe, stamp, layer.spatial,
                        payload_offset if self._vp8 else -1, now=now)
            except MalformedPacket:
                self.malformed += 1
        if keyframe:
            self._switch_consumers(layer, ts)

    def _switch_consumers(self, layer: Layer, ts: int) -> None:
        """Move the consumers waiting for ``layer`` onto it from its keyframe: the cached
        packets from the keyframe on are replayed to them, so a keyframe that came late
        (recovered by RTX after the packets that follow it) loses them nothing."""
        for consumer in self.consumers:
            if consumer.pending_layer == layer.spatial:
                consumer.switch_layer(layer.spatial, ts)
                if not self.replay_from_keyframe(consumer.state):
                    consumer.request_keyframe()  # a packet since is still missing

    def _keyframe(self, layer: Layer, seq: int, ts: int, now: float, head: bytes) -> None:
        """A keyframe of ``layer`` starts: note it and, if it is the highest layer sent,
        move the primary (and taps) onto it."""
        layer.keyframes_seen += 1
        self.keyframes_seen += 1
        layer.keyframes.satisfied()
        if layer.last_keyframe_seq >= 0 and ((seq - layer.last_keyframe_seq) & 0xFFFF) >= 0x8000:
            return  # an older keyframe resent: the latest one stays the latest
        layer.last_keyframe_seq, layer.last_keyframe_at = seq, now
        if layer._key_ts != ts:
            layer._key_ts, layer._key_bytes = ts, 0
        if self._vp8:
            size = vp8_frame_size(head)
            if size is not None:
                layer.width, layer.height = size
        primary = self.primary
        if primary is None or layer.spatial > primary.spatial or (
                primary is not layer and not primary.active(now)):
            self._set_primary(layer)
        if layer is self.primary:
            self.keyframes.satisfied()
            self.last_keyframe_seq, self.last_keyframe_at = seq, now

    def _set_primary(self, layer: Layer) -> None:
        changed = self.primary is not None
        self.primary = layer
        self.reception, self.cache, self.last_sr = layer.reception, layer.cache, layer.last_sr
        if changed and self._taps:
            self._tell_taps("stream_changed", layer.ssrc)

    def receive_sender_report(self, report: SenderReport, arrival: float) -> None:
        layer = self._by_ssrc.get(report.ssrc)
        if layer is None:
            return
        layer.last_sr = SenderReportInfo(report.ntp_timestamp, report.rtp_timestamp, arrival)
        if layer.reception is not None:
            layer.reception.sender_report(report.ntp_timestamp, arrival)
        if layer is self.primary:
            self.last_sr = layer.last_sr
            if self._taps:
                self._tell_taps("sender_report", report.ntp_timestamp, report.rtp_timestamp,
                                self.clock.wall())

    # -- per layer -------------------------------------------------------------------

    def _layer(self, layer: int | None) -> Layer | None:
        if layer is None:
            return self.primary
        return self.layers[layer] if 0 <= layer < len(self.layers) else None

    def keyframe_age(self, layer: int | None = None) -> float:
        chosen = self._layer(layer)
        at = chosen.last_keyframe_at if chosen is not None else float("-inf")
        return self.clock.monotonic() - at

    def cache_for(self, layer: int) -> NackCache | None:
        chosen = self._layer(layer)
        return chosen.cache if chosen is not None else None

    def sender_report_for(self, layer: int) -> SenderReportInfo | None:
        chosen = self._layer(layer)
        return chosen.last_sr if chosen is not None else None

    def report_blocks(self, now: float) -> list:
        return [layer.reception.report_block(now) for layer in self.layers
                if layer.reception is not None]

    def replay_from_keyframe(self, state) -> bool:
        index = getattr(state, "layer", None)  # a tap (relay export) replays the primary
        layer = self._layer(index)
        if layer is None:
            return False
        return self._replay(state, layer.cache, layer.reception, layer.last_keyframe_seq,
                            layer.last_keyframe_at, index, self._vp8)

    def request_keyframe(self, layer: int | None = None) -> None:
        """A PLI on ``layer``'s SSRC (None: the primary's, or every layer's before one
        is known), at most once per interval per layer."""
        if self.closed:
            return
        chosen = self._layer(layer)
        for target in [chosen] if chosen is not None else self.layers:
            self._request_layer_keyframe(target)

    def _request_layer_keyframe(self, layer: Layer) -> None:
        if self.closed or layer.ssrc is None:
            return
        now = self.clock.monotonic()
        if layer.keyframes.request(now):
            self.keyframes.sent += 1
            self.transport.send_rtcp(serialize_rtcp([Pli(sender_ssrc=self.rtcp_ssrc,
                                                         media_ssrc=layer.ssrc)]))
        elif layer.spatial not in self._layer_timers:
            delay = layer.keyframes.due(now)
            if delay is not None:
                def due(layer: Layer = layer) -> None:
                    self._layer_timers.pop(layer.spatial, None)
                    if layer.keyframes.pending:
                        self._request_layer_keyframe(layer)

                self._layer_timers[layer.spatial] = self.scheduler.call_later(delay, due)

    def timestamp_gap(self, old: int, old_ts: int, new: int, new_ts: int) -> int:
        """RTP ticks from the last packet forwarded of layer ``old`` (its timestamp
        ``old_ts``) to the keyframe ``new_ts`` of layer ``new``. The layers' own
        timestamps are unrelated, their sender reports share one NTP clock; before both
        layers have one, a frame interval. At least 1, at most 10 seconds."""
        rate = self.codec.clock_rate
        a, b = self._layer(old), self._layer(new)
        if a is None or b is None:
            return 1
        if a.last_sr is not None and b.last_sr is not None:
            seconds = (_capture_time(b.last_sr, new_ts, rate)
                       - _capture_time(a.last_sr, old_ts, rate))
            ticks = round(seconds * rate)
        else:
            ticks = rate // max(1, round(a.fps or 30))
        return max(1, min(ticks, 10 * rate))

    def best_layer(self, now: float, *, spatial: int | None = None,
                   max_height: int | None = None) -> int | None:
        """`choose_layer` over this producer's layers."""
        return choose_layer(self.layers, now, spatial=spatial, max_height=max_height)

    def tick(self, now: float) -> None:
        """Once a second: measure each layer, let consumers follow layers that stop or
        come back, and move the primary down when its layer stopped."""
        for layer in self.layers:
            layer.measure(now)
        for consumer in list(self.consumers):
            consumer.update_layer()
        primary = self.primary
        if primary is not None and not primary.active(now):
            best = self.best_layer(now)
            if best is not None:
                self.request_keyframe(best)

    def selector_layers(self, now: float) -> list[SelectorLayer]:
        """The layers a subscriber's `sfu.bwe.LayerSelector` chooses from."""
        layers = []
        for layer in self.layers:  # the lowest measured one at its typical second
            weighed = layer.for_selector(cautious=bool(layers))
            if weighed is not None:
                layers.append(weighed)
        return layers

    def needed_bitrate(self, now: float) -> int | None:
        """The REMB under which the publisher sends every layer someone needs and no
        more (`sfu.bwe.publisher_remb`): the layers chosen, or awaited, by the
        subscribers' selectors; the top one for a tap (a recording gets the top layer
        whatever the subscribers) and for a consumer whose subscriber sent no estimate
        yet (it takes the top by default). None when it cannot say (no consumer: keep
        every layer flowing for the next one; a needed layer never measured; the top
        layer needed: its encoder ramps up under the REMB, so a REMB made of what it
        measured would hold it down, lower and lower).

        The layers are weighed at the most they were measured at: the REMB must let
        the encoder give each needed layer all it wants, or the measures and the REMB
        would shrink each other."""
        consumers = [c for c in self.consumers if not c.closed]
        if not consumers and not self._taps:
            return None
        needed = set(needed_layers(c.selector for c in consumers if c.selector is not None))
        top = len(self.layers) - 1
        if self._taps or top in needed or any(c.selector is None for c in consumers):
            return None
        layers = [SelectorLayer(layer.spatial, layer.peak_bitrate) for layer in self.layers
                  if layer.peak_bitrate]
        if any(spatial not in {layer.spatial for layer in layers} for spatial in needed):
            return None
        return publisher_remb(needed, layers)

    def describe_layers(self) -> list[dict]:
        now = self.clock.monotonic()
        return [layer.describe(now) for layer in self.layers]

    def close(self) -> None:
        for timer in self._layer_timers.values():
            timer.cancel()
        self._layer_timers.clear()
        for layer in self.layers:
            layer.cache.clear()
        super().close()

