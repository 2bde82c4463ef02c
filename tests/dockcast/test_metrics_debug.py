"""dockcast.metrics: the per-subscriber debug gauges (estimate, budget, layer), off unless
asked for, as the ``quality`` bench reads them."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import CollectorRegistry

from dockcast.metrics import MediaCollector, Retired
from sfu.bwe import FeedbackBuilder, SubscriberBandwidth
from sfu.clock import ManualClock
from sfu.send_side import SendSideBandwidth
from signalling.membership import LocalMembership


def viewer(layer: int, paused: bool = False, send_side: SendSideBandwidth | None = None):
    video = SimpleNamespace(kind="video", producer=SimpleNamespace(id="TR_cam", simulcast=True),
                            state=SimpleNamespace(layer=layer, packets=0, octets=0),
                            bandwidth_paused=paused, retransmitted=7, nacks_refused=0, nacks=9,
                            resyncs=2, keyframe_requests=3)
    audio = SimpleNamespace(kind="audio", producer=SimpleNamespace(id="TR_mic", simulcast=False),
                            state=SimpleNamespace(layer=0, packets=0, octets=0),
                            retransmitted=0, nacks_refused=0, nacks=0)
    bandwidth = SubscriberBandwidth()
    bandwidth.budget = 250_000
    return SimpleNamespace(id="PA_slow", identity="seller-slow", producers={},
                           consumers={"TR_cam": video, "TR_mic": audio}, bandwidth=bandwidth,
                           send_side=send_side)


def registry(participant, debug: bool | None) -> CollectorRegistry:
    room = SimpleNamespace(participants={participant.id: participant}, producers={})
    reg = CollectorRegistry()
    reg.register(MediaCollector(lambda: [room], Retired(), LocalMembership(), lambda: None,
                                debug_subscribers=debug))
    return reg


async def test_debug_gauges_say_each_subscribers_estimate_budget_and_layer():
    p = viewer(layer=1)
    value = registry(p, True).get_sample_value
    who = {"participant": "PA_slow", "identity": "seller-slow"}
    assert value("dockcast_debug_subscriber_estimate_bps", who) == p.bandwidth.estimator.bitrate
    assert value("dockcast_debug_subscriber_budget_bps", who) == 250_000
    assert value("dockcast_debug_consumer_layer", {**who, "track": "TR_cam"}) == 1
    assert value("dockcast_debug_consumer_layer", {**who, "track": "TR_mic"}) is None  # audio
    assert value("dockcast_debug_subscriber_usable_bps", who) == p.bandwidth.estimator.usable
    cam = {**who, "track": "TR_cam"}
    assert [value(f"dockcast_debug_consumer_{name}", cam) for name in
            ("resyncs", "keyframe_requests", "retransmissions", "nacks")] == [2, 3, 7, 9]
    assert value("dockcast_debug_consumer_resyncs", {**who, "track": "TR_mic"}) is None


async def test_transport_cc_feedbacks_and_probes_are_shown_only_where_negotiated():
    clock = ManualClock()
    side = SendSideBandwidth(SubscriberBandwidth().estimator, lambda p: True, clock, clock)
    builder = FeedbackBuilder()
    for _ in range(3):
        builder.on_packet(side.log.send(clock.now, 1200), clock.now + 0.03)
        clock.advance(0.01)
    for feedback in builder.build():
        side.on_feedback(clock.now, feedback)
    who = {"participant": "PA_slow", "identity": "seller-slow"}
    value = registry(viewer(layer=1, send_side=side), True).get_sample_value
    assert value("dockcast_debug_subscriber_transport_cc_feedbacks", who) == side.feedbacks >= 1
    assert value("dockcast_debug_subscriber_probe_clusters", who) == 0
    assert side.estimator.mode == "twcc"
    value = registry(viewer(layer=1), True).get_sample_value
    assert value("dockcast_debug_subscriber_transport_cc_feedbacks", who) is None  # REMB only


async def test_a_consumer_paused_for_bandwidth_reads_minus_one():
    value = registry(viewer(layer=0, paused=True), True).get_sample_value
    assert value("dockcast_debug_consumer_layer", {"participant": "PA_slow", "identity": "seller-slow",
                                                   "track": "TR_cam"}) == -1


async def test_debug_gauges_are_off_by_default(monkeypatch):
    monkeypatch.delenv("DOCKCAST_DEBUG_SUBSCRIBER_GAUGES", raising=False)
    reg = registry(viewer(layer=2), None)
    assert reg.get_sample_value("dockcast_participants") == 1
    assert not [m for m in reg.collect() if m.name.startswith("dockcast_debug")]
    monkeypatch.setenv("DOCKCAST_DEBUG_SUBSCRIBER_GAUGES", "1")
    assert [m.name for m in registry(viewer(layer=2), None).collect()
            if m.name.startswith("dockcast_debug")] == [
        "dockcast_debug_subscriber_estimate_bps", "dockcast_debug_subscriber_budget_bps",
        "dockcast_debug_consumer_layer", "dockcast_debug_subscriber_transport_cc_feedbacks",
        "dockcast_debug_subscriber_probe_clusters", "dockcast_debug_subscriber_usable_bps",
        "dockcast_debug_consumer_resyncs", "dockcast_debug_consumer_keyframe_requests",
        "dockcast_debug_consumer_retransmissions", "dockcast_debug_consumer_nacks"]
