"""Simulcast on a manual clock, without aiortc: rid and repaired-rid learning, per-layer producer state, consumers switching layer only at
the target layer's keyframe with a continuous output (seq, timestamp, PictureID,
TL0PICIDX), temporal-layer dropping, NACKs after drops, taps on the top layer and the
publisher's feedback. Synthetic VP8 packets of three layers (q/h/f, L1T3)."""

from __future__ import annotations

from itertools import pairwise

import pytest
from fakes import (
    OPUS,
    PUBLISHER_EXT_IDS,
    SUBSCRIBER_EXT_IDS,
    SUBSCRIBER_PAYLOAD_TYPES,
    VP8,
    FakeTransport,
)

from sfu.bwe import LayerSelector
from sfu.consumer import RESYNC_SEQ_SKIP, Consumer
from sfu.demux import RtpDemuxer
from sfu.extensions import EXT_MID, EXT_REPAIRED_RID, EXT_RID
from sfu.participant import MediaSettings, Participant
from sfu.rtcp import (
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    SenderReport,
    parse_rtcp,
    serialize_rtcp,
)
from sfu.rtp import RtpPacket, parse_header
from sfu.simulcast import LAYER_TIMEOUT, SimulcastProducer, choose_layer
from sfu.vp8 import Vp8Descriptor, vp8_frame_size

pytestmark = pytest.mark.twin

RIDS = ("q", "h", "f")
EXT_IDS = {**PUBLISHER_EXT_IDS, EXT_RID: 10, EXT_REPAIRED_RID: 11}
SIZES = [(320, 180), (640, 360), (1280, 720)]
L1T3 = (0, 2, 1, 2)  # the temporal id of each frame, repeating
FRAME = 1 / 30

# -- a publisher of three layers --------------------------------------------------------


def vp8_payload(picture_id: int, tl0: int, tid: int, key: bool, size=(320, 180), begins=True) -> bytes:
    descriptor = Vp8Descriptor(start_of_partition=begins, picture_id=picture_id,
                               picture_id_long=True, tl0picidx=tl0, tid=tid).serialize()
    if key and begins:
        w, h = size
        return descriptor + b"\x00\x00\x00\x9d\x01\x2a" + w.to_bytes(2, "little") + h.to_bytes(2, "little") + b"K" * 30
    return descriptor + b"\x01\x00\x00" + b"D" * 30


class LayerStream:
    """One layer's RTP stream: L1T3 frames, the rid extension on the first packets only
    (as Chromium does), each layer with its own SSRC, seq, timestamp and picture ids."""

    def __init__(self, route, spatial: int, rid_packets: int = 3) -> None:
        self.route, self.spatial = route, spatial
        self.ssrc, self.rtx_ssrc = 0xA0 + spatial, 0xB0 + spatial
        self.seq, self.ts = (65500 + 1000 * spatial) & 0xFFFF, 0x10000000 * (spatial + 1)
        self.picture_id, self.tl0 = 32700 + spatial * 10, 250
        self.frames = 0
        self.rid_packets = rid_packets
        self.sent: dict[int, bytes] = {}

    def frame(self, key: bool = False, packets: int = 1) -> list[int]:
        """One frame of ``packets`` packets; its seqs."""
        tid = 0 if key else L1T3[self.frames % 4]
        if tid == 0:
            self.tl0 = (self.tl0 + 1) & 0xFF
        seqs = []
        for i in range(packets):
            exts = [(1, b"0")]
            if self.rid_packets > 0:
                exts.append((10, RIDS[self.spatial].encode()))
                self.rid_packets -= 1
            data = RtpPacket(payload_type=VP8.payload_type, marker=int(i == packets - 1),
                             sequence_number=self.seq, timestamp=self.ts, ssrc=self.ssrc,
                             extensions=exts, payload=vp8_payload(
                                 self.picture_id, self.tl0, tid, key, SIZES[self.spatial], i == 0)).serialize()
            self.sent[self.seq] = data
            self.route(data)
            seqs.append(self.seq)
            self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 3000) & 0xFFFFFFFF
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        self.frames += 1
        return seqs

    def rtx(self, seq: int, repaired_rid: bool = True) -> None:
        original = self.sent[seq]
        h = parse_header(original)
        exts = [(1, b"0")] + ([(11, RIDS[self.spatial].encode())] if repaired_rid else [])
        self.route(RtpPacket(payload_type=VP8.rtx_payload_type, sequence_number=seq + 7,
                             timestamp=h[3], ssrc=self.rtx_ssrc, extensions=exts,
                             payload=seq.to_bytes(2, "big") + original[h[5]:h[6]]).serialize())


class Simulcast:
    """A simulcast producer fed through a demuxer, three layer streams, a clock."""

    def __init__(self, clock, upstream) -> None:
        self.clock = clock
        self.producer = SimulcastProducer(
            rids=RIDS, participant_id="PA_camera", kind="video", mid="0", codec=VP8,
            ext_ids=EXT_IDS, transport=upstream, rtcp_ssrc=0xC0FFEE, clock=clock, scheduler=clock)
        self.demux = RtpDemuxer()
        self.demux.mid_ext_id = EXT_IDS[EXT_MID]
        self.demux.add(self.producer)
        self.layers = [LayerStream(self.route, i) for i in range(3)]

    def route(self, data: bytes) -> None:
        pt, _, seq, ts, ssrc, off, end, *_ = parse_header(data)
        producer = self.demux.route(data, ssrc, pt)
        if producer is not None:
            producer.receive_rtp(data, pt, seq, ts, ssrc, off, end)

    def frames(self, count: int = 1, *, key: bool = False, only=(0, 1, 2), packets: int = 1) -> None:
        """``count`` frame times: a frame of each layer in ``only``."""
        for i in range(count):
            for spatial in only:
                self.layers[spatial].frame(key=key and i == 0, packets=packets)
            self.clock.advance(FRAME)

    def consumer(self, **limits) -> Consumer:
        consumer = Consumer(self.producer, "PA_viewer", FakeTransport(), 0x50B5C001)
        consumer.set_layers(**limits)
        assert consumer.negotiate(SUBSCRIBER_PAYLOAD_TYPES, SUBSCRIBER_EXT_IDS)
        self.clock.advance(0)
        return consumer


@pytest.fixture
def sim(clock, upstream) -> Simulcast:
    return Simulcast(clock, upstream)


def out(consumer) -> list[tuple[int, int, int, Vp8Descriptor]]:
    """(seq, timestamp, ssrc, descriptor) of every packet the consumer sent."""
    rows = []
    for data in consumer.transport.rtp:
        h = parse_header(data)
        rows.append((h[2], h[3], h[4], Vp8Descriptor.parse(data[h[5]:h[6]])))
    return rows


def assert_continuous(rows) -> None:
    seqs = [r[0] for r in rows]
    assert [(b - a) & 0xFFFF for a, b in pairwise(seqs)] == [1] * (len(seqs) - 1)
    assert len({r[2] for r in rows}) == 1
    pictures = [r[3].picture_id for r in rows if r[3].start_of_partition]
    assert [(b - a) & 0x7FFF for a, b in pairwise(pictures)] == [1] * (len(pictures) - 1)
    assert all(0 < (b[1] - a[1]) & 0xFFFFFFFF < 0x80000000 or a[3].picture_id == b[3].picture_id
               for a, b in pairwise(rows))
    tl0s = [r[3].tl0picidx for r in rows if r[3].start_of_partition and r[3].tid == 0]
    assert all((b - a) & 0xFF == 1 for a, b in pairwise(tl0s))


def test_streams_are_learned_by_rid_then_routed_by_ssrc(sim):
    sim.frames(8, key=True)
    assert [layer.ssrc for layer in sim.producer.layers] == [0xA0, 0xA1, 0xA2]
    assert sim.demux.by_ssrc == {0xA0: sim.producer, 0xA1: sim.producer, 0xA2: sim.producer}
    assert [layer.packets for layer in sim.producer.layers] == [8, 8, 8]  # rid on the first 3 only
    stray = RtpPacket(payload_type=96, sequence_number=1, ssrc=0xDEAD, extensions=[(1, b"0")],
                      payload=vp8_payload(1, 1, 0, False)).serialize()
    sim.route(stray)  # no rid: no layer to put it in
    assert sim.demux.unroutable == 1 and sim.producer.unlearned == 1


def test_each_layer_is_measured(sim, clock):
    sim.frames(1, key=True)
    sim.producer.tick(clock.monotonic())
    sim.frames(29)
    clock.advance(1 - 29 * FRAME)
    sim.producer.tick(clock.monotonic())
    for layer, size in zip(sim.producer.layers, SIZES):
        assert (layer.width, layer.height) == size and layer.keyframes_seen == 1
        assert layer.fps == pytest.approx(29, abs=0.5)
        assert layer.temporal_fps[0] < layer.temporal_fps[1] < layer.temporal_fps[2]
        assert layer.temporal_fps[0] == pytest.approx(29 / 4, abs=0.5)
        assert layer.bitrate > 0 and layer.active(clock.monotonic())
        assert layer.temporal_bitrates[0] < layer.temporal_bitrates[1] < layer.temporal_bitrates[2]
        assert layer.temporal_bitrates[-1] == pytest.approx(layer.bitrate, rel=0.01)
    clock.advance(LAYER_TIMEOUT)
    assert not any(layer.active(clock.monotonic()) for layer in sim.producer.layers)


def test_each_layers_keyframe_size_is_measured(sim, clock):
    def payload_bytes(layer, seqs):
        return sum(parse_header(layer.sent[q])[6] - parse_header(layer.sent[q])[5] for q in seqs)

    layer = sim.layers[2]
    first = layer.frame(key=True, packets=8)
    assert sim.producer.layers[2].keyframe_bytes == 0  # known once the keyframe is complete
    layer.frame(packets=2)
    assert sim.producer.layers[2].keyframe_bytes == payload_bytes(layer, first)
    small = layer.frame(key=True, packets=2)
    layer.frame()
    # a smaller keyframe lowers the figure by a fifth at most
    assert payload_bytes(layer, small) < sim.producer.layers[2].keyframe_bytes == payload_bytes(layer, first) * 4 // 5
    big = layer.frame(key=True, packets=20)
    layer.frame()
    assert sim.producer.layers[2].keyframe_bytes == payload_bytes(layer, big)
    assert sim.producer.layers[2].for_selector() is None or \
        sim.producer.layers[2].for_selector().keyframe_bytes == payload_bytes(layer, big)


def test_rtx_is_mapped_by_repaired_rid_and_restored_into_its_layer(sim, clock):
    sim.frames(2, key=True)
    consumer = sim.consumer(spatial=1)
    sim.frames(1, key=True)
    sent = len(consumer.transport.rtp)
    lost = sim.layers[1].frame()[0]
    sim.layers[1].rtx(lost)
    assert sim.producer.layers[1].rtx_ssrc == 0xB1 and sim.producer.rtx_received == 1
    rows = out(consumer)[sent:]
    assert len(rows) == 2 and rows[0][0] == rows[1][0]  # the same packet again, same number
    sim.layers[2].rtx(sim.layers[2].frame()[0], repaired_rid=False)  # never learned: dropped
    assert sim.producer.rtx_received == 1


def test_the_top_layer_by_default_and_max_height_picks_lower(sim, clock):
    sim.frames(2, key=True)
    top, small = sim.consumer(), sim.consumer(max_height=200)
    assert (top.state.layer, small.state.layer) == (2, 0)
    sim.frames(4)

    def first_size(consumer):
        h = parse_header(consumer.transport.rtp[0])
        return vp8_frame_size(consumer.transport.rtp[0][h[5]:h[6]])

    assert (first_size(top), first_size(small)) == ((1280, 720), (320, 180))  # replayed keyframes
    assert len(out(top)) == len(out(small)) == 2 + 4  # from the keyframe on
    assert choose_layer(sim.producer.layers, clock.monotonic(), max_height=10) == 0  # none fits: lowest


def test_a_switch_up_waits_for_the_target_layers_keyframe(sim, clock, upstream):
    sim.frames(2, key=True)
    consumer = sim.consumer(spatial=0)
    sim.frames(5)
    upstream.rtcp.clear()
    consumer.set_layers(spatial=2)
    assert consumer.pending_layer == 2 and consumer.state.layer == 0
    assert [p.media_ssrc for p in upstream.rtcp_packets(Pli)] == [0xA2]  # on that layer's SSRC
    before = len(out(consumer))
    sim.frames(6)  # delta frames of layer 2: not a place to switch
    assert consumer.state.layer == 0 and len(out(consumer)) == before + 6
    sim.frames(1, key=True, only=(0, 1))  # keyframes of other layers do not count either
    assert consumer.state.layer == 0
    sim.layers[2].frame(key=True, packets=3)
    clock.advance(FRAME)
    sim.frames(5, packets=2)
    assert consumer.state.layer == 2 and consumer.layer_switches == 1
    rows = out(consumer)
    assert_continuous(rows)
    first = rows[before + 7][3]
    assert first.is_keyframe or first.start_of_partition  # the keyframe comes first
    assert consumer.stats()["layer"] == 2


def test_a_late_keyframe_loses_the_switching_consumer_nothing(sim, clock):
    sim.frames(2, key=True)
    consumer = sim.consumer(spatial=0)
    sim.frames(3)
    consumer.set_layers(spatial=2)
    stream, held = sim.layers[2], []
    stream.route = held.append
    key = stream.frame(key=True, packets=3)
    stream.route = sim.route
    for data in held[1:]:  # the keyframe's first packet is lost on the way...
        sim.route(data)
    sim.frames(2, only=(2,))  # ...the frames after it arrive...
    assert consumer.state.layer == 0
    before = len(out(consumer))
    stream.rtx(key[0])  # ...and it comes back by RTX, after them
    rows = out(consumer)
    assert consumer.state.layer == 2 and len(rows) == before + 3 + 2  # all of them, in order
    assert_continuous(rows)


def test_a_switch_down_continues_the_stream_too(sim, clock):
    sim.frames(2, key=True)
    consumer = sim.consumer()
    sim.frames(3, packets=2)
    consumer.set_layers(max_height=360)
    sim.frames(2, packets=2)
    sim.layers[1].frame(key=True, packets=2)
    sim.frames(4, packets=2)
    assert consumer.state.layer == 1
    assert_continuous(out(consumer))


def test_a_switch_of_a_subscriber_losing_packets_moves_the_numbers_past_the_old_layer(sim, clock):
    # what it misses of the old layer cannot be resent after the switch: aiortc would
    # wait for it until 512 later packets (see Consumer._resync)
    sim.frames(2, key=True)
    consumer = sim.consumer()
    sim.frames(3, packets=2)
    sent = out(consumer)
    consumer.receive_rtcp(Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=[sent[-2][0]]))
    consumer.set_layers(max_height=360)
    sim.layers[1].frame(key=True, packets=2)
    after = out(consumer)[len(sent) + 1:]  # past the one resent
    assert consumer.state.layer == 1
    assert after[0][0] == (sent[-1][0] + 1 + RESYNC_SEQ_SKIP) & 0xFFFF
    assert [(b[0] - a[0]) & 0xFFFF for a, b in pairwise(after)] == [1] * (len(after) - 1)
    clock.advance(3.0)  # no NACK for a while: the next switch continues without a jump
    sim.frames(1, packets=2)
    consumer.set_layers()
    sim.frames(2, packets=2)
    sim.layers[2].frame(key=True, packets=2)
    sim.frames(2, packets=2)
    assert consumer.state.layer == 2
    assert_continuous(out(consumer)[len(sent) + 1:])


def test_the_timestamp_across_a_switch_follows_the_sender_reports(sim, clock):
    sim.frames(2, key=True)
    producer = sim.producer
    consumer = sim.consumer(spatial=0)
    sim.frames(3)
    # both layers' clocks: layer 0's timestamp T0 and layer 1's T1 are the same instant
    ntp = 0xE000000000000000
    for spatial in (0, 1):
        layer = sim.layers[spatial]
        producer.receive_sender_report(SenderReport(ssrc=layer.ssrc, ntp_timestamp=ntp,
                                                    rtp_timestamp=layer.ts), clock.monotonic())
    last_out = out(consumer)[-1][1]
    consumer.set_layers(spatial=1)
    sim.layers[1].ts = (sim.layers[1].ts + 2 * 3000) & 0xFFFFFFFF  # two frames after the SR
    sim.layers[1].frame(key=True)
    # the last frame sent was 3000 ticks before the SR instant: 3000 + 6000 after it
    assert (out(consumer)[-1][1] - last_out) & 0xFFFFFFFF == 9000


def test_temporal_layers_are_dropped_with_no_gap(sim, clock):
    sim.frames(1, key=True)
    consumer = sim.consumer(temporal=0)
    sim.frames(16, packets=2)
    rows = out(consumer)
    assert {r[3].tid for r in rows} == {0}
    assert len(rows) == 1 + 2 * 4  # the keyframe (replayed) and one frame in four
    assert_continuous(rows)
    assert consumer.state.temporal_dropped == 2 * 12
    consumer.set_layers(temporal=1)  # up at the next TL0 picture
    sim.frames(8, packets=2)
    assert {r[3].tid for r in out(consumer)[len(rows):]} == {0, 1}
    assert_continuous(out(consumer))


def test_max_fps_chooses_the_temporal_layer(sim, clock):
    sim.frames(1, key=True)
    sim.producer.tick(clock.monotonic())
    sim.frames(30)
    sim.producer.tick(clock.monotonic())  # 7.5, 15, 30 frames a second
    consumer = sim.consumer(max_fps=15)
    assert consumer.state.temporal_limit == 1
    consumer.set_layers(max_fps=5)
    assert consumer.state.temporal_limit == 0
    consumer.set_layers()
    assert consumer.state.temporal_limit == 3


def test_a_nack_after_drops_gets_the_packet_it_names(sim, clock):
    sim.frames(1, key=True)
    consumer = sim.consumer(temporal=0)
    sim.frames(9, packets=3)
    rows = out(consumer)
    wanted = rows[-4]  # a packet of the last TL0 frame but one
    consumer.transport.rtp.clear()
    consumer.receive_rtcp(Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=[wanted[0], 0x1234]))
    again = out(consumer)
    assert len(again) == 1 and again[0][0] == wanted[0]
    assert again[0][3].picture_id == wanted[3].picture_id and again[0][1] == wanted[1]
    assert consumer.retransmitted == 1


def test_a_layer_that_stops_is_left_for_the_next_one_down(sim, clock, upstream):
    sim.frames(2, key=True)
    consumer = sim.consumer()
    assert consumer.state.layer == 2
    sim.frames(40, only=(0, 1))  # the publisher dropped f (its REMB fell, say)
    sim.producer.tick(clock.monotonic())
    assert consumer.pending_layer == 1 and upstream.rtcp_packets(Pli)[-1].media_ssrc == 0xA1
    sim.layers[1].frame(key=True)
    sim.frames(3, only=(0, 1))
    assert consumer.state.layer == 1 and sim.producer.primary.spatial == 1
    assert_continuous(out(consumer))


def test_a_subscribers_own_limits_leave_the_layer_chosen_for_its_bandwidth(sim, clock):
    sim.frames(2, key=True)
    consumer = sim.consumer(spatial=1)
    consumer.selector = LayerSelector()  # its layer follows its estimate
    sim.frames(3)
    assert consumer.state.layer == 1
    consumer.set_limits(max_fps=15)  # the client subscribes again, with a frame-rate limit
    assert (consumer.target_layer, consumer.max_fps, consumer.pending_layer) == (1, 15, None)
    sim.layers[2].frame(key=True)
    sim.frames(3)
    assert consumer.state.layer == 1  # not moved to the top by the new limits
    plain = sim.consumer()  # no selector: the limits take effect at once
    plain.set_limits(max_height=180)
    assert plain.pending_layer == 0


def test_a_bandwidth_choice_whose_layer_is_not_flowing_never_moves_up(sim, clock, upstream):
    # the estimate allows q; q stops a moment (or has not started): forwarding f, the
    # lowest layer that flows, would flood the link the estimate was made for
    sim.frames(2, key=True)
    consumer = sim.consumer(spatial=0)
    consumer.selector = LayerSelector()  # a subscriber whose layers follow its estimate
    sim.frames(3)
    assert consumer.state.layer == 0
    sim.frames(40, only=(1, 2))  # q stopped
    sim.producer.tick(clock.monotonic())
    sim.layers[2].frame(key=True)
    sim.frames(3, only=(1, 2))
    assert consumer.state.layer == 0 and consumer.pending_layer is None
    # one not started yet waits for its layer rather than starting on the default top
    late = Consumer(sim.producer, "PA_viewer_2", FakeTransport(), 0x50B5C002)
    late.selector = LayerSelector()
    late.set_layers(spatial=1)
    sim.frames(40, only=(2,))  # only f flows
    sim.producer.tick(clock.monotonic())
    late.set_layers(spatial=1)
    assert late.state.layer == 1
    # without a selector (no bandwidth rule) the lowest layer flowing is taken, as before
    plain = sim.consumer(spatial=0)
    assert plain.state.layer == 2


class Tap:
    def __init__(self):
        self.ssrcs, self.changes, self.keyframes = [], [], 0

    def rtp(self, data, arrival, keyframe):
        self.ssrcs.append(parse_header(data)[4])
        self.keyframes += keyframe

    def sender_report(self, ntp, rtp_ts, arrival):
        pass

    def stream_changed(self, ssrc):
        self.changes.append(ssrc)

    def producer_closed(self):
        pass


def test_a_tap_follows_the_highest_layer_sent(sim, clock):
    tap = Tap()
    sim.producer.add_tap(tap)
    sim.frames(1, key=True, only=(0,))
    sim.frames(2, only=(0,))
    assert set(tap.ssrcs) == {0xA0}
    sim.frames(1, key=True, only=(2,))
    sim.frames(3)
    assert tap.changes == [0xA2] and tap.ssrcs[3:] == [0xA2] * 4  # from its keyframe on
    sim.frames(40, only=(0, 1))  # the top layer stops: down to the next one at its keyframe
    sim.producer.tick(clock.monotonic())
    sim.layers[1].frame(key=True)
    assert tap.changes == [0xA2, 0xA1] and tap.ssrcs[-1] == 0xA1
    assert sim.producer.reception.ssrc == 0xA1 and sim.producer.cache is sim.producer.layers[1].cache
    assert tap.keyframes == 3


def test_the_publisher_hears_of_every_layer_and_gets_a_remb_for_all(clock, upstream):
    participant = Participant("camera", settings=MediaSettings(simulcast_bitrate=3_000_000),
                              clock=clock, scheduler=clock)
    sim = Simulcast(clock, upstream)
    participant.add_producer(sim.producer)
    participant.demux.mid_ext_id = EXT_IDS[EXT_MID]
    sim.demux = participant.demux
    sim.frames(3, key=True)
    rr, remb = parse_rtcp(participant.publisher_feedback(clock.monotonic()))
    assert isinstance(rr, ReceiverReport) and isinstance(remb, Remb)
    assert sorted(b.ssrc for b in rr.reports) == [0xA0, 0xA1, 0xA2]
    assert sorted(remb.ssrcs) == [0xA0, 0xA1, 0xA2] and remb.bitrate == 3_000_000
    participant._on_publisher_rtcp(serialize_rtcp([SenderReport(ssrc=0xA1, ntp_timestamp=5 << 32,
                                                                rtp_timestamp=9)]))
    assert sim.producer.sender_report_for(1).rtp_timestamp == 9


def test_an_audio_producer_is_never_simulcast(make_producer):
    assert not make_producer("audio").simulcast and OPUS.name == "OPUS"


def test_a_layer_is_weighed_at_its_typical_second_or_above_the_lowest_its_last_if_larger(sim):
    def second(packets: int, only=(0, 1)) -> None:
        sim.frames(30, only=only, key=False, packets=packets)
        sim.producer.tick(sim.clock.monotonic())

    def weighed() -> list[int]:
        return [layer.bitrate for layer in sim.producer.selector_layers(sim.clock.monotonic())]

    sim.frames(1, key=True, only=(0, 1))
    sim.producer.tick(sim.clock.monotonic())  # the first window starts
    second(2)
    second(2)
    assert weighed() == []  # measured twice: not yet
    second(2)
    low, high = weighed()
    second(8)  # one large second (a burst, or a ramp): the larger layer weighed at it
    burst_low, burst_high = weighed()
    assert burst_high > 3 * high
    assert burst_low == pytest.approx(low, rel=0.05)  # the lowest at its typical second
    second(2)  # then the typical second again: the burst was one of five
    assert weighed() == pytest.approx([low, high], rel=0.05)
    second(1)  # a smaller last second: the median holds
    assert weighed() == pytest.approx([low, high], rel=0.05)
