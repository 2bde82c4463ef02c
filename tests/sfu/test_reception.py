from hypothesis import given, strategies as st

from sfu.reception import MAX_NACK_BATCH, ReceptionStats


def test_gap_is_reported_once_and_cleared_by_late_arrival():
    r = ReceptionStats(7)
    assert r.update(100) == []
    assert r.update(101) == []
    assert r.update(104) == [102, 103]
    assert r.still_missing([102, 103]) == [102, 103]
    assert r.update(102) == []  # late or resent
    assert r.still_missing([102, 103]) == [103]
    assert r.update(104) == []  # duplicate


def test_wraparound_extends_the_sequence():
    r = ReceptionStats(7)
    for seq in (65534, 65535, 0, 1):
        assert r.update(seq) == []
    assert r.extended_max == 0x10001 and r.expected == 4


def test_huge_jump_is_not_nacked():
    r = ReceptionStats(7)
    r.update(10)
    assert r.update(10 + MAX_NACK_BATCH + 5) == []


def test_report_block_loss_and_lsr():
    r = ReceptionStats(7)
    for seq in range(0, 100):
        if seq % 10 != 5:
            r.update(seq)
    r.sender_report(0x1234_5678_9ABC_DEF0, arrival=10.0)
    block = r.report_block(now=10.5)
    assert block.ssrc == 7 and block.packets_lost == 10
    assert block.fraction_lost == (10 << 8) // 100
    assert block.highest_sequence == 99
    assert block.lsr == 0x5678_9ABC and block.dlsr == 32768
    for seq in range(100, 200):
        r.update(seq)
    assert r.report_block(now=11.5).fraction_lost == 0


@given(st.lists(st.integers(0, 0xFFFF), max_size=300))
def test_any_order_never_breaks_invariants(seqs):
    r = ReceptionStats(1)
    for seq in seqs:
        lost = r.update(seq)
        assert len(lost) <= MAX_NACK_BATCH
    block = r.report_block(now=0.0)
    assert 0 <= block.fraction_lost <= 255
    assert r.received == len(seqs)
