"""Producer on a manual clock: keyframe cache and replay, the PLI throttle, NACKs and
RTX upstream, sender reports. No network, no sleeps: RTP bytes go straight into
``receive_rtp`` and what the producer sends upstream is recorded."""

from __future__ import annotations

import pytest

from fakes import PUBLISHER_EXT_IDS, PUBLISHER_SSRC, VP8, VP8_DELTA, VP8_KEY, FakeTransport, Publisher
from sfu.consumer import RESYNC_SEQ_SKIP
from sfu.errors import Closed
from sfu.extensions import EXT_RID
from sfu.forward import ConsumerState
from sfu.rtcp import Nack, Pli, SenderReport
from sfu.rtp import RtpPacket, abs_send_time, parse_header
from sfu.simulcast import SimulcastProducer

pytestmark = pytest.mark.twin


def bound_state(video: bool = True) -> tuple[ConsumerState, FakeTransport]:
    """A consumer's rewriting state, bound to a recording send path and running."""
    sink = FakeTransport()
    state = ConsumerState(0xD00D, 120, None, 0, video)
    state.bind(*sink.send_path)
    state.paused = False
    return state, sink


def test_a_keyframe_is_cached_with_its_time(clock, make_producer):
    producer = make_producer()
    pub = Publisher(producer)
    pub.send(VP8_DELTA)
    assert producer.keyframes_seen == 0 and producer.keyframe_age() == float("inf")
    key = pub.send(VP8_KEY)
    assert producer.keyframes_seen == 1
    assert producer.last_keyframe_seq == parse_header(key)[2]
    assert producer.cache.get(producer.last_keyframe_seq) == key
    clock.advance(0.25)
    assert producer.keyframe_age() == pytest.approx(0.25)
    assert (producer.packets, producer.octets) == (2, len(VP8_DELTA) + len(VP8_KEY))


def test_a_fresh_keyframe_is_replayed_gap_free_then_live_continues(clock, make_producer):
    producer = make_producer(keyframe_replay_age=1.0)
    pub = Publisher(producer)  # its sequence wraps during the test
    pub.send(VP8_DELTA)
    pub.send(VP8_KEY)
    for _ in range(4):
        pub.send(VP8_DELTA)
    clock.advance(0.9)
    state, sink = bound_state()
    assert producer.replay_from_keyframe(state)
    assert producer.replays == 1
    assert sink.payloads() == [VP8_KEY] + [VP8_DELTA] * 4
    producer._states.append(state)  # from now on it is fanned out to, as a consumer's is
    pub.send(VP8_DELTA)  # live
    seqs = [h[2] for h in sink.headers()]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == [0, 1, 2, 3, 4, 5]
    ts = [h[3] for h in sink.headers()]
    assert [(t - ts[0]) & 0xFFFFFFFF for t in ts] == [0, 3000, 6000, 9000, 12000, 15000]


def test_a_stale_keyframe_is_not_replayed(clock, make_producer):
    producer = make_producer(keyframe_replay_age=1.0)
    pub = Publisher(producer)
    pub.send(VP8_KEY)
    pub.send(VP8_DELTA)
    clock.advance(1.01)
    state, sink = bound_state()
    assert not producer.replay_from_keyframe(state)
    assert sink.rtp == [] and producer.replays == 0 and not state.started


def test_a_gap_since_the_keyframe_stops_the_replay_and_is_nacked(clock, make_producer, upstream):
    producer = make_producer()
    pub = Publisher(producer, seq=100)
    pub.send(VP8_KEY)         # 100
    pub.send(VP8_DELTA)       # 101
    pub.send(VP8_DELTA, skip=2)  # 104: 102 and 103 lost
    clock.advance(0.01)  # the reordering hold
    nacks = upstream.rtcp_packets(Nack)
    assert [(n.media_ssrc, n.lost, n.sender_ssrc) for n in nacks] == [(PUBLISHER_SSRC, [102, 103], 0xC0FFEE)]
    assert producer.nacks_sent == 2
    state, sink = bound_state()
    assert not producer.replay_from_keyframe(state)
    assert sink.rtp == []


def test_no_keyframe_no_replay_and_audio_has_no_cache(make_producer):
    video = make_producer()
    Publisher(video).send(VP8_DELTA)
    assert not video.replay_from_keyframe(bound_state()[0])
    audio = make_producer("audio")
    Publisher(audio, step=960).send(b"opus")
    assert audio.cache is None and not audio.replay_from_keyframe(bound_state(False)[0])


def test_at_most_one_pli_per_interval_and_the_pending_one_when_it_ends(clock, make_producer, upstream):
    producer = make_producer(keyframe_interval=1.0)
    producer.request_keyframe()
    assert [(p.media_ssrc, p.sender_ssrc) for p in upstream.rtcp_packets(Pli)] == [(PUBLISHER_SSRC, 0xC0FFEE)]
    for _ in range(5):  # a burst of subscribers: remembered, not sent
        clock.advance(0.1)
        producer.request_keyframe()
    assert len(upstream.rtcp_packets(Pli)) == 1
    assert [t.when for t in clock.pending] == [pytest.approx(clock.now - 0.5 + 1.0)]  # one timer
    clock.advance(0.49)
    assert len(upstream.rtcp_packets(Pli)) == 1
    clock.advance(0.02)  # the interval ends: the pending request goes out
    assert len(upstream.rtcp_packets(Pli)) == 2
    assert producer.keyframes.sent == 2 and producer.keyframes.suppressed == 5
    assert clock.pending == []
    clock.advance(10)
    assert len(upstream.rtcp_packets(Pli)) == 2  # nothing more was asked for


def test_a_keyframe_arriving_satisfies_the_pending_request(clock, make_producer, upstream):
    producer = make_producer(keyframe_interval=1.0)
    producer.request_keyframe()
    clock.advance(0.3)
    producer.request_keyframe()
    Publisher(producer).send(VP8_KEY)  # the publisher sent one anyway
    clock.advance(1.0)
    assert len(upstream.rtcp_packets(Pli)) == 1


def test_close_cancels_the_pending_request_and_audio_never_asks(clock, make_producer, upstream):
    producer = make_producer()
    producer.request_keyframe()
    producer.request_keyframe()
    producer.close()
    clock.advance(5)
    assert len(upstream.rtcp_packets(Pli)) == 1 and clock.pending == []
    make_producer("audio").request_keyframe()
    assert len(upstream.rtcp_packets(Pli)) == 1


def test_rtx_is_restored_to_the_original_packet(make_producer):
    producer = make_producer()
    state, sink = bound_state()
    producer._states.append(state)  # a consumer's state, without a consumer
    pub = Publisher(producer, seq=500)
    pub.send(VP8_KEY)
    rtx = RtpPacket(payload_type=97, sequence_number=7, timestamp=pub.ts, ssrc=0x77,
                    payload=(502).to_bytes(2, "big") + VP8_DELTA).serialize()
    pt, _, seq, ts, ssrc, offset, end, *_ = parse_header(rtx)
    producer.receive_rtp(rtx, pt, seq, ts, ssrc, offset, end)
    assert producer.rtx_received == 1
    assert producer.cache.get(502) is not None and parse_header(producer.cache.get(502))[4] == PUBLISHER_SSRC
    assert sink.payloads() == [VP8_KEY, VP8_DELTA]
    assert [h[2] - sink.headers()[0][2] for h in sink.headers()] == [0, 2]


def test_forwarded_packets_are_stamped_with_the_clocks_wall_time(clock, make_producer, make_consumer):
    producer = make_producer()
    consumer = make_consumer(producer)
    clock.advance(12.5)
    # the publisher's mid (id 1) and abs-send-time (id 3); the subscriber's ids are 9 and 7
    Publisher(producer).send(VP8_KEY, extensions=[(1, b"0"), (3, b"\x00\x00\x01")])
    packet = RtpPacket.parse(consumer.transport.rtp[-1])
    assert packet.extensions == [(7, abs_send_time(clock.wall()).to_bytes(3, "big"))]  # mid blanked


def test_sender_reports_are_kept_for_the_consumers(clock, make_producer):
    producer = make_producer()
    Publisher(producer).send(VP8_KEY)
    report = SenderReport(ssrc=PUBLISHER_SSRC, ntp_timestamp=0xE0000000_80000000,
                          rtp_timestamp=1234, packet_count=1, octet_count=45)
    producer.receive_sender_report(report, clock.monotonic())
    assert (producer.last_sr.ntp_timestamp, producer.last_sr.rtp_timestamp) == (0xE0000000_80000000, 1234)
    assert producer.last_sr.arrival == clock.now


class RecordingTap:
    """A ProducerTap that keeps what it was told, in order."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple] = []
        self.fail = fail

    def rtp(self, data, arrival, keyframe):
        self.calls.append(("rtp", data, arrival, keyframe))
        if self.fail:
            raise RuntimeError("a broken tap")

    def sender_report(self, ntp, rtp_ts, arrival):
        self.calls.append(("sr", ntp, rtp_ts, arrival))

    def stream_changed(self, ssrc):
        self.calls.append(("stream", ssrc))

    def producer_closed(self):
        self.calls.append(("closed",))


def test_a_tap_sees_every_packet_with_its_wall_time_and_keyframe_flag(clock, make_producer, make_consumer):
    producer = make_producer()
    consumer = make_consumer(producer)
    tap = RecordingTap()
    producer.add_tap(tap)
    pub = Publisher(producer)
    clock.advance(3.0)
    delta = pub.send(VP8_DELTA)
    key = pub.send(VP8_KEY)
    assert tap.calls == [("rtp", delta, clock.wall(), False), ("rtp", key, clock.wall(), True)]
    assert len(consumer.transport.rtp) == 1  # the consumer got its keyframe as before
    producer.remove_tap(tap)
    pub.send(VP8_DELTA)
    assert len(tap.calls) == 2


def test_a_tap_hears_sender_reports_ssrc_changes_and_the_close(clock, make_producer):
    producer = make_producer()
    tap = RecordingTap()
    producer.add_tap(tap)
    Publisher(producer).send(VP8_KEY)
    report = SenderReport(ssrc=PUBLISHER_SSRC, ntp_timestamp=0xE0000000_80000000,
                          rtp_timestamp=1234, packet_count=1, octet_count=45)
    producer.receive_sender_report(report, clock.monotonic())
    Publisher(producer, ssrc=0x1234).send(VP8_KEY)
    producer.close()
    kinds = [c[0] for c in tap.calls]
    assert kinds == ["rtp", "sr", "stream", "rtp", "closed"]
    assert tap.calls[1] == ("sr", 0xE0000000_80000000, 1234, clock.wall())
    assert tap.calls[2] == ("stream", 0x1234)
    Publisher(producer).send(VP8_KEY)  # closed: nothing more
    assert len(tap.calls) == 5
    with pytest.raises(Closed):
        producer.add_tap(RecordingTap())


def test_a_failing_tap_does_not_stop_forwarding(make_producer, make_consumer):
    producer = make_producer()
    consumer = make_consumer(producer)
    producer.add_tap(RecordingTap(fail=True))
    pub = Publisher(producer)
    pub.send(VP8_KEY)
    pub.send(VP8_DELTA)
    assert len(consumer.transport.rtp) == 2


# -- loss on the way in: NACKs, RTX, and a keyframe when recovery fails ---------------------


def rtx_of(pub: Publisher, seq: int, payload: bytes, rtx_seq: int = 7, ssrc: int = 0x77) -> None:
    """The publisher's RTX retransmission of ``seq`` (payload type 97, its own SSRC)."""
    rtx = RtpPacket(payload_type=97, sequence_number=rtx_seq, timestamp=pub.ts, ssrc=ssrc,
                    payload=seq.to_bytes(2, "big") + payload).serialize()
    pt, _, rseq, ts, rssrc, offset, end, *_ = parse_header(rtx)
    pub.producer.receive_rtp(rtx, pt, rseq, ts, rssrc, offset, end)


def test_a_packet_only_late_is_not_nacked(clock, make_producer, upstream):
    producer = make_producer()
    pub = Publisher(producer, seq=100)
    pub.send(VP8_KEY)                  # 100
    pub.send(VP8_DELTA, skip=1)        # 102: 101 missing...
    clock.advance(0.004)
    pub.receive(pub.packet(VP8_DELTA, 101, pub.ts))  # ...for 4 ms: reordered on the path
    clock.advance(1)
    assert upstream.rtcp_packets(Nack) == [] and producer.nacks_sent == 0
    assert producer.nacks.reordered == 1 and upstream.rtcp_packets(Pli) == []


def test_a_lost_packet_is_nacked_until_its_rtx_comes(clock, make_producer, upstream):
    producer = make_producer()
    pub = Publisher(producer, seq=100)
    pub.send(VP8_KEY)
    pub.send(VP8_DELTA, skip=1)        # 101 lost
    clock.advance(0.01)
    assert [n.lost for n in upstream.rtcp_packets(Nack)] == [[101]]
    clock.advance(0.1)                 # no answer within the interval: asked again
    assert [n.lost for n in upstream.rtcp_packets(Nack)] == [[101], [101]]
    clock.advance(0.04)
    rtx_of(pub, 101, VP8_DELTA)
    assert producer.cache.get(101) is not None
    clock.advance(2)
    assert producer.nacks_sent == 2 and producer.nack_recovered == 1 and producer.nack_failed == 0
    assert producer.nacks.rtt == pytest.approx(0.04)  # from the last NACK to the RTX
    assert upstream.rtcp_packets(Pli) == [] and producer.keyframes_for_loss == 0


def test_a_packet_never_recovered_asks_for_a_keyframe_once_a_second(clock, make_producer, upstream):
    producer = make_producer()
    pub = Publisher(producer, seq=100)
    pub.send(VP8_KEY)
    pub.send(VP8_DELTA, skip=1)        # 101 lost for good
    clock.advance(0.3)
    assert len(upstream.rtcp_packets(Nack)) == 3 and upstream.rtcp_packets(Pli) == []
    clock.advance(0.02)                # the third NACK had its interval: given up
    assert producer.nack_failed == 1 and len(upstream.rtcp_packets(Pli)) == 1
    pub.send(VP8_DELTA, skip=1)        # another loss, given up inside the same second
    clock.advance(0.4)
    assert producer.nack_failed == 2 and producer.keyframes_for_loss == 2
    assert len(upstream.rtcp_packets(Pli)) == 1  # throttled: sent when the second ends
    clock.advance(0.6)
    assert len(upstream.rtcp_packets(Pli)) == 2


def test_a_keyframe_since_the_loss_makes_a_request_useless(clock, make_producer, upstream):
    producer = make_producer()
    pub = Publisher(producer, seq=100)
    pub.send(VP8_KEY)
    pub.send(VP8_DELTA, skip=1)        # 101 lost...
    clock.advance(0.05)
    pub.send(VP8_KEY)                  # ...but the stream starts again here
    clock.advance(1)
    assert producer.nack_failed == 1 and upstream.rtcp_packets(Pli) == []


def test_a_new_stream_forgets_the_old_ones_losses(clock, make_producer, upstream):
    producer = make_producer()
    pub = Publisher(producer, seq=100)
    pub.send(VP8_KEY)
    pub.send(VP8_DELTA, skip=1)
    Publisher(producer, ssrc=0x1234, seq=9).send(VP8_KEY)  # the publisher restarted
    clock.advance(1)
    assert upstream.rtcp_packets(Nack) == [] and producer.nacks.pending == 0


def test_close_stops_the_nacks(clock, make_producer, upstream):
    producer = make_producer()
    pub = Publisher(producer, seq=100)
    pub.send(VP8_KEY)
    pub.send(VP8_DELTA, skip=1)
    producer.close()
    clock.advance(1)
    assert upstream.rtcp_packets(Nack) == [] and clock.pending == []


def test_audio_losses_are_not_nacked(clock, make_producer, upstream):
    producer = make_producer("audio")
    pub = Publisher(producer, seq=100, step=960)
    pub.send(b"\x01" * 20)
    pub.send(b"\x01" * 20, skip=1)
    clock.advance(1)
    assert upstream.rtcp_packets(Nack) == [] and upstream.rtcp_packets(Pli) == []


def test_a_simulcast_layer_given_up_asks_for_that_layers_keyframe(clock, upstream):
    producer = SimulcastProducer(rids=("q", "h"), participant_id="PA_camera", kind="video", mid="0",
                                 codec=VP8, ext_ids={**PUBLISHER_EXT_IDS, EXT_RID: 10},
                                 transport=upstream, rtcp_ssrc=0xC0FFEE, clock=clock, scheduler=clock)
    pubs = [Publisher(producer, ssrc=0xA0 + i, seq=1000 * i) for i in range(2)]
    for i, pub in enumerate(pubs):
        data = pub.packet(VP8_KEY, pub.seq, pub.ts, extensions=[(10, b"qh"[i:i + 1])])
        assert producer.learn_stream(data, pub.ssrc, 96)
        pub.receive(data)
        pub.seq += 1
    pubs[1].send(VP8_DELTA, skip=1)    # layer h loses 1001 for good
    pubs[0].send(VP8_DELTA)
    clock.advance(0.5)
    assert {n.media_ssrc for n in upstream.rtcp_packets(Nack)} == {0xA1}
    assert [p.media_ssrc for p in upstream.rtcp_packets(Pli)] == [0xA1]


def test_a_packet_given_up_resyncs_the_consumers_that_forwarded_around_it(
        clock, make_producer, make_consumer, upstream):
    # aiortc's receiver would hold every frame after the hole until 512 packets pushed
    # it out: the consumers started before the loss restart at a keyframe at once
    producer = make_producer()
    pub = Publisher(producer, seq=100)
    before = make_consumer(producer)
    pub.send(VP8_KEY)
    clock.advance(0.05)
    pub.send(VP8_DELTA, skip=1)        # 101 lost for good
    clock.advance(0.01)
    after = make_consumer(producer, ssrc=0x50B5C002)  # started past the hole
    clock.advance(0.4)
    assert producer.nack_failed == 1 and producer.resyncs_for_loss == 1
    assert (before.resyncs, after.resyncs) == (1, 0)
    last = before.transport.headers()[-1][2]
    pub.send(VP8_KEY)                  # the keyframe the loss asked for
    assert before.transport.headers()[-1][2] == (last + 1 + RESYNC_SEQ_SKIP) & 0xFFFF
    pub.send(VP8_DELTA, skip=1)        # lost again within the second: no second resync
    clock.advance(0.4)
    assert producer.nack_failed == 2 and before.resyncs == 1
