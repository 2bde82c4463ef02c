"""sfu.rtx: the NACK requester on synthetic times (reordering hold, retries spaced by
the measured round trip, give-up, the counts), and Opus FEC written into SDP."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sfu.rtx import (
    NACK_DEFAULT_INTERVAL_S,
    NACK_HOLD_S,
    NACK_MAX_INTERVAL_S,
    NACK_MIN_INTERVAL_S,
    NackRequester,
    ResendBudget,
    Unrecovered,
    with_opus_fec,
)

SSRC = 0x5EED


def never(ssrc, seq):
    return False


def test_a_gap_is_held_for_reordering_then_nacked():
    nacks = NackRequester()
    nacks.missing(SSRC, [10, 11], 1.0)
    assert nacks.get_timer() == 1.0 + NACK_HOLD_S
    assert nacks.poll(1.005, never).nacks == {}  # still inside the hold
    round_ = nacks.poll(1.0 + NACK_HOLD_S, never)
    assert round_.nacks == {SSRC: [10, 11]} and round_.lost == []
    assert nacks.requested == 2


def test_a_packet_only_late_is_never_nacked():
    nacks = NackRequester()
    nacks.missing(SSRC, [10, 11], 1.0)
    round_ = nacks.poll(1.02, lambda ssrc, seq: seq == 10)  # 10 arrived during the hold
    assert round_.nacks == {SSRC: [11]}
    assert (nacks.reordered, nacks.requested) == (1, 1)
    assert nacks.recovered(SSRC, 11, 1.05)  # an RTX of 11
    assert (nacks.recovered_count, nacks.pending, nacks.get_timer()) == (1, 0, None)
    assert not nacks.recovered(SSRC, 11, 1.06)  # a duplicate: nothing missing


def test_retries_are_spaced_then_the_packet_is_given_up():
    nacks = NackRequester(retries=3)
    nacks.missing(SSRC, [7], 0.0)
    sent_at = []
    now = 0.0
    while (due := nacks.get_timer()) is not None:
        now = due
        round_ = nacks.poll(now, never)
        if round_.nacks:
            sent_at.append(round(now, 3))
    assert sent_at == [0.01, 0.11, 0.21]  # the hold, then the default interval (no RTT yet)
    assert round_.lost == [Unrecovered(SSRC, 7, 0.0)] and round(now, 3) == 0.31
    assert (nacks.requested, nacks.failed, nacks.pending) == (3, 1, 0)


def test_the_retry_interval_follows_the_measured_round_trip():
    nacks = NackRequester()
    assert nacks.interval == NACK_DEFAULT_INTERVAL_S
    for i in range(30):  # retransmissions that come back 80 ms after their NACK
        t = i * 1.0
        nacks.missing(SSRC, [i], t)
        nacks.poll(t + NACK_HOLD_S, never)
        nacks.recovered(SSRC, i, t + NACK_HOLD_S + 0.08)
    assert abs(nacks.rtt - 0.08) < 0.001
    assert abs(nacks.interval - 0.12) < 0.002  # 1.5 x the round trip
    fast, slow = NackRequester(), NackRequester()
    for requester, rtt in ((fast, 0.002), (slow, 1.5)):
        requester.missing(SSRC, [1], 0.0)
        requester.poll(NACK_HOLD_S, never)
        requester.recovered(SSRC, 1, NACK_HOLD_S + rtt)
    assert (fast.interval, slow.interval) == (NACK_MIN_INTERVAL_S, NACK_MAX_INTERVAL_S)


def test_a_packet_that_arrives_after_a_nack_counts_as_recovered():
    nacks = NackRequester()
    nacks.missing(SSRC, [5], 0.0)
    nacks.poll(0.01, never)
    assert nacks.poll(0.05, lambda ssrc, seq: True).nacks == {}
    assert (nacks.recovered_count, nacks.reordered, nacks.rtt) == (1, 0, None)  # not timed


def test_streams_are_followed_apart_and_forgotten():
    nacks = NackRequester()
    nacks.missing(1, [100], 0.0)
    nacks.missing(2, [100, 101], 0.0)
    assert nacks.poll(0.01, lambda ssrc, seq: ssrc == 1).nacks == {2: [100, 101]}
    nacks.forget(2)
    assert nacks.get_timer() is None and nacks.pending == 0
    nacks.missing(3, [1], 0.0)
    nacks.forget()
    assert nacks.poll(5.0, never).lost == []


def test_the_pending_list_is_bounded():
    nacks = NackRequester(max_pending=4)
    nacks.missing(SSRC, list(range(10)), 0.0)  # a hostile run of gaps
    assert nacks.pending == 4 and nacks.failed == 6
    round_ = nacks.poll(0.0, never)  # the dropped ones are reported at once
    assert [u.seq for u in round_.lost] == [0, 1, 2, 3, 4, 5] and round_.nacks == {}


def test_a_packet_missing_too_long_is_given_up_whatever_the_retries():
    nacks = NackRequester(retries=100, max_age=0.5)
    nacks.missing(SSRC, [1], 0.0)
    now = 0.0
    while (due := nacks.get_timer()) is not None:
        now = due
        nacks.poll(now, never)
    assert nacks.failed == 1 and 0.5 <= now < 0.7


@given(st.lists(st.tuples(st.sampled_from(["miss", "poll", "rtx"]), st.integers(0, 20),
                          st.floats(0, 0.2)), max_size=60))
def test_every_missing_packet_ends_exactly_once(ops):
    """Whatever the order of gaps, arrivals and polls, each packet found missing ends as
    reordered, recovered or failed once, and the NACKs for one are at most the retries."""
    nacks = NackRequester()
    now, arrived, missing, sent = 0.0, set(), set(), {}
    for op, seq, dt in ops:
        now += dt
        if op == "miss" and seq not in arrived and seq not in missing:
            missing.add(seq)
            nacks.missing(SSRC, [seq], now)
        elif op == "rtx":
            arrived.add(seq)
            nacks.recovered(SSRC, seq, now)
        else:
            for s in nacks.poll(now, lambda ssrc, q: q in arrived).nacks.get(SSRC, []):
                sent[s] = sent.get(s, 0) + 1
    while nacks.get_timer() is not None:
        now = max(now, nacks.get_timer())
        nacks.poll(now, lambda ssrc, q: q in arrived)
    assert nacks.reordered + nacks.recovered_count + nacks.failed == len(missing)
    assert all(n <= nacks.retries for n in sent.values())


# -- Opus FEC in SDP ------------------------------------------------------------------------

AIORTC_AUDIO = ("m=audio 9 UDP/TLS/RTP/SAVPF 96 0\r\na=mid:0\r\na=rtpmap:96 opus/48000/2\r\n"
                "a=rtpmap:0 PCMU/8000\r\n")


def test_opus_gets_inband_fec_where_aiortc_writes_no_fmtp():
    sdp = with_opus_fec(AIORTC_AUDIO)
    assert "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 minptime=10;useinbandfec=1\r\na=rtpmap:0" in sdp
    assert with_opus_fec(sdp) == sdp  # once


def test_an_existing_fmtp_is_completed_not_replaced():
    sdp = ("a=rtpmap:111 OPUS/48000/2\na=fmtp:111 minptime=10;stereo=1\n"
           "a=rtpmap:109 opus/48000/2\na=fmtp:109 useinbandfec=0\n")
    out = with_opus_fec(sdp)
    assert "a=fmtp:111 minptime=10;stereo=1;useinbandfec=1\n" in out
    assert "a=fmtp:109 useinbandfec=0\n" in out  # the peer said no: left as it is
    assert with_opus_fec("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 97\r\n") == "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 97\r\n"


@given(st.lists(st.sampled_from(["a=rtpmap:96 opus/48000/2", "a=rtpmap:97 OPUS/48000/2",
                                  "a=fmtp:96 minptime=10", "a=fmtp:97", "a=fmtp:96 x=1;",
                                  "a=rtpmap:98 VP8/90000", "a=fmtp:98 x=1", "m=audio 9", ""]),
                min_size=2, max_size=12), st.sampled_from(["\r\n", "\n"]))
def test_any_sdp_text_is_taken(lines, newline):
    sdp = newline.join(lines)
    out = with_opus_fec(sdp)
    assert with_opus_fec(out) == out
    kept = [line for line in sdp.split(newline) if not line.startswith(("a=fmtp:96", "a=fmtp:97"))]
    out_lines = out.split(newline)
    assert [line for line in out_lines if not line.startswith(("a=fmtp:96", "a=fmtp:97"))] == kept
    opus = {line.split()[0][9:] for line in lines if "opus" in line.lower()}
    for pt in opus:  # every Opus payload type has FEC, once
        assert any(line.startswith(f"a=fmtp:{pt} ") and "useinbandfec=1" in line for line in out_lines)


def test_the_resend_budget_is_a_share_of_the_estimate_with_a_floor_and_a_burst():
    budget = ResendBudget(share=0.25, minimum=64_000, burst=0.25, estimate=400_000)
    assert budget.rate == 100_000  # a quarter of 400 kbit/s
    depth = 100_000 / 8 * 0.25  # 3,125 bytes saved up
    assert budget.take(0.0, 1_200) and budget.take(0.0, 1_200)
    assert not budget.take(0.0, 1_200) and budget.refused == 1
    assert budget.take(0.1, 1_200)  # 1,250 bytes more 0.1 s later
    assert not budget.take(100.0, int(depth) + 1)  # never more than the burst at once
    budget.set_estimate(10_000)
    assert budget.rate == 64_000  # the floor
