import pytest

from sfu.bwe import NOT_PROBE, PacketResult, Probe, ProbeController, ProbeResults
from sfu.bwe.probe import START_PROBES


def cluster(n, size, send_gap, arrival_gap, probe=3, start_seq=0):
    return [PacketResult(start_seq + i, 1.0 + i * send_gap, size, 50.0 + i * arrival_gap, probe)
            for i in range(n)]


def test_a_cluster_that_got_through_measures_its_send_rate():
    # 10 x 1000 bytes, 1 ms apart: 8 Mbit/s sent, received as fast
    assert ProbeResults().add(cluster(10, 1000, 0.001, 0.001)) == {3: 8_000_000}


def test_a_cluster_squeezed_by_the_path_measures_the_path():
    # sent at 8 Mbit/s, arriving at 2 Mbit/s: the path's rate, taken at 95 %
    assert ProbeResults().add(cluster(10, 1000, 0.001, 0.004)) == {3: int(0.95 * 2_000_000)}


def test_too_few_packets_lost_ones_and_media_say_nothing():
    results = ProbeResults()
    assert results.add(cluster(3, 1000, 0.001, 0.001)) == {}
    media = [PacketResult(i, 1.0, 1000, 50.0 + i, NOT_PROBE) for i in range(10)]
    lost = [PacketResult(i, 1.0 + i * 0.001, 1000, None, 4) for i in range(10)]
    assert results.add(media + lost) == {}
    # the cluster completes across feedbacks
    assert results.add(cluster(10, 1000, 0.001, 0.001)[3:]) == {3: 8_000_000}


def test_an_arrival_rate_beyond_twice_the_send_rate_is_an_artefact():
    assert ProbeResults().add(cluster(10, 1000, 0.004, 0.001)) == {}


def test_probe_sizes_its_cluster():
    probe = Probe(cluster=1, bitrate=1_000_000)
    assert probe.count(1200) == 5  # 15 ms at 1 Mbit/s is under 5 packets
    assert Probe(cluster=1, bitrate=8_000_000).count(250) == 60
    assert probe.interval(1250) == pytest.approx(0.01)


def test_the_controller_probes_only_for_more_and_doubles_while_it_succeeds():
    controller = ProbeController(maximum=10_000_000, interval=3.0)
    assert controller.request(0.0, 1_000_000, None) is None
    assert controller.request(0.0, 1_000_000, 1_000_000) is None
    first = controller.request(0.0, 1_000_000, 5_000_000)
    assert first.bitrate == 2_000_000  # twice the estimate at most
    assert controller.request(0.1, 1_000_000, 5_000_000) is None  # one at a time
    assert controller.on_result(0.2, first.cluster, 1_900_000)  # got through
    second = controller.request(0.2, 1_900_000, 5_000_000)
    assert second.bitrate == 3_800_000 and second.cluster != first.cluster
    assert not controller.on_result(0.4, second.cluster, 2_000_000)  # the path is full
    assert not controller.on_result(0.4, first.cluster, 5_000_000)  # not pending any more
    assert controller.request(0.5, 2_000_000, 5_000_000) is None
    assert controller.request(3.4, 2_000_000, 5_000_000).bitrate == 4_000_000


def test_until_a_probe_succeeds_a_failed_one_is_retried_after_the_start_interval():
    controller = ProbeController(maximum=10_000_000, interval=3.0, start_interval=1.0)
    first = controller.request(0.0, 300_000, 2_000_000)
    assert not controller.on_result(0.1, first.cluster, 100_000)  # failed at the start
    assert controller.request(1.0, 300_000, 2_000_000) is None
    second = controller.request(1.15, 300_000, 2_000_000)
    assert second is not None
    assert controller.on_result(1.2, second.cluster, 600_000) and controller.succeeded
    third = controller.request(1.2, 600_000, 2_000_000)
    assert not controller.on_result(1.3, third.cluster, 400_000)
    # once one succeeded, a failure waits the whole interval
    assert controller.request(2.5, 600_000, 2_000_000) is None
    assert controller.request(4.35, 600_000, 2_000_000) is not None


def test_start_retries_end_after_start_probes_on_a_link_no_probe_gets_through():
    stuck = ProbeController(maximum=10_000_000, interval=3.0, start_interval=1.0)
    t = 0.0
    for _ in range(START_PROBES):
        probe = stuck.request(t, 300_000, 2_000_000)
        assert probe is not None
        assert not stuck.on_result(t + 0.1, probe.cluster, 280_000)
        t += 1.15
    assert stuck.request(t + 1.0, 300_000, 2_000_000) is None  # now the whole interval
    assert stuck.request(t + 2.0, 300_000, 2_000_000) is not None


def test_a_probe_without_a_result_times_out_as_failed():
    controller = ProbeController(maximum=10_000_000, interval=3.0, timeout=1.0)
    controller.succeeded = True  # past the start (see the next test)
    assert controller.request(0.0, 500_000, 5_000_000) is not None
    assert controller.request(0.9, 500_000, 5_000_000) is None
    assert controller.request(1.1, 500_000, 5_000_000) is None  # failed: wait the interval
    assert controller.request(4.1, 500_000, 5_000_000) is not None
    assert ProbeController(maximum=1_000_000).request(0.0, 1_000_000, 5_000_000) is None  # at the top
