import pytest

from sfu.bwe import (
    AckedBitrate,
    DelayBasedEstimate,
    InterArrival,
    PacketResult,
    TrendlineDetector,
    Usage,
)


def test_packets_sent_within_5_ms_are_one_group():
    groups = InterArrival()
    out = [groups.add(send, arrival) for send, arrival in [
        (0.000, 1.000), (0.004, 1.004),  # group 1
        (0.010, 1.012), (0.012, 1.013),  # group 2
        (0.020, 1.030),  # group 3: completes group 2
        (0.030, 1.045),  # group 4: completes group 3
    ]]
    assert out[:4] == [None] * 4  # the first group completes only when the third starts
    assert out[4] == pytest.approx((0.008, 0.009, 1.013))  # group 2 against group 1
    assert out[5] == pytest.approx((0.008, 0.017, 1.030))  # group 3 against group 2


def test_a_burst_that_arrives_together_is_one_group():
    groups = InterArrival()
    groups.add(0.000, 1.000)
    # sent 10 ms later but arriving 1 ms after: queued behind the first, one burst
    assert groups.add(0.010, 1.001) is None
    assert groups.add(0.020, 1.020) is None  # closes the merged group, no predecessor
    assert groups.add(0.030, 1.030) == pytest.approx((0.010, 0.019, 1.020))


def feed(detector, per_group_delay, groups=60, gap=0.01):
    usage = []
    arrival = 0.0
    for _ in range(groups):
        arrival += gap + per_group_delay
        usage.append(detector.update(gap, gap + per_group_delay, arrival))
    return usage


def test_a_steady_path_is_normal_a_growing_queue_overuse_a_draining_one_underuse():
    assert set(feed(TrendlineDetector(), 0.0)) == {Usage.NORMAL}
    assert feed(TrendlineDetector(), 0.002)[-1] is Usage.OVERUSE  # +2 ms per 10 ms group
    detector = TrendlineDetector()
    feed(detector, 0.002, groups=30)
    assert feed(detector, -0.002)[-1] is Usage.UNDERUSE


def test_jitter_alone_does_not_read_as_overuse():
    import random
    rng = random.Random(5)
    detector = TrendlineDetector()
    arrival, previous = 0.0, 0.0
    usages = []
    for _ in range(1000):
        jitter = rng.uniform(0, 0.004)
        arrival_delta = 0.01 + jitter - previous
        previous = jitter
        arrival += arrival_delta
        usages.append(detector.update(0.01, arrival_delta, arrival))
    assert usages.count(Usage.OVERUSE) < 10


def test_acked_bitrate_is_what_arrived_in_the_window():
    acked = AckedBitrate(window=0.25)
    assert acked.bitrate is None
    for i in range(100):  # 1000 bytes every 10 ms: 800 kbit/s
        acked.add(i * 0.01, 1000)
    assert abs(acked.bitrate - 800_000) < 1
    acked.add(0.5, 1000)  # reordered: counted at the latest arrival
    assert acked.bitrate > 0


def test_the_estimate_cuts_when_the_queue_grows():
    estimate = DelayBasedEstimate(start=2_000_000, minimum=50_000, maximum=5_000_000)
    seq = 0
    for round_ in range(40):  # 10 packets per 50 ms feedback; each arrives 1 ms later than sent
        results = []
        for k in range(10):
            send = round_ * 0.05 + k * 0.005
            results.append(PacketResult(seq, send, 1200, 100 + send + 0.001 * seq))
            seq += 1
        estimate.on_results(round_ * 0.05 + 0.08, results)
    assert estimate.usage is Usage.OVERUSE or estimate.bitrate < 1_000_000
    assert estimate.bitrate < 0.85 * 2_000_000
