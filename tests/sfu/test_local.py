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
