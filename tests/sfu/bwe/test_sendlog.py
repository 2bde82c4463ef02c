import pytest

from sfu.bwe import NOT_PROBE, SendLog, abs_send_time


def test_send_numbers_packets_and_wraps_at_16_bits():
    log = SendLog(capacity=16)
    log.next_seq = 65534
    assert [log.send(1.0 + i, 100 + i) for i in range(4)] == [65534, 65535, 0, 1]
    assert log.unwrap(0) == 65536 and log.unwrap(65535) == 65535
    assert log.lookup(65536) == (3.0, 102, NOT_PROBE)


def test_lookup_finds_only_what_is_still_in_the_ring():
    log = SendLog(capacity=4)
    for i in range(6):
        log.send(i * 0.01, 1200, probe=7 if i == 5 else NOT_PROBE)
    assert log.lookup(5) == (0.05, 1200, 7)
    assert log.lookup(1) is None  # overwritten by 5
    assert log.lookup(6) is None and log.lookup(-1) is None  # not sent yet, nonsense


def test_unwrap_places_a_number_nearest_the_latest():
    log = SendLog()
    log.next_seq = 70_000  # the last sent is 69_999, whose low bits are 4463
    assert log.unwrap(4463) == 69_999
    assert log.unwrap(4000) == 69_536
    assert log.unwrap(5000) == 70_536  # ahead: not sent yet, found by nobody


@pytest.mark.parametrize("capacity", [0, 3, 65536])
def test_capacity_is_a_power_of_two_that_unwrapping_can_place(capacity):
    with pytest.raises(ValueError, match="capacity"):
        SendLog(capacity)


def test_abs_send_time_is_6_18_fixed_point_wrapping_every_64_seconds():
    assert abs_send_time(0.0) == 0
    assert abs_send_time(1.0) == 1 << 18
    assert abs_send_time(0.5) == 1 << 17
    assert abs_send_time(64.0) == 0 and abs_send_time(63.999999) == 0xFFFFFF
    assert abs_send_time(1000.25) == int(1000.25 * 262144) & 0xFFFFFF
