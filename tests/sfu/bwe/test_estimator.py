"""The estimator on simulated links (tests/sfu/bwe/linksim.py: a bottleneck with a
queue, transport-cc feedback through the wire format), in closed loop with a sender that
sends what the estimate allows and probes for more, and on a recorded trace in open
loop (tests/data/bwe/, made by make_traces.py)."""

from __future__ import annotations

import json
import pathlib

import pytest
from linksim import Link, Simulation, replay, steps

from sfu.bwe import Estimator, PacketResult, Usage

TRACES = pathlib.Path(__file__).resolve().parents[2] / "data" / "bwe"
MBIT = 1_000_000


def encoder(link: Link, start: int = 300_000) -> Simulation:
    """A sender that sends the estimate and always wants more (an encoder on its target)."""
    estimator = Estimator(start=start, maximum=5 * MBIT)
    return Simulation(link, estimator, media=lambda t, e: e.bitrate, want=lambda t, e: 5 * MBIT)


def first(samples, since: float, condition) -> float:
    return next(s.t for s in samples if s.t >= since and condition(s.estimate))


@pytest.mark.parametrize("capacity", [3 * MBIT, 300_000])
def test_it_converges_within_30_percent_of_the_bottleneck_within_3_seconds(capacity):
    samples = encoder(Link(steps((0, capacity)))).run(20.0)
    settled = [s.estimate for s in samples if s.t >= 3.0]
    assert 0.7 * capacity <= min(settled) and max(settled) <= 1.3 * capacity


def test_it_follows_a_drop_down_within_2_s_and_back_up_within_10_s():
    link = Link(steps((0, 3 * MBIT), (10, 300_000), (20, 3 * MBIT)))
    samples = encoder(link).run(32.0)
    assert first(samples, 10.0, lambda e: e <= 1.3 * 300_000) < 12.0
    assert max(s.estimate for s in samples if 12.0 <= s.t < 20.0) <= 1.3 * 300_000
    assert first(samples, 20.0, lambda e: e >= 0.7 * 3 * MBIT) < 30.0


@pytest.mark.parametrize("seed", [1, 2])
def test_five_percent_random_loss_does_not_collapse_the_estimate(seed):
    samples = encoder(Link(steps((0, 3 * MBIT)), loss=0.05, seed=seed)).run(30.0)
    settled = [s.estimate for s in samples if s.t >= 5.0]
    assert min(settled) >= 0.7 * 3 * MBIT
    assert sum(settled) / len(settled) >= 0.8 * 3 * MBIT


def test_heavy_loss_cuts_and_the_ceiling_grows_back_without_loss():
    estimator = Estimator(start=2 * MBIT, maximum=5 * MBIT)
    estimator.mode = "twcc"
    estimator.on_feedback(-1.0, [PacketResult(0, -1.5, 1200, 8.5)])  # past the start's grace
    # 90 packets in three feedbacks over 0.6 s, one in three lost: a third, judged once
    results = [PacketResult(i, i * 0.01, 1200, None if i % 3 == 0 else 10 + i * 0.01) for i in range(1, 91)]
    for k in range(3):
        estimator.on_feedback(0.3 * k, results[30 * k: 30 * k + 30])
    assert estimator.loss.loss == pytest.approx(1 / 3)
    assert estimator.bitrate == pytest.approx(2 * MBIT * (1 - 1 / 6), rel=0.02)
    # then a second without loss: the ceiling grows again, 8 % a second
    ceiling = estimator.loss.bitrate
    clean = [PacketResult(i, i * 0.01, 1200, 10 + i * 0.01) for i in range(91, 191)]
    estimator.on_feedback(0.9, clean[:50])
    estimator.on_feedback(1.6, clean[50:])
    assert estimator.loss.loss == 0 and estimator.loss.bitrate == pytest.approx(ceiling * 1.08)  # 1 s after


def test_remb_mode_takes_the_subscribers_estimate_capped_by_reported_loss():
    estimator = Estimator(start=300_000, maximum=5 * MBIT)
    assert estimator.on_remb(0.0, 1_500_000) == 1_500_000
    assert estimator.mode == "remb" and estimator.acked_bitrate is None
    assert estimator.on_remb(1.0, 9 * MBIT) == 5 * MBIT  # within the configured maximum
    estimator.on_remb(1.0, 2 * MBIT)
    assert estimator.on_receiver_report(1.0, 0, 100) == 2 * MBIT  # a period has not passed
    # 0 + 50 of 200 packets lost over the period: 25 %, so minus half of it
    assert estimator.on_receiver_report(2.0, 128, 100) == 1_750_000
    assert estimator.on_remb(2.5, 3 * MBIT) == 1_750_000  # the loss ceiling holds
    assert estimator.on_remb(3.0, 1 * MBIT) == 1 * MBIT


def test_a_trial_lifts_an_old_loss_ceiling_and_remb_and_later_feedback_decides():
    estimator = Estimator(start=300_000, minimum=50_000, maximum=5 * MBIT)
    estimator.on_remb(0.0, 250_000)
    for second in range(1, 8):  # a flood: most packets lost, the ceiling to the floor
        estimator.on_receiver_report(float(second), 230, 100)
    assert estimator.bitrate == 50_000
    assert estimator.trial(8.0, 180_000) == 180_000  # the ceiling lifted to it, no further
    assert estimator.on_remb(8.5, 100_000) == 100_000  # an old REMB, lower still
    assert estimator.trial(9.0, 180_000) == 180_000  # lifted too
    assert estimator.on_remb(9.5, 400_000) == 180_000  # the ceiling grows from there
    estimator.on_receiver_report(10.0, 230, 100)  # the trial loses too: cut again
    assert estimator.bitrate < 180_000


def test_receiver_reports_are_ignored_once_transport_cc_speaks():
    estimator = Estimator(start=1 * MBIT)
    estimator.on_feedback(0.0, [])
    estimator.on_receiver_report(0.0, 0, 100)
    assert estimator.on_receiver_report(1.0, 255, 100) == 1 * MBIT
    assert estimator.usage is Usage.NORMAL


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="minimum"):
        Estimator(minimum=0)


def recorded(name: str) -> dict:
    return json.loads((TRACES / name).read_text())


def test_the_recorded_drop_trace_is_followed_down_and_up():
    trace = recorded("drop_3m_300k.json")
    events = replay(trace, Estimator(start=300_000, maximum=5 * MBIT))
    drop, rise = trace["drop_at"], trace["rise_at"]
    assert [t for t, _ in events] == sorted(t for t, _ in events)
    before = [e for t, e in events if 3.0 <= t < drop]
    assert 0.7 * 3 * MBIT <= min(before) and max(before) <= 1.3 * 3 * MBIT
    assert next(t for t, e in events if t >= drop and e <= 1.3 * 300_000) < drop + 2.0
    # open loop: the trace's own probes after the rise are what lifts the estimate
    assert next(t for t, e in events if t >= rise and e >= 0.7 * 3 * MBIT) < rise + 10.0


def test_the_recorded_lossy_trace_keeps_the_estimate_near_the_link():
    trace = recorded("loss5_3m.json")
    events = replay(trace, Estimator(start=300_000, maximum=5 * MBIT))
    settled = [e for t, e in events if t >= 5.0]
    assert min(settled) >= 0.7 * 3 * MBIT


def test_a_flood_into_a_slow_link_is_not_judged_far_under_what_got_through():
    # a subscriber started on too high a layer: 900 kbit/s into 300 kbit/s for 3 s (a
    # drop-tail queue loses two packets in three), then the media follows the estimate
    link = Link(steps((0, 300_000)), queue=0.2)
    sim = Simulation(link, Estimator(start=1 * MBIT), media=lambda t, e: 900_000 if t < 3.0 else e.bitrate)
    samples = sim.run(10.0)
    after = [s.estimate for s in samples if s.t >= 1.0]
    assert min(after) >= 0.6 * 300_000  # the loss ceiling stays near what arrived
    assert sum(after) / len(after) <= 1.3 * 300_000


def test_what_is_usable_is_what_the_path_has_shown_not_the_estimates_own_growth():
    # an SFU sends a layer, not the estimate: 400 kbit/s on a 3 Mbit/s link. The
    # delay-based estimate grows by itself (to 1.5 x acknowledged); usable does not
    link = Link(steps((0, 3 * MBIT)), queue=0.2)
    estimator = Estimator(start=300_000, maximum=5 * MBIT)
    sim = Simulation(link, estimator, media=lambda t, e: 400_000)
    sim.run(20.0)
    assert estimator.mode == "twcc" and estimator.bitrate > 1.3 * 400_000
    assert estimator.usable <= 1.1 * 400_000
    # a probe that gets through at its rate shows more: usable follows it
    sim.want = lambda t, e: 2 * MBIT
    sim.run(23.0)
    assert estimator.probed_at is not None and estimator.usable >= 1 * MBIT


def test_a_congestion_cut_takes_what_was_shown_down_with_it():
    link = Link(steps((0, 3 * MBIT), (10, 300_000)), queue=0.2)
    estimator = Estimator(start=300_000, maximum=5 * MBIT)
    sim = Simulation(link, estimator, media=lambda t, e: min(e.usable, 1.5 * MBIT),
                     want=lambda t, e: 2 * MBIT)
    sim.run(9.9)
    assert estimator.usable >= 1 * MBIT  # probed up on the fast link
    sim.run(14.0)
    assert estimator.usable <= 1.3 * 300_000  # the drop's overuse cut it


def test_in_remb_mode_usable_is_the_estimate():
    estimator = Estimator(start=300_000)
    estimator.on_remb(0.0, 2 * MBIT)
    assert estimator.usable == estimator.bitrate == 2 * MBIT


def test_a_restart_before_any_feedback_starts_from_the_new_start():
    estimator = Estimator(start=1 * MBIT)
    estimator.restart(300_000)
    assert estimator.bitrate == estimator.proven == 300_000 and estimator.mode is None


def test_loss_of_the_first_packets_does_not_cut_the_estimate():
    # a receiver whose DTLS ends after ours drops the first packets: START_LOSS_GRACE_S
    estimator = Estimator(start=300_000, maximum=5 * MBIT)
    early = [PacketResult(i, i * 0.02, 1200, None if i < 20 else 10 + i * 0.02) for i in range(45)]
    for k in range(3):
        estimator.on_feedback(0.3 * (k + 1), early[15 * k: 15 * k + 15])
    assert estimator.loss.bitrate >= 300_000 and estimator.bitrate >= 300_000
    # the same loss later is loss
    later = [PacketResult(i, i * 0.02, 1200, None if i % 2 else 10 + i * 0.02) for i in range(60, 120)]
    for k in range(4):
        estimator.on_feedback(1.5 + 0.3 * k, later[15 * k: 15 * k + 15])
    assert estimator.bitrate < 300_000


def test_a_restart_may_take_less_than_the_start_as_shown():
    estimator = Estimator(start=1_000_000)
    estimator.restart(300_000, proven=150_000)
    assert estimator.bitrate == 300_000 and estimator.proven == 150_000
    estimator.mode = "twcc"
    assert estimator.usable == 150_000
    estimator.restart(300_000, proven=900_000)  # never above the start
    assert estimator.proven == 300_000
