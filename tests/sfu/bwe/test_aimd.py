from sfu.bwe import AimdRateControl, LinkCapacity, RateState, Usage


def run(control, usage, acked, start, seconds, step=0.05):
    t = start
    while t < start + seconds - 1e-9:
        t += step
        control.update(t, usage, acked)
    return t


def test_far_from_any_congestion_it_grows_eight_percent_a_second():
    control = AimdRateControl(1_000_000, 50_000, 10_000_000)
    control.update(0.0, Usage.NORMAL, None)  # hold -> increase
    run(control, Usage.NORMAL, None, 0.0, 5.0)
    assert 1.08 ** 5 * 0.97 < control.bitrate / 1_000_000 < 1.08 ** 5 * 1.03


def test_overuse_cuts_to_085_of_the_acknowledged_rate_and_then_holds():
    control = AimdRateControl(2_000_000, 50_000, 10_000_000)
    assert control.update(0.0, Usage.OVERUSE, 1_000_000) == 850_000
    assert control.state is RateState.HOLD
    # still overusing within a round trip: no second cut
    assert control.update(0.05, Usage.OVERUSE, 900_000) == 850_000
    assert control.update(0.3, Usage.OVERUSE, 900_000) == 765_000
    assert control.update(0.35, Usage.UNDERUSE, 900_000) == 765_000  # draining: hold


def test_near_the_last_congestion_it_grows_additively():
    control = AimdRateControl(1_000_000, 50_000, 10_000_000)
    control.update(0.0, Usage.OVERUSE, 1_000_000)  # capacity about 1 Mbit/s, rate 850k
    assert control.capacity.estimate_kbps == 1000
    control.update(0.1, Usage.NORMAL, 850_000)
    before = control.bitrate
    run(control, Usage.NORMAL, 850_000, 0.1, 2.0)
    grown = control.bitrate - before
    assert 4_000 * 2 <= grown < before * (1.08 ** 2 - 1)  # slower than multiplicative


def test_an_increase_never_passes_one_and_a_half_times_what_was_acknowledged():
    control = AimdRateControl(1_000_000, 50_000, 10_000_000)
    control.update(0.0, Usage.NORMAL, 200_000)
    run(control, Usage.NORMAL, 200_000, 0.0, 10.0)
    assert control.bitrate == 1_000_000  # above the ceiling already: held, not cut
    control = AimdRateControl(300_000, 50_000, 10_000_000)
    run(control, Usage.NORMAL, 300_000, 0.0, 30.0)
    assert control.bitrate == 1.5 * 300_000 + 10_000


def test_link_capacity_resets_when_the_acknowledged_rate_leaves_its_band():
    capacity = LinkCapacity()
    for _ in range(20):
        capacity.on_overuse(3_000_000)
    assert capacity.lower < 3_000_000 < capacity.upper
    control = AimdRateControl(2_500_000, 50_000, 10_000_000)
    control.capacity = capacity
    control.update(0.0, Usage.OVERUSE, 300_000)  # far below: the link changed
    assert control.capacity.estimate_kbps == 300
    control.update(1.0, Usage.NORMAL, 3_000_000)
    control.update(2.0, Usage.NORMAL, 3_000_000)  # far above: unknown again
    assert control.capacity.estimate_kbps is None


def test_a_probe_result_sets_the_estimate_within_bounds():
    control = AimdRateControl(300_000, 50_000, 2_000_000)
    control.set_estimate(1.0, 5_000_000)
    assert control.bitrate == 2_000_000
