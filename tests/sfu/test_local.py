"""Tracks fed from inside the node (sfu.local): a real subscriber on loopback receives
what a LocalPublisher sends, rewritten like any forwarded track."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtpPacket

from fakes import VP8
from loopback import VP8_DELTA, VP8_KEY, subscribed, until
from sfu.events import ParticipantJoined, ParticipantLeft, TrackPublished, TrackUnpublished
from sfu.local import LocalPublisher
from sfu.room import Room


@pytest.fixture
async def room():
    r = Room("dock-7")
    r.events = []
    r.on_event = r.events.append
    yield r
    await r.close()


def rtp(payload: bytes, seq: int, ts: int, ssrc: int = 0xABC) -> bytes:
    return RtpPacket(payload_type=VP8.payload_type, sequence_number=seq, timestamp=ts,
                     ssrc=ssrc, payload=payload).serialize()


async def test_a_local_track_reaches_a_subscriber_from_its_keyframe(room):
    publisher = LocalPublisher(room, "playback:RC_1")
    track = publisher.publish("video", VP8, name="camera of warehouse-cam")
    assert [type(e) for e in room.events] == [ParticipantJoined, TrackPublished]
    assert room.tracks()[0]["source"] == "playback"
    viewer, client = await subscribed(room, "seller", [track.id])
    consumer = next(iter(viewer.consumers.values()))

    assert track.send(rtp(VP8_DELTA, 1, 1000))  # before any keyframe: held back
    assert track.send(rtp(VP8_KEY, 2, 4000))
    assert track.send(rtp(VP8_DELTA, 3, 7000))
    assert await until(lambda: len(client.by_ssrc().get(consumer.ssrc, [])) == 2)
    seqs = [h[2] for h in client.by_ssrc()[consumer.ssrc]]
    assert (seqs[1] - seqs[0]) & 0xFFFF == 1
    # junk is refused and counted, nothing forwarded
    assert not track.send(b"\x00junk")
    assert track.malformed == 1
    # the RTCP a played-back track would send upstream goes nowhere, without error
    track.producer.request_keyframe()
    await client.t.close()


async def test_closing_the_publisher_unpublishes_and_leaves(room):
    publisher = LocalPublisher(room, "playback:RC_2")
    track = publisher.publish("video", VP8)
    await publisher.close()
    assert [type(e) for e in room.events][-2:] == [TrackUnpublished, ParticipantLeft]
    assert track.producer.closed and not track.send(rtp(VP8_KEY, 1, 0))
    assert room.tracks() == []


def _producer(identity: str, name: str) -> "Producer":
    from sfu.local import NullRtcpSink
    from sfu.producer import Producer

    producer = Producer(participant_id=f"PA_{name}", kind="video", mid="0", codec=VP8, ext_ids={},
                        transport=NullRtcpSink(), rtcp_ssrc=1, source="camera", producer_id=f"TR_{name}")
    producer.identity = identity
    return producer


async def test_a_successor_takes_over_orphaned_consumers_without_renegotiation(room):
    from sfu.local import LocalTrack

    first = room.adopt_producer(_producer("warehouse-cam", "one"), orphan_timeout_s=10)
    viewer, client = await subscribed(room, "seller", [first.id])
    consumer = viewer.consumers[first.id]
    offers = []
    viewer.send_offer = lambda sdp: offers.append(sdp)  # any offer from now on is counted
    LocalTrack(first).send(rtp(VP8_KEY, 100, 1000, ssrc=0x1))
    LocalTrack(first).send(rtp(VP8_DELTA, 101, 4000, ssrc=0x1))
    assert await until(lambda: len(client.by_ssrc().get(consumer.ssrc, [])) == 2)

    first.close()  # its node died: the consumer waits, paused, its m-line kept
    assert not consumer.closed and room.orphans and first.id not in room.producers
    # the same publisher's stream again (its new node's track): the consumer takes it
    second = room.adopt_producer(_producer("warehouse-cam", "two"), orphan_timeout_s=10)
    assert viewer.consumers == {second.id: consumer} and consumer.producer is second
    assert not room.orphans
    track = LocalTrack(second)
    track.send(rtp(VP8_DELTA, 7000, 900000, ssrc=0x2))  # not a keyframe: held back
    track.send(rtp(VP8_KEY, 7001, 903000, ssrc=0x2))
    track.send(rtp(VP8_DELTA, 7002, 906000, ssrc=0x2))
    assert await until(lambda: len(client.by_ssrc().get(consumer.ssrc, [])) == 4)
    seqs = [h[2] for h in client.by_ssrc()[consumer.ssrc]]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == [0, 1, 2, 3]  # one stream, no gap
    assert offers == [] and viewer.pending_offer() is None
    await client.t.close()


async def test_orphans_nobody_takes_over_close_after_the_timeout(room):
    from sfu.clock import ManualClock

    first = room.adopt_producer(_producer("warehouse-cam", "one"), orphan_timeout_s=5)
    viewer, client = await subscribed(room, "seller", [first.id])
    consumer = viewer.consumers[first.id]
    clock = ManualClock()
    room.scheduler = clock  # the orphans' wait on a manual clock
    first.close()
    assert not consumer.closed
    clock.advance(5)
    assert consumer.closed and not room.orphans
    await client.t.close()


async def test_orphans_take_the_publishers_new_track_published_here(room):
    first = room.adopt_producer(_producer("warehouse-cam", "one"), orphan_timeout_s=10)
    viewer, client = await subscribed(room, "seller", [first.id])
    consumer = viewer.consumers[first.id]
    first.close()
    assert room.orphans
    # the phone comes back to this very node and publishes again
    track = LocalPublisher(room, "warehouse-cam").publish("video", VP8, source="camera")
    assert consumer.producer is track.producer and viewer.consumers == {track.id: consumer}
    assert not room.orphans
    await client.t.close()


async def test_a_publisher_that_moved_supersedes_its_track_of_a_node_not_yet_known_dead(room):
    first = _producer("warehouse-cam", "one")
    first.origin_node = "node-a"  # as a RemoteProducer of node A's
    room.adopt_producer(first, orphan_timeout_s=10)
    viewer, client = await subscribed(room, "seller", [first.id])
    consumer = viewer.consumers[first.id]
    offers = []
    viewer.send_offer = lambda sdp: offers.append(sdp)
    # node A died, but its trunk has not timed out yet: the phone is back, here
    track = LocalPublisher(room, "warehouse-cam").publish("video", VP8, source="camera")
    assert first.closed and first.id not in room.producers
    assert consumer.producer is track.producer and viewer.consumers == {track.id: consumer}
    assert not room.orphans and offers == []
    await client.t.close()


async def test_another_track_of_the_same_node_supersedes_nothing(room):
    first, second = _producer("warehouse-cam", "one"), _producer("warehouse-cam", "two")
    first.origin_node = second.origin_node = "node-a"  # two cameras of one publisher there
    room.adopt_producer(first, orphan_timeout_s=10)
    room.adopt_producer(second, orphan_timeout_s=10)
    other = _producer("dock-cam", "three")  # and another publisher's camera, here
    room.adopt_producer(other, orphan_timeout_s=10)
    assert not first.closed and not second.closed and not other.closed
    assert {first.id, second.id, other.id} <= set(room.producers)
