"""Participant on a manual clock with in-memory transports: routing of the publisher's
RTP and RTCP, its feedback timer, the compound reports to the subscriber, the
subscriber's RTCP to its consumers, peer connections failing, close."""

from __future__ import annotations

import pytest

from fakes import (PUBLISHER_SSRC, SUBSCRIBER_EXT_IDS, SUBSCRIBER_PAYLOAD_TYPES, VP8_KEY,
                   FakeTransport, Publisher)
from sfu.consumer import Consumer
from sfu.participant import MediaSettings, Participant
from sfu.rtcp import (Bye, Nack, ReceiverReport, ReportBlock, Remb, Sdes, SenderReport,
                      parse_rtcp, serialize_rtcp)

pytestmark = pytest.mark.twin

SR = SenderReport(ssrc=PUBLISHER_SSRC, ntp_timestamp=0xE0000000_00000000, rtp_timestamp=77,
                  packet_count=1, octet_count=1)


@pytest.fixture
def participant(clock, upstream):
    p = Participant("camera", settings=MediaSettings(feedback_interval=1.0), clock=clock,
                    scheduler=clock)
    p.pub, p.sub = upstream, FakeTransport()
    return p


@pytest.fixture
def published(participant, make_producer):
    producer = make_producer()
    participant.add_producer(producer, (PUBLISHER_SSRC,))
    return producer


def consume(participant, producer, clock, ssrc=0x50B50001) -> Consumer:
    consumer = Consumer(producer, participant.id, participant.sub, ssrc)
    participant.add_consumer(consumer)
    consumer.negotiate(SUBSCRIBER_PAYLOAD_TYPES, SUBSCRIBER_EXT_IDS)
    clock.advance(0)
    return consumer


class Route:
    """Packets written as the publisher's transport hands them to the participant."""

    def __init__(self, participant, producer):
        self.publisher = Publisher(producer)
        self.publisher.receive = lambda data: participant._on_publisher_rtp(data, 0.0)


def test_publisher_rtp_is_routed_by_ssrc(participant, published):
    Route(participant, published).publisher.send(VP8_KEY)
    assert published.packets == 1 and published.keyframes_seen == 1
    participant._on_publisher_rtp(b"\x80junk", 0.0)  # ignored
    assert published.packets == 1


def test_feedback_to_the_publisher_every_interval(clock, participant, published, upstream):
    assert participant.publisher_feedback(clock.monotonic()) is None  # nothing received yet
    Route(participant, published).publisher.send(VP8_KEY)
    clock.advance(0.99)
    assert upstream.rtcp == []
    clock.advance(0.01)
    rr, remb = upstream.rtcp_packets()
    assert isinstance(rr, ReceiverReport) and rr.ssrc == published.rtcp_ssrc
    assert [b.ssrc for b in rr.reports] == [PUBLISHER_SSRC]
    assert isinstance(remb, Remb) and remb.ssrcs == [PUBLISHER_SSRC] and remb.bitrate > 0
    clock.advance(2.0)
    assert len(upstream.rtcp) == 3  # once a second


def test_the_publishers_sender_report_is_stamped_with_the_clock(clock, participant, published):
    Route(participant, published).publisher.send(VP8_KEY)
    clock.advance(3.25)
    participant._on_publisher_rtcp(serialize_rtcp([SR]))
    assert published.last_sr.rtp_timestamp == 77 and published.last_sr.arrival == clock.now
    participant._on_publisher_rtcp(b"\x81\xc8junk")  # ignored


def test_one_compound_report_to_the_subscriber(clock, monkeypatch, participant, published):
    monkeypatch.setattr("sfu.participant.random.random", lambda: 0.25)  # 0.75 s apart
    consumer = consume(participant, published, clock)
    clock.advance(0.75)
    assert participant.sub.rtcp == []  # nothing started, nothing to translate
    Route(participant, published).publisher.send(VP8_KEY)
    participant._on_publisher_rtcp(serialize_rtcp([SR]))
    clock.advance(0.75)
    sr, sdes = participant.sub.rtcp_packets()
    assert isinstance(sr, SenderReport) and sr.ssrc == consumer.ssrc
    assert sr.ntp_timestamp == SR.ntp_timestamp and sr.packet_count == 1
    assert isinstance(sdes, Sdes) and sdes.chunks == [(consumer.ssrc, [(1, b"cname-of-the-sub")])]
    clock.advance(0.75)
    assert len(participant.sub.rtcp) == 2


def test_the_subscribers_rtcp_reaches_its_consumers(clock, participant, published, make_producer):
    video = consume(participant, published, clock, ssrc=0x1001)
    audio = consume(participant, make_producer("audio"), clock, ssrc=0x1002)
    Route(participant, published).publisher.send(VP8_KEY)
    participant._on_subscriber_rtcp(serialize_rtcp([
        Nack(sender_ssrc=1, media_ssrc=0x1001, lost=[5]),
        Nack(sender_ssrc=1, media_ssrc=0x9999, lost=[5]),  # nobody's
        Remb(sender_ssrc=1, bitrate=300_000, ssrcs=[0x1001, 0x1002]),
        ReceiverReport(ssrc=1, reports=[ReportBlock(ssrc=0x1002, fraction_lost=12)]),
    ]))
    assert video.nacks == 1 and audio.nacks == 0
    assert video.remb_bitrate == audio.remb_bitrate == 300_000
    assert (video.fraction_lost, audio.fraction_lost) == (0, 12)
    participant._on_subscriber_rtcp(b"junk")  # ignored


def test_aiortcs_own_sender_reports_never_leave(participant):
    bye = Bye(sources=[0x1001])
    assert parse_rtcp(participant._filter_outgoing_rtcp(serialize_rtcp([SR, bye]))) == [bye]
    assert participant._filter_outgoing_rtcp(serialize_rtcp([SR])) is None
    assert participant._filter_outgoing_rtcp(b"junk") is None


def test_failed_peer_connections(clock, participant, published, caplog):
    consumer = consume(participant, published, clock)
    with caplog.at_level("WARNING", logger="sfu.participant"):
        participant._transport_state(participant.sub, "failed")
    [line] = [r for r in caplog.records if "peer connection failed" in r.getMessage()]
    assert (line.dtls, line.ice) == ("failed", "failed") and line.pairs  # why, for the log
    consumer.state.paused = False  # even if something resumed it: no socket to write to
    Route(participant, published).publisher.send(VP8_KEY)
    assert participant.sub.rtp == [] and published.packets == 1
    participant._transport_state(participant.pub, "connected")  # not a failure
    assert not published.closed
    participant._transport_state(participant.pub, "closed")
    assert published.closed and participant.producers == {} and participant.consumers == {}


async def test_close_cascades_and_stops_the_timers(clock, participant, published):
    consumer = consume(participant, published, clock)
    assert clock.pending  # feedback and reports
    await participant.close()
    assert clock.pending == []
    assert published.closed and consumer.closed
    assert participant.pub.closed and participant.sub.closed
    await participant.close()  # idempotent
