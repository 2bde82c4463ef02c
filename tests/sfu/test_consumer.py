"""Consumer on a manual clock, without aiortc: negotiation and activation, the
late-joiner start, NACKs answered from the cache, sequence and timestamp rewriting
across pause/resume and a change of the incoming stream, translated sender reports."""

from __future__ import annotations

import pathlib

import pytest
from fakes import (
    PUBLISHER_SSRC,
    SUBSCRIBER_EXT_IDS,
    SUBSCRIBER_PAYLOAD_TYPES,
    VP8_DELTA,
    VP8_KEY,
    FakeTransport,
    Publisher,
)

from sfu.consumer import NACK_RESEND_INTERVAL_S, RESYNC_SEQ_SKIP, UNANSWERED_S, Consumer
from sfu.rtcp import Fir, Nack, Pli, ReceiverReport, Remb, ReportBlock, SenderReport
from sfu.rtp import RtpPacket, abs_send_time, parse_header
from sfu.rtx import ResendBudget

pytestmark = pytest.mark.twin


def seq_steps(headers):
    return [(h[2] - headers[0][2]) & 0xFFFF for h in headers]


def ts_steps(headers):
    return [(h[3] - headers[0][3]) & 0xFFFFFFFF for h in headers]


def test_negotiation_takes_the_subscribers_payload_type_and_ids(clock, make_producer, make_consumer):
    producer = make_producer()
    consumer = make_consumer(producer, start=False)
    assert consumer.state.paused and not consumer.negotiated
    assert consumer.negotiate({"video/H264": 102, "VIDEO/vp8": 120, "video/vp8": 121},
                              SUBSCRIBER_EXT_IDS)
    assert consumer.state.payload_type == 120  # the first one of the producer's mime type
    assert consumer.state.abs_send_time_id == 7
    ext_map = consumer.state.ext_map
    assert (ext_map[3], ext_map[4], ext_map[1]) == (7, 6, 0)  # mid is not forwarded
    assert consumer.state.paused  # until the activation runs
    clock.advance(0)
    assert not consumer.state.paused
    assert consumer.negotiate({}, {})  # once only


def test_a_refused_codec_forwards_nothing(clock, make_producer, make_consumer):
    producer = make_producer()
    consumer = make_consumer(producer, start=False)
    assert not consumer.negotiate({"video/H264": 102}, SUBSCRIBER_EXT_IDS)
    clock.advance(1)
    Publisher(producer).send(VP8_KEY)
    assert consumer.state.paused and consumer.transport.rtp == []


async def test_activation_waits_for_the_peer_connection(clock, make_producer, make_consumer):
    producer = make_producer()
    consumer = make_consumer(producer, start=False)
    consumer.transport.connected.clear()
    consumer.negotiate(SUBSCRIBER_PAYLOAD_TYPES, SUBSCRIBER_EXT_IDS)
    clock.advance(1)
    assert consumer.state.paused
    consumer.transport.connected.set()
    clock.advance(0)
    assert not consumer.state.paused


def test_closing_before_activation_cancels_it(clock, make_producer, make_consumer):
    producer = make_producer()
    consumer = make_consumer(producer, start=False)
    closed = []
    consumer.on_close.append(closed.append)
    consumer.negotiate(SUBSCRIBER_PAYLOAD_TYPES, SUBSCRIBER_EXT_IDS)
    consumer.close()
    clock.advance(1)
    assert consumer.state.paused and closed == [consumer] and producer.consumers == []
    consumer.close()
    assert closed == [consumer]


def test_forwarding_rewrites_and_starts_at_a_keyframe(clock, make_producer, make_consumer, upstream):
    producer = make_producer()
    pub = Publisher(producer)
    consumer = make_consumer(producer, ssrc=0xABCDEF01)
    assert len(upstream.rtcp_packets(Pli)) == 1  # started with no keyframe: one was asked for
    pub.send(VP8_DELTA)
    assert consumer.transport.rtp == [] and consumer.state.dropped == 1
    for payload in (VP8_KEY, VP8_DELTA, VP8_DELTA):
        pub.send(payload)
    headers = consumer.transport.headers()
    assert consumer.transport.payloads() == [VP8_KEY, VP8_DELTA, VP8_DELTA]
    assert {(h[0], h[4]) for h in headers} == {(120, 0xABCDEF01)}
    assert seq_steps(headers) == [0, 1, 2] and ts_steps(headers) == [0, 3000, 6000]


def late_joiner(clock, make_producer, make_consumer, age: float):
    """A consumer that starts ``age`` seconds after a keyframe and a delta frame."""
    producer = make_producer(keyframe_replay_age=1.0)
    pub = Publisher(producer)
    pub.send(VP8_KEY)
    pub.send(VP8_DELTA)
    clock.advance(age)
    return producer, pub, make_consumer(producer)


def test_a_late_joiner_starts_from_a_fresh_keyframe_without_asking(clock, make_producer, make_consumer, upstream):
    _, pub, consumer = late_joiner(clock, make_producer, make_consumer, 0.2)
    assert consumer.transport.payloads() == [VP8_KEY, VP8_DELTA]
    assert upstream.rtcp_packets(Pli) == [] and consumer.keyframe_requests == 0
    pub.send(VP8_DELTA)
    assert seq_steps(consumer.transport.headers()) == [0, 1, 2]


def test_a_late_joiner_on_an_ageing_keyframe_replays_and_asks_for_a_new_one(clock, make_producer, make_consumer, upstream):
    producer = make_producer(keyframe_replay_age=1.0)
    Publisher(producer).send(VP8_KEY)
    clock.advance(0.7)  # fresh enough to show, old enough to want the next one soon
    consumer = make_consumer(producer)
    assert consumer.transport.payloads() == [VP8_KEY]
    assert len(upstream.rtcp_packets(Pli)) == 1


def test_a_late_joiner_on_a_stale_keyframe_waits_for_the_next(clock, make_producer, make_consumer, upstream):
    producer, pub, consumer = late_joiner(clock, make_producer, make_consumer, 1.5)
    assert consumer.transport.rtp == [] and producer.replays == 0
    assert len(upstream.rtcp_packets(Pli)) == 1 and consumer.keyframe_requests == 1
    pub.send(VP8_DELTA)
    assert consumer.transport.rtp == []
    pub.send(VP8_KEY)
    assert consumer.transport.payloads() == [VP8_KEY]


def test_pli_and_fir_from_the_subscriber_go_upstream_throttled(clock, make_producer, make_consumer, upstream):
    producer = make_producer(keyframe_interval=1.0)
    consumer = make_consumer(producer)  # its start asked once
    consumer.receive_rtcp(Pli(sender_ssrc=1, media_ssrc=consumer.ssrc))
    consumer.receive_rtcp(Fir(sender_ssrc=1, media_ssrc=0, entries=[(consumer.ssrc, 1)]))
    assert len(upstream.rtcp_packets(Pli)) == 1 and consumer.keyframe_requests == 3
    clock.advance(1.0)
    assert len(upstream.rtcp_packets(Pli)) == 2


def test_nacks_are_answered_from_the_cache_with_the_consumers_numbers(clock, make_producer, make_consumer):
    producer = make_producer()
    pub = Publisher(producer)
    consumer = make_consumer(producer)
    for payload in (VP8_KEY, VP8_DELTA, b"\x10\x01third"):
        pub.send(payload)
    sent = consumer.transport.headers()
    wanted = [sent[1][2], sent[2][2], (sent[2][2] + 50) & 0xFFFF]  # the last was never sent
    consumer.receive_rtcp(Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=wanted))
    again = consumer.transport.headers()[3:]
    assert [h[2] for h in again] == wanted[:2]
    assert [(h[0], h[3], h[4]) for h in again] == [(h[0], h[3], h[4]) for h in sent[1:]]
    assert consumer.transport.payloads()[3:] == [VP8_DELTA, b"\x10\x01third"]
    assert (consumer.nacks, consumer.retransmitted) == (3, 2)


def test_resends_stay_within_the_subscribers_budget_and_a_hole_left_restarts_it(
        clock, make_producer, make_consumer):
    producer = make_producer()
    pub = Publisher(producer)
    consumer = make_consumer(producer)
    for payload in (VP8_KEY, *[VP8_DELTA] * 9):
        pub.send(payload)
    sent = consumer.transport.headers()
    size = len(consumer.transport.rtp[1])
    # room for three packets now (refilled at 64 kbit/s, the floor)
    consumer.resend_budget = budget = ResendBudget(estimate=0, burst=3 * size * 8 / 64_000)
    consumer.receive_rtcp(Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=[h[2] for h in sent[1:]]))
    assert consumer.retransmitted == 3 and budget.refused >= 1
    # the rest is not resent: the subscriber's link is full; its jitter buffer must not
    # wait on the hole, so the consumer restarts at the next keyframe past it
    assert consumer.resyncs == 1 and consumer.seq_skipped > 0
    pub.send(VP8_DELTA)
    restart = consumer.transport.headers()[-1][2]
    assert (restart - sent[-1][2]) & 0xFFFF > 1  # numbers moved past the hole


def rtx_consumer(clock, producer, codecs):
    consumer = Consumer(producer, "PA_viewer", FakeTransport(), 0x50B5C001, rtx_ssrc=0x50B5C0DE)
    assert consumer.negotiate(codecs, SUBSCRIBER_EXT_IDS)
    clock.advance(0)
    return consumer


def test_nacks_are_answered_as_rtx_when_the_subscriber_negotiated_it(clock, make_producer):
    producer = make_producer()
    pub = Publisher(producer)
    consumer = rtx_consumer(clock, producer, {**SUBSCRIBER_PAYLOAD_TYPES, "video/rtx": 121})
    for payload in (VP8_KEY, VP8_DELTA, b"\x10\x01third"):
        pub.send(payload)
    sent = consumer.transport.headers()
    consumer.receive_rtcp(Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=[sent[1][2], sent[2][2]]))
    clock.advance(0.2)  # asked again later: resent again, the next RTX number
    consumer.receive_rtcp(Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=[sent[2][2]]))
    rtx = consumer.transport.rtp[3:]
    headers = [parse_header(d) for d in rtx]
    assert {(h[0], h[4]) for h in headers} == {(121, 0x50B5C0DE)}
    assert [(h[2] - headers[0][2]) & 0xFFFF for h in headers] == [0, 1, 2]
    assert [d[h[5]:h[5] + 2] for d, h in zip(rtx, headers)] == \
        [sent[i][2].to_bytes(2, "big") for i in (1, 2, 2)]  # the original seqs (OSN)
    assert [d[h[5] + 2:h[6]] for d, h in zip(rtx, headers)] == [VP8_DELTA, b"\x10\x01third", b"\x10\x01third"]
    assert [h[3] for h in headers] == [sent[1][3], sent[2][3], sent[2][3]]
    assert consumer.retransmitted == 3 and consumer.stats()["rtx"]


def test_without_rtx_negotiated_nacks_resend_the_packet(clock, make_producer):
    producer = make_producer()
    pub = Publisher(producer)
    consumer = rtx_consumer(clock, producer, SUBSCRIBER_PAYLOAD_TYPES)  # its answer dropped RTX
    pub.send(VP8_KEY)
    consumer.receive_rtcp(Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=[consumer.transport.headers()[0][2]]))
    assert consumer.transport.rtp[1] == consumer.transport.rtp[0]
    assert consumer.rtx_payload_type is None and not consumer.stats()["rtx"]


def test_audio_is_never_sent_as_rtx(clock, make_producer):
    consumer = rtx_consumer(clock, make_producer("audio"), {**SUBSCRIBER_PAYLOAD_TYPES, "video/rtx": 121})
    assert consumer.rtx_payload_type is None


def test_audio_nacks_are_counted_not_answered(clock, make_producer, make_consumer):
    producer = make_producer("audio")
    consumer = make_consumer(producer)
    Publisher(producer, step=960).send(b"opus")
    consumer.receive_rtcp(Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=[1]))
    assert (consumer.nacks, consumer.retransmitted, len(consumer.transport.rtp)) == (1, 0, 1)


def test_pause_and_resume_continue_the_output_sequence(clock, make_producer, make_consumer):
    producer = make_producer(keyframe_replay_age=0.0)  # no replay: wait for the next keyframe
    pub = Publisher(producer)
    consumer = make_consumer(producer)
    pub.send(VP8_KEY)
    pub.send(VP8_DELTA)
    consumer.pause()
    for _ in range(30):  # the publisher goes on; the subscriber sees nothing
        pub.send(VP8_DELTA)
    assert len(consumer.transport.rtp) == 2
    clock.advance(1)
    consumer.resume()
    pub.send(VP8_DELTA)  # not a keyframe: held back
    pub.send(VP8_KEY)
    pub.send(VP8_DELTA)
    headers = consumer.transport.headers()
    assert consumer.transport.payloads() == [VP8_KEY, VP8_DELTA, VP8_KEY, VP8_DELTA]
    assert seq_steps(headers) == [0, 1, 2, 3]  # no hole where the pause was
    assert ts_steps(headers) == [0, 3000, 3001, 6001]  # a tick after the last one sent


def test_audio_resumes_at_the_next_packet(clock, make_producer, make_consumer):
    producer = make_producer("audio")
    pub = Publisher(producer, step=960)
    consumer = make_consumer(producer)
    pub.send(b"a1")
    consumer.pause()
    pub.send(b"a2")
    consumer.resume()
    pub.send(b"a3")
    headers = consumer.transport.headers()
    assert consumer.transport.payloads() == [b"a1", b"a3"]
    assert seq_steps(headers) == [0, 1] and ts_steps(headers) == [0, 1]


@pytest.mark.parametrize("new_seq", [10, 40000, 65000])
def test_a_new_incoming_stream_continues_the_output(clock, make_producer, make_consumer, upstream, new_seq):
    """The publisher restarts its encoder (a new SSRC, new random sequence and
    timestamp): the subscriber's stream goes on as one, from the new keyframe."""
    producer = make_producer()
    first = Publisher(producer, seq=30000, ts=5000)
    consumer = make_consumer(producer)
    first.send(VP8_KEY)
    first.send(VP8_DELTA)
    plis = len(upstream.rtcp_packets(Pli))
    clock.advance(2)
    second = Publisher(producer, ssrc=PUBLISHER_SSRC + 1, seq=new_seq, ts=0xFFFFFF00)
    second.send(VP8_DELTA)  # mid-stream: not shown, and a keyframe is asked for
    assert PUBLISHER_SSRC + 1 in [p.media_ssrc for p in upstream.rtcp_packets(Pli)[plis:]]
    second.send(VP8_KEY)
    second.send(VP8_DELTA)
    headers = consumer.transport.headers()
    assert consumer.transport.payloads() == [VP8_KEY, VP8_DELTA, VP8_KEY, VP8_DELTA]
    assert {h[4] for h in headers} == {consumer.ssrc}
    assert seq_steps(headers) == [0, 1, 2, 3]
    assert ts_steps(headers) == [0, 3000, 3001, 6001]
    # NACKs now name the new stream's packets
    consumer.receive_rtcp(Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=[headers[2][2]]))
    assert consumer.transport.payloads()[-1] == VP8_KEY


def test_sender_reports_are_translated(clock, make_producer, make_consumer):
    producer = make_producer()
    pub = Publisher(producer, ts=1_000_000)
    consumer = make_consumer(producer, ssrc=0x0BADCAFE)
    assert consumer.sender_report() is None  # nothing from the publisher yet
    producer.receive_sender_report(SenderReport(ssrc=PUBLISHER_SSRC, ntp_timestamp=0xE1234567_89ABCDEF,
                                                rtp_timestamp=999_000, packet_count=500,
                                                octet_count=90_000), clock.monotonic())
    assert consumer.sender_report() is None  # nothing forwarded yet
    pub.send(VP8_KEY)
    pub.send(VP8_DELTA)
    first_out_ts = consumer.transport.headers()[0][3]
    block = ReportBlock(ssrc=0x1234, fraction_lost=0, packets_lost=0, highest_sequence=0,
                        jitter=0, lsr=0, dlsr=0)
    sr = consumer.sender_report([block])
    assert sr.ssrc == 0x0BADCAFE and sr.ntp_timestamp == 0xE1234567_89ABCDEF
    assert sr.rtp_timestamp == (first_out_ts - 1000) & 0xFFFFFFFF  # 999000 in the output's terms
    assert (sr.packet_count, sr.octet_count) == (2, len(VP8_KEY) + len(VP8_DELTA))
    assert sr.reports == [block]


def test_receiver_feedback_is_kept(clock, make_producer, make_consumer):
    consumer = make_consumer(make_producer())
    consumer.receive_rtcp(Remb(sender_ssrc=1, bitrate=750_000, ssrcs=[consumer.ssrc]))
    consumer.receive_rtcp(ReceiverReport(ssrc=1, reports=[
        ReportBlock(ssrc=consumer.ssrc, fraction_lost=25, packets_lost=3, highest_sequence=0,
                    jitter=0, lsr=0, dlsr=0)]))
    stats = consumer.stats()
    assert (stats["remb_bitrate"], stats["fraction_lost"]) == (750_000, 25)


def test_a_real_vp8_keyframe_from_the_fixtures_is_forwarded_rewritten(clock, make_producer, make_consumer):
    """aiortc's own VP8 keyframe packet (mid id 1, abs-send-time id 3, transport-cc id 5)."""
    data = (pathlib.Path(__file__).parent.parent / "data" / "rtp_vp8_keyframe.bin").read_bytes()
    original = RtpPacket.parse(data)
    producer = make_producer(ssrcs=(original.ssrc,))
    consumer = make_consumer(producer, ssrc=0x77777777)
    Publisher(producer, ssrc=original.ssrc).receive(data)
    assert producer.keyframes_seen == 1
    (out,) = [RtpPacket.parse(d) for d in consumer.transport.rtp]
    assert (out.ssrc, out.payload_type, out.payload) == (0x77777777, 120, original.payload)
    assert out.extensions == [(7, abs_send_time(clock.wall()).to_bytes(3, "big"))]
    assert len(consumer.transport.rtp[0]) == len(data)  # blanked to padding, never shortened


def test_a_nack_listing_one_seq_many_times_resends_it_once(clock, make_producer, make_consumer):
    producer = make_producer()
    pub = Publisher(producer)
    consumer = make_consumer(producer)
    pub.send(VP8_KEY)
    pub.send(VP8_DELTA)
    seq = consumer.transport.headers()[1][2]
    consumer.receive_rtcp(Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=[seq] * 5000))
    assert consumer.retransmitted == 1 and len(consumer.transport.rtp) == 3
    # asked again at once: it is in flight, not resent; later it is
    consumer.receive_rtcp(Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=[seq]))
    assert consumer.retransmitted == 1
    clock.advance(0.2)
    consumer.receive_rtcp(Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=[seq]))
    assert consumer.retransmitted == 2
    assert consumer.nacks == 5002 and consumer.nacks_refused == 5000


def test_one_nack_resends_at_most_the_cap(clock, make_producer, make_consumer):
    from sfu.consumer import NACK_MAX_PER_REQUEST

    producer = make_producer()
    pub = Publisher(producer)
    consumer = make_consumer(producer)
    pub.send(VP8_KEY)
    for _ in range(NACK_MAX_PER_REQUEST + 100):
        pub.send(VP8_DELTA)
    seqs = [h[2] for h in consumer.transport.headers()]
    before = len(consumer.transport.rtp)
    consumer.receive_rtcp(Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=seqs))
    resent = consumer.transport.headers()[before:]
    assert len(resent) == NACK_MAX_PER_REQUEST
    assert [h[2] for h in resent] == seqs[-NACK_MAX_PER_REQUEST:]  # the newest


def test_only_a_real_refusal_warns(clock, make_producer, make_consumer, caplog):
    producer = make_producer()
    consumer = make_consumer(producer, start=False)
    with caplog.at_level("WARNING", logger="sfu.consumer"):
        assert not consumer.negotiate({}, {})  # its m-line is not in this answer yet
        assert caplog.records == []
        assert not consumer.negotiate({"video/H264": 102}, {})
    [line] = caplog.records
    assert "has no video/vp8" in line.getMessage() and "video/H264" in line.getMessage()
    assert consumer.negotiate(SUBSCRIBER_PAYLOAD_TYPES, SUBSCRIBER_EXT_IDS)  # a later answer



def test_a_nack_from_before_a_restart_restarts_past_the_hole_at_a_keyframe(
        clock, make_producer, make_consumer, upstream):
    # aiortc's jitter buffer hands out no frame past a hole until 512 later packets
    # pushed it out: a keyframe alone does not help, the sequence numbers must move on
    producer = make_producer()
    pub = Publisher(producer)
    consumer = make_consumer(producer)
    pub.send(VP8_KEY)
    for _ in range(4):
        pub.send(VP8_DELTA)
    before = consumer.transport.headers()
    consumer.resume()  # a restart (as at a change of layer or of source)
    pub.send(VP8_KEY)
    pub.send(VP8_DELTA)
    last = consumer.transport.headers()[-1][2]
    clock.advance(5.0)  # the keyframe is too old to replay: the publisher is asked
    plis, count = len(upstream.rtcp_packets(Pli)), len(consumer.transport.rtp)
    consumer.receive_rtcp(Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=[before[2][2]]))
    assert (consumer.resyncs, consumer.retransmitted) == (1, 0)  # nothing resent: its mapping is gone
    assert len(upstream.rtcp_packets(Pli)) == plis + 1
    pub.send(VP8_DELTA)  # nothing until the keyframe
    assert len(consumer.transport.rtp) == count
    pub.send(VP8_KEY)
    first = consumer.transport.headers()[count]
    assert first[2] == (last + 1 + RESYNC_SEQ_SKIP) & 0xFFFF
    assert consumer.transport.payloads()[count] == VP8_KEY
    clock.advance(2.0)
    # the same hole and the skipped numbers asked for again: no new resync, nothing sent
    count = len(consumer.transport.rtp)
    consumer.receive_rtcp(Nack(sender_ssrc=1, media_ssrc=consumer.ssrc,
                               lost=[before[2][2], (last + 5) & 0xFFFF]))
    assert consumer.resyncs == 1 and consumer.stats()["resyncs"] == 1
    assert len(consumer.transport.rtp) == count


def test_a_packet_missing_from_the_cache_resyncs_only_once_given_up(
        clock, make_producer, make_consumer):
    # lost upstream: the node's own NACKs may still bring it, then it is forwarded late;
    # still missing after UNANSWERED_S (given up upstream), aiortc would stall on it.
    # The producer's own give-up resyncs too (test_producer); here its NACKs go on
    producer = make_producer()
    producer.nacks.retries, producer.nacks.max_age = 1000, 1000.0
    pub = Publisher(producer)
    consumer = make_consumer(producer)
    pub.send(VP8_KEY)
    pub.send(VP8_DELTA)
    pub.send(VP8_DELTA, skip=1)  # one packet lost on the publisher's link
    sent = consumer.transport.headers()
    hole = (sent[1][2] + 1) & 0xFFFF  # the number the consumer keeps for it
    ahead = (sent[-1][2] + 40) & 0xFFFF  # never sent
    bogus = Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=[ahead])
    for _ in range(3):
        consumer.receive_rtcp(bogus)
        clock.advance(UNANSWERED_S)
    assert consumer.resyncs == 0
    nack = Nack(sender_ssrc=1, media_ssrc=consumer.ssrc, lost=[hole, ahead])
    consumer.receive_rtcp(nack)
    clock.advance(UNANSWERED_S / 2)
    consumer.receive_rtcp(nack)  # asked again, still being recovered upstream
    assert consumer.resyncs == 0
    clock.advance(UNANSWERED_S / 2)
    last = consumer.transport.headers()[-1][2]
    consumer.receive_rtcp(nack)  # given up by now
    assert consumer.resyncs == 1
    clock.advance(2.0)
    pub.send(VP8_KEY)
    assert consumer.transport.headers()[-1][2] == (last + 1 + RESYNC_SEQ_SKIP) & 0xFFFF


def test_a_resume_after_a_bandwidth_pause_moves_the_sequence_numbers_on(
        clock, make_producer, make_consumer):
    producer = make_producer()
    pub = Publisher(producer)
    consumer = make_consumer(producer)
    pub.send(VP8_KEY)
    pub.send(VP8_DELTA)
    last = consumer.transport.headers()[-1][2]
    consumer.pause_for_bandwidth()
    pub.send(VP8_DELTA)
    clock.advance(5.0)
    consumer.resume_from_bandwidth()
    pub.send(VP8_KEY)
    assert [h[2] for h in consumer.transport.headers()[2:]] == [(last + 1 + RESYNC_SEQ_SKIP) & 0xFFFF]
