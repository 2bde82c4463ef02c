"""A subscriber's estimate shared among its consumers (sfu.bwe.allocator), wired through
a real Participant and SimulcastProducer on a manual clock: synthetic REMBs and receiver
reports come in as RTCP bytes, the consumer's layer follows the estimate down and up,
pauses under the lowest layer (track_paused) and resumes (track_resumed), audio never
stops, and the publisher's REMB covers only the layers someone needs. No network."""

from __future__ import annotations

import pytest
from fakes import (
    OPUS,
    PUBLISHER_EXT_IDS,
    SUBSCRIBER_EXT_IDS,
    SUBSCRIBER_PAYLOAD_TYPES,
    FakeTransport,
    Publisher,
)
from test_simulcast import FRAME, Simulcast

from sfu.bwe import (
    PAUSED_REASON,
    Estimator,
    LayerSelector,
    SubscriberBandwidth,
    publisher_remb,
)
from sfu.bwe import Layer as SelectorLayer
from sfu.bwe.allocator import TWCC_FIRST_SHARE, VIDEO_SHARE
from sfu.bwe.twcc import PacketResult
from sfu.consumer import Consumer
from sfu.participant import MediaSettings, Participant
from sfu.producer import Producer
from sfu.rtcp import ReceiverReport, Remb, ReportBlock, parse_rtcp, serialize_rtcp

PACKETS = (4, 12, 36)  # per frame and layer: about 38, 113 and 338 kbit/s
VIEWER_SSRC, AUDIO_SSRC = 0x50B5C001, 0x50B5C002


class Call:
    """A three-layer publisher, one subscriber (a Participant) with a consumer of it
    and of an audio track, and the subscriber's feedback as RTCP bytes."""

    def __init__(self, clock, upstream) -> None:
        self.clock = clock
        self.sim = Simulcast(clock, upstream)
        self.audio = Producer(participant_id="PA_camera", kind="audio", mid="1", codec=OPUS,
                              ext_ids=PUBLISHER_EXT_IDS, transport=upstream, rtcp_ssrc=0xC0FFEE,
                              ssrcs=(0xA11D,), clock=clock, scheduler=clock)
        self.mic = Publisher(self.audio, ssrc=0xA11D, step=960)
        self.viewer = Participant("viewer", clock=clock, scheduler=clock)
        # below the default 50 kbit/s floor: these layers are small
        self.viewer.bandwidth = SubscriberBandwidth(Estimator(minimum=1_000))
        self.events: list[tuple[str, str | None]] = []
        self.viewer.on_bandwidth = lambda consumer, reason: self.events.append(
            (consumer.producer.id, reason))
        self.video = self._consume(self.sim.producer, VIEWER_SSRC)
        self.sound = self._consume(self.audio, AUDIO_SSRC)
        self.frames = 0
        self.remb: int | None = None
        self.loss = 0  # fraction lost (0..255) in the receiver reports
        self.honest = False  # receiver reports count only the video packets forwarded
        self.remb_ssrcs = [VIEWER_SSRC, AUDIO_SSRC]  # as a receiver whose REMB covers all

    def _consume(self, producer, ssrc) -> Consumer:
        consumer = Consumer(producer, self.viewer.id, FakeTransport(), ssrc)
        self.viewer.add_consumer(consumer)
        assert consumer.negotiate(SUBSCRIBER_PAYLOAD_TYPES, SUBSCRIBER_EXT_IDS)
        self.clock.advance(0)
        return consumer

    def run(self, seconds: float, until=None) -> float | None:
        """Publish for ``seconds`` (a keyframe per layer every 10 frames, the layers
        measured each second, a REMB every 0.5 s, an RR per second); with ``until``,
        stop as soon as it holds and return the time it took (None if it never did)."""
        start = self.clock.monotonic()
        for _ in range(round(seconds / FRAME)):
            key = self.frames % 10 == 0
            for spatial, packets in enumerate(PACKETS):
                self.sim.layers[spatial].frame(key=key, packets=packets)
            self.mic.send(b"\xf8" + b"o" * 60)
            self.frames += 1
            if self.frames % 30 == 0:
                self.sim.producer.tick(self.clock.monotonic())
                self._feedback(ReceiverReport(ssrc=1, reports=[ReportBlock(
                    ssrc=VIEWER_SSRC, fraction_lost=self.loss,
                    highest_sequence=self.video.state.packets
                    + (0 if self.honest else 100 * self.frames))]))
            if self.remb is not None and self.frames % 15 == 0:
                self._feedback(Remb(sender_ssrc=0xBEEF, bitrate=self.remb, ssrcs=self.remb_ssrcs))
            self.clock.advance(FRAME)
            if until is not None and until():
                return self.clock.monotonic() - start
        return None if until is not None else seconds

    def _feedback(self, packet) -> None:
        self.viewer._on_subscriber_rtcp(serialize_rtcp([packet]))

    def layer_bitrates(self) -> list[int]:
        return [layer.bitrate for layer in self.sim.producer.layers]

    def expected(self, estimate: int):
        """The choice a selector makes on its own for ``estimate`` (less the audio)."""
        audio = self.viewer.bandwidth._rates[self.sound.id].bitrate
        return LayerSelector().update(0, VIDEO_SHARE * estimate - audio,
                                      self.sim.producer.selector_layers(0))

    def audio_rate(self) -> float:
        return self.viewer.bandwidth._rates[self.sound.id].bitrate

    def forwarded(self) -> tuple[int, int]:
        return self.video.state.layer, self.video.state.temporal_limit


@pytest.fixture
def call(clock, upstream) -> Call:
    call = Call(clock, upstream)
    call.run(4.0)  # every layer flows and is measured (MEASURES_TRUSTED times)
    return call


def test_before_any_feedback_a_consumer_gets_what_fits_the_start_bitrate(call):
    assert call.viewer.bandwidth.estimator.mode is None
    low, mid, top = call.layer_bitrates()
    assert 0 < low < mid < top
    assert call.video.state.layer == 2  # these layers are small: the top fits 1 Mbit/s


def test_a_new_subscriber_starts_on_the_start_layer_and_a_remb_of_what_arrives_keeps_it(clock, upstream):
    call = Call(clock, upstream)
    # a start estimate the middle layer fits and the top does not (1 Mbit/s against
    # a typical Chromium q/h/f: 0.2, 0.7, 2.5 Mbit/s)
    call.viewer.bandwidth = SubscriberBandwidth(Estimator(minimum=1_000), start_bitrate=200_000)
    call.run(4.5)  # the layers are measured (three windows), then chosen
    start = call.video.selector.choice
    assert start == call.expected(200_000) and not call.video.bandwidth_paused
    assert (start.spatial, start.temporal) != (2, None)  # not the top layer at full rate
    assert call.video.state.layer == start.spatial
    # aiortc's first REMB is what it received: about that option's own rate, less than
    # it with the headroom taken off, yet no reason to move down
    call.remb_ssrcs = [VIEWER_SSRC]  # as aiortc's: it names the video only
    call.remb = start.bitrate
    call.run(4.0)
    assert call.video.selector.choice == start and call.video.selector.switches == 1
    # up by the normal rule once the estimates allow it
    call.remb = 3 * call.layer_bitrates()[2]
    took = call.run(10.0, until=lambda: (call.video.selector.choice.spatial,
                                         call.video.selector.choice.temporal) == (2, None))
    assert took is not None and took >= LayerSelector().hold, took


def test_video_gets_a_share_of_the_estimate_less_what_audio_sends(call):
    _, _, top = call.layer_bitrates()
    call.remb = 3 * top
    call.run(2.0)
    assert call.video.state.layer == 2
    # a REMB covering the audio too (Chromium's): 190 kbit/s left after the audio
    # would take the top layer's T1 (about 169k); 0.85 x the REMB less audio does not
    without_headroom = LayerSelector().update(0, 190_000, call.sim.producer.selector_layers(0))
    call.remb = int(190_000 + call.audio_rate())
    call.run(3.0)
    bandwidth = call.viewer.bandwidth
    assert bandwidth.budget == pytest.approx(VIDEO_SHARE * bandwidth.estimator.bitrate
                                             - call.audio_rate(), abs=2_000)
    choice = call.video.selector.choice
    assert choice.bitrate <= bandwidth.budget < without_headroom.bitrate
    assert call.expected(call.remb) == choice != without_headroom


def test_the_layer_follows_the_remb_down_at_once_and_up_after_holding(call):
    _, mid, top = call.layer_bitrates()
    call.remb = 3 * top
    assert call.run(4.0, until=lambda: call.video.selector is not None) is not None
    assert call.video.state.layer == 2
    # a REMB under which the middle layer fits and no step of the top one does
    call.remb = next(r for r in range(3 * top, 0, -5_000) if call.expected(r).spatial == 1)
    want = call.expected(call.remb)
    took = call.run(5.0, until=lambda: call.video.state.layer == 1)
    assert took is not None and took < 2.0, took
    assert call.video.selector.choice == want
    call.remb = 3 * top
    took = call.run(15.0, until=lambda: call.video.state.layer == 2)
    # up only after the estimate held above the next layer for the selector's hold
    assert took is not None and LayerSelector().hold <= took < 10.0, took
    assert call.events == []  # never paused


def test_under_the_lowest_layer_video_pauses_audio_goes_on_and_both_resume(call):
    top = call.layer_bitrates()[2]
    call.remb = 3 * top
    call.run(1.0)
    call.remb = 1_000  # under the lowest option, even its base temporal layer
    call.loss = 200  # and losing: a REMB alone does not pause (it is about what arrives)
    assert call.run(5.0, until=lambda: call.events) is not None
    assert call.events == [(call.sim.producer.id, PAUSED_REASON)]
    assert call.video.bandwidth_paused and call.video.stats()["bandwidth_paused"]
    video_sent, audio_sent = len(call.video.transport.rtp), len(call.sound.transport.rtp)
    call.run(2.0)
    assert len(call.video.transport.rtp) == video_sent  # nothing forwarded while paused
    assert len(call.sound.transport.rtp) > audio_sent + 50  # audio never paused
    call.remb, call.loss = 3 * top, 0
    assert call.run(10.0, until=lambda: len(call.events) == 2) is not None
    assert call.events[1] == (call.sim.producer.id, None)
    assert not call.video.bandwidth_paused
    sent = len(call.video.transport.rtp)
    call.run(1.0)
    assert len(call.video.transport.rtp) > sent


def test_receiver_report_loss_lowers_the_estimate_in_remb_mode(call):
    top = call.layer_bitrates()[2]
    call.remb = int(1.5 * top)
    call.run(1.0)
    assert call.forwarded() == (2, 3)
    call.loss = 128  # half of the packets lost: the ceiling falls by a quarter a report
    assert call.run(6.0, until=lambda: call.forwarded() < (2, 3)) is not None
    assert call.viewer.bandwidth.estimator.bitrate < call.remb
    assert call.video.selector.choice.bitrate < top


def test_the_publisher_is_asked_only_for_the_layers_someone_needs(call):
    low = call.layer_bitrates()[0]
    producer = call.sim.producer
    peaks = [SelectorLayer(layer.spatial, layer.peak_bitrate) for layer in producer.layers]
    # a consumer without an estimate takes the top layer: no cap (the settings' REMB)
    assert producer.needed_bitrate(call.clock.monotonic()) is None
    call.remb = int(1.1 * low)
    call.run(3.0)
    assert call.video.state.layer == 0
    now = call.clock.monotonic()
    needed = producer.needed_bitrate(now)
    assert needed == publisher_remb({0}, peaks) < publisher_remb({2}, peaks)
    # the node's REMB to the publisher is that much (over the loss rule's minimum)
    camera = Participant("camera", settings=MediaSettings(), clock=call.clock, scheduler=call.clock)
    camera.add_producer(producer)
    remb = next(p for p in parse_rtcp(camera.publisher_feedback(now)) if isinstance(p, Remb))
    assert remb.bitrate == max(needed, 100_000)

    class Recorder:  # a tap (a recording) needs the top layer whatever the subscribers
        def rtp(self, data, arrival, keyframe): pass
        def sender_report(self, ntp, rtp_ts, arrival): pass
        def stream_changed(self, ssrc): pass
        def producer_closed(self): pass

    producer.add_tap(Recorder())
    assert producer.needed_bitrate(now) is None


def test_a_stopped_layer_keeps_its_last_bitrate_for_the_choice(call):
    _, _, top = call.layer_bitrates()
    layer = call.sim.producer.layers[2]
    layer.measure(call.clock.monotonic() + 1.0)  # a second with nothing from the top layer
    assert layer.bitrate == 0 and layer.last_bitrate == top
    assert [lay.bitrate for lay in call.sim.producer.selector_layers(0)][-1] == top


def test_in_remb_mode_a_low_remb_without_loss_keeps_the_lowest_layer(call):
    call.remb = 3 * call.layer_bitrates()[2]
    call.run(1.0)
    call.remb = 1_000  # aiortc's REMB after an overuse is 0.85 x what arrives, whatever fits
    call.run(4.0)
    assert call.events == [] and not call.video.bandwidth_paused
    assert call.video.selector.choice.spatial == call.video.selector.lowest_spatial == 0


def test_a_remb_naming_only_the_video_leaves_the_audio_out_of_the_sum(call):
    call.remb_ssrcs = [VIEWER_SSRC]  # aiortc: each video receiver's REMB names its stream
    call.remb = 3 * call.layer_bitrates()[2]
    call.run(2.0)
    bandwidth = call.viewer.bandwidth
    assert call.viewer.bandwidth._rates[call.sound.id].bitrate > 10_000  # audio flows
    # and is not taken off: the headroom alone
    assert bandwidth.budget == int(VIDEO_SHARE * bandwidth.estimator.bitrate)


def test_rembs_of_several_receivers_add_up_and_stale_ones_drop_out():
    bandwidth = SubscriberBandwidth(Estimator(maximum=10_000_000))
    assert bandwidth.on_remb(0.0, 1, 400_000) == 400_000
    assert bandwidth.on_remb(0.1, 2, 600_000) == 1_000_000  # aiortc: one per video receiver
    assert bandwidth.on_remb(0.6, 1, 500_000) == 1_100_000  # the latest of each sender
    assert bandwidth.on_remb(5.0, 2, 700_000) == 700_000    # sender 1 went quiet


def test_two_tracks_share_one_subscribers_estimate(clock, upstream):
    first, second = Call(clock, upstream), None
    second = Simulcast(clock, upstream)
    other = Consumer(second.producer, first.viewer.id, FakeTransport(), 0x50B5C003)
    first.viewer.add_consumer(other)
    assert other.negotiate(SUBSCRIBER_PAYLOAD_TYPES, SUBSCRIBER_EXT_IDS)
    clock.advance(0)

    def both(seconds):
        for _ in range(round(seconds)):
            for _ in range(30):
                for spatial, packets in enumerate(PACKETS):
                    second.layers[spatial].frame(key=second.layers[spatial].frames % 10 == 0,
                                                 packets=packets)
                clock.advance(0)
            second.producer.tick(clock.monotonic() + 1.0)
            first.run(1.0)

    both(2)
    low, _, top = first.layer_bitrates()
    first.remb = int(1.05 * (top + low))  # one top layer and one low one, not two top ones
    both(4)
    choices = [c.selector.choice for c in (first.video, other)]
    budget = first.viewer.bandwidth.budget  # the estimate less the audio
    assert sum(c.bitrate for c in choices) <= budget
    assert sum(c.bitrate for c in choices) > budget / 2  # shared, not left unused
    assert not all(c.spatial == 2 and c.temporal is None for c in choices), choices


def flood_until_paused(call) -> None:
    """What a 300 kbit/s subscriber started on the top layer sees in REMB mode: heavy
    loss in its receiver reports drives the loss ceiling to the floor and video pauses;
    then, as with aiortc, no REMB (it sends them only as video arrives) and receiver
    reports that count only the packets forwarded (none while paused)."""
    call.honest = True
    call.remb = 3 * call.layer_bitrates()[2]
    call.run(1.0)
    call.loss = 200
    assert call.run(10.0, until=lambda: call.events) is not None
    assert call.events == [(call.sim.producer.id, PAUSED_REASON)]
    call.remb = None


def test_a_video_paused_in_remb_mode_is_resumed_on_trial_and_stays_when_it_fits(call):
    flood_until_paused(call)
    call.loss = 0  # the link is fine again, but nothing flows that could show it
    hold = call.video.selector.current_hold
    took = call.run(3 * hold, until=lambda: len(call.events) == 2)
    assert took is not None and took >= hold - 0.05, took  # not before the hold
    assert call.events[1] == (call.sim.producer.id, None)
    assert call.forwarded()[0] == 0  # on trial: the lowest layer
    sent = len(call.video.transport.rtp)
    call.run(8.0)  # the receiver reports now count its packets, without loss
    assert len(call.events) == 2 and not call.video.bandwidth_paused
    assert len(call.video.transport.rtp) > sent + 100


def test_a_failed_trial_pauses_again_and_the_next_waits_longer(call):
    flood_until_paused(call)  # the loss stays: the lowest layer does not fit either
    hold = call.video.selector.current_hold
    assert call.run(3 * hold, until=lambda: len(call.events) == 3) is not None
    assert [reason for _, reason in call.events] == [PAUSED_REASON, None, PAUSED_REASON]
    assert call.video.selector.current_hold == 2 * hold
    waited = call.run(6 * hold, until=lambda: len(call.events) == 4)
    assert waited is not None and waited >= 2 * hold - 0.05, waited  # the backoff


def test_numbers_a_resync_skipped_are_not_counted_as_lost():
    reported = round(256 * 960 / 1060)  # 100 packets sent after 960 numbers skipped
    for skipped, cut in ((960, False), (0, True)):
        bandwidth = SubscriberBandwidth(Estimator(minimum=10_000))
        bandwidth.on_remb(0.0, 1, 500_000)
        bandwidth.on_report_block(0.0, 7, 0, 1000)
        bandwidth.on_report_block(1.0, 7, reported, 2060, skipped=skipped)
        bandwidth.on_report_block(2.0, 7, 0, 2160, skipped=skipped)  # the loss is judged
        assert (bandwidth.estimator.bitrate < 500_000) is cut


def test_a_successful_probe_resets_the_selectors_backoff(call):
    estimator = call.viewer.bandwidth.estimator
    call.run(3.0)  # the layers measured, the consumer's selector made
    selector = call.video.selector
    selector.current_hold = 16.0  # up-switches failed while the link was down
    call.run(1.0)
    assert selector.current_hold == 16.0
    now = call.clock.monotonic()
    probe = estimator.probe(now, 5 * estimator.bitrate)
    assert probe is not None and estimator.probed_at is None
    # the cluster arrived at the rate it was sent: the path takes it
    gap = probe.interval(1000)
    estimator.on_feedback(now + 0.1, [
        PacketResult(seq=i, send_time=now + i * gap, size=1000, arrival=0.05 + i * gap,
                     probe=probe.cluster) for i in range(probe.count(1000))])
    assert estimator.probed_at == now + 0.1
    call.run(0.5)  # the allocator's next tick
    assert selector.current_hold == selector.hold


def test_no_choice_before_the_subscriber_answered_and_transport_cc_starts_lower(call):
    clock = call.clock
    viewer = Participant("viewer-2", clock=clock, scheduler=clock)
    viewer.bandwidth = SubscriberBandwidth(Estimator(minimum=1_000))
    late = Consumer(call.sim.producer, viewer.id, FakeTransport(), 0x50B5C009)
    viewer.add_consumer(late)  # offered, not answered yet
    call.run(2.0)
    assert late.selector is None  # no first choice before its answer says the mode
    viewer.bandwidth.use_transport_cc(start=40_000)
    assert viewer.bandwidth.start_bitrate == viewer.bandwidth.estimator.bitrate == 40_000
    assert late.negotiate(SUBSCRIBER_PAYLOAD_TYPES, SUBSCRIBER_EXT_IDS)
    call.run(0.5)
    layers = call.sim.producer.selector_layers(clock.monotonic())
    assert late.selector.choice == LayerSelector().update(0, VIDEO_SHARE * TWCC_FIRST_SHARE * 40_000, layers)
    assert late.selector.choice.bitrate <= VIDEO_SHARE * TWCC_FIRST_SHARE * 40_000  # half the lower start


def test_transport_cc_does_not_restart_an_estimate_that_has_feedback(call):
    call.remb = 2_000_000
    call.run(1.0)
    bandwidth = call.viewer.bandwidth
    bandwidth.use_transport_cc()
    assert bandwidth.estimator.mode == "remb" and bandwidth.start_bitrate != 300_000


def test_with_transport_cc_what_arrives_keeps_the_lowest_layer():
    bandwidth = SubscriberBandwidth(Estimator(minimum=1_000))
    assert bandwidth._arriving(0.0) == 0.0  # nothing acknowledged yet: no say
    # 200 bytes every 10 ms arrive: 160 kbit/s, of which 40 are audio
    results = [PacketResult(seq=i, send_time=i * 0.01, size=200, arrival=0.02 + i * 0.01)
               for i in range(100)]
    bandwidth.estimator.on_feedback(1.1, results)
    assert bandwidth._arriving(40_000) == pytest.approx(120_000, rel=0.05)
    # a selector keeps the lowest option while that much of its video arrives, whatever
    # the estimate: under it for longer than pause_after, it is not paused
    selector = LayerSelector(pause_after=1.0)
    layers = [SelectorLayer(0, 110_000), SelectorLayer(1, 500_000)]
    assert selector.update(0.0, 200_000, layers).spatial == 0
    for t in (0.5, 1.0, 2.0, 3.0):
        assert selector.update(t, 50_000, layers, keep=bandwidth._arriving(40_000)).spatial == 0
    assert selector.update(4.0, 50_000, layers, keep=0.0).spatial == 0  # under from now on
    assert selector.update(5.1, 50_000, layers, keep=0.0).paused


def test_a_transport_cc_start_takes_the_lowest_layer_until_the_layers_are_measured(clock, upstream):
    for transport_cc, expected in ((True, 0), (False, None)):
        sim = Simulcast(clock, upstream)
        viewer = Participant("viewer", clock=clock, scheduler=clock)
        if transport_cc:
            viewer.bandwidth.use_transport_cc()
        consumer = Consumer(sim.producer, viewer.id, FakeTransport(), VIEWER_SSRC)
        viewer.add_consumer(consumer)
        assert consumer.negotiate(SUBSCRIBER_PAYLOAD_TYPES, SUBSCRIBER_EXT_IDS)
        sim.frames(3, key=True)  # flowing, not measured yet (the producer's tick is once a second)
        viewer.allocate(clock.monotonic())
        assert sim.producer.selector_layers(clock.monotonic()) == []
        assert consumer.target_layer == expected  # REMB mode: the default, the top


def test_with_transport_cc_unmeasured_layers_start_on_the_lowest_at_its_base_rate(clock, upstream):
    # a publisher's first seconds are its encoder's ramp (Chromium's 320x180 at 640-800
    # kbit/s): before its layers are measured, a transport-cc subscriber gets the
    # lowest one's base temporal layer, then the selector's choice
    call = Call(clock, upstream)
    call.viewer.bandwidth.use_transport_cc()
    call.run(0.5)
    assert call.sim.producer.selector_layers(clock.monotonic()) == []
    assert (call.video.target_layer, call.video.target_temporal) == (0, 0)
    assert call.video.selector is None
    call.run(4.0)
    assert call.video.selector is not None and call.video.selector.choice.spatial is not None
