"""Two rooms in one process, "node A" and "node B", joined by a real trunk: a track
published in A reaches real subscribers on loopback in B, through one flow, rewritten
and from a keyframe; their PLIs reach A's producer; a datagram lost on the trunk is
recovered from A's cache; A's publisher leaving closes B's consumers."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtpPacket
from fakes import VP8
from loopback import VP8_DELTA, VP8_KEY, subscribed
from trunks import until

from sfu.local import LocalPublisher
from sfu.relay import RemoteProducer
from sfu.room import Room
from sfu.rtcp import Pli, serialize_rtcp

PUBLISHER_SSRC = 0xA0A0A0A0


class Origin:
    """Node A's side: a room with a LocalPublisher feeding a VP8 track."""

    def __init__(self, nodes, room: Room) -> None:
        self.publisher = LocalPublisher(room, "camera")
        self.track = self.publisher.publish("video", VP8, source="camera", name="dock door")
        nodes.producers["A"][room.name, self.track.id] = self.track.producer
        self.seq, self.ts = 5000, 90000
        self.sent: list[bytes] = []

    def send(self, payload: bytes) -> bytes:
        data = RtpPacket(payload_type=VP8.payload_type, sequence_number=self.seq, timestamp=self.ts,
                         ssrc=PUBLISHER_SSRC, marker=1, payload=payload).serialize()
        assert self.track.send(data)
        self.sent.append(data)
        self.seq, self.ts = self.seq + 1, self.ts + 3000
        return data


@pytest.fixture
async def rooms():
    a, b = Room("shop-7"), Room("shop-7")
    yield a, b
    await b.close()
    await a.close()


async def import_track(trunk, room: Room, track_id: str) -> RemoteProducer:
    """What node B does when one of its members subscribes to a track of node A."""
    producer = await trunk.subscribe(room.name, track_id)
    room.publish_local(room.join("relay:A"), producer)
    return producer


def payload_of(data: bytes) -> bytes:
    return RtpPacket.parse(data).payload


async def test_a_track_of_a_reaches_two_subscribers_of_b_through_one_flow(nodes, rooms):
    room_a, room_b = rooms
    origin = Origin(nodes, room_a)
    remote = await import_track(nodes.b, room_b, origin.track.id)
    viewers = [await subscribed(room_b, f"viewer-{i}", [origin.track.id]) for i in (1, 2)]
    assert (nodes.a.flows, nodes.b.flows) == (1, 1)
    assert len(remote.consumers) == 2

    origin.send(VP8_DELTA)  # before any keyframe: crosses once, reaches nobody
    origin.send(VP8_KEY)
    for _ in range(28):
        origin.send(VP8_DELTA)
    for participant, client in viewers:
        consumer = participant.consumers[origin.track.id]
        assert await until(lambda c=client, s=consumer.ssrc: len(c.by_ssrc().get(s, [])) == 29)
        headers = client.by_ssrc()[consumer.ssrc]
        assert consumer.ssrc != PUBLISHER_SSRC
        assert [(h[2] - headers[0][2]) & 0xFFFF for h in headers] == list(range(29))
        received = [d for d in client.packets if d[8:12] == consumer.ssrc.to_bytes(4, "big")]
        assert [payload_of(d) for d in received] == [payload_of(d) for d in origin.sent[1:]]
        assert payload_of(received[0]) == VP8_KEY
    # one copy of each packet crossed, whatever the number of subscribers
    export = next(iter(nodes.a.exports.by_flow.values()))
    assert export.packets == len(origin.sent) == 30
    assert nodes.a.metrics.datagrams_out == 30 + export.retransmitted
    assert remote.packets == 30

    # a subscriber's PLI goes up through B's remote producer and the trunk to A's producer
    producer_a = origin.track.producer
    asked = producer_a.keyframes.sent + producer_a.keyframes.suppressed
    participant, client = viewers[0]
    ssrc = participant.consumers[origin.track.id].ssrc
    client.t.send_rtcp(serialize_rtcp([Pli(sender_ssrc=1, media_ssrc=ssrc)]))
    assert await until(lambda: producer_a.keyframes.sent + producer_a.keyframes.suppressed > asked)
    assert export.keyframe_requests >= 2  # the subscription's own, then the PLI's
    for _, client in viewers:
        await client.t.close()


async def test_a_datagram_lost_on_the_trunk_reaches_b_subscribers_from_a_cache(relayed, rooms):
    room_a, room_b = rooms
    origin = Origin(relayed, room_a)
    await import_track(relayed.b, room_b, origin.track.id)
    participant, client = await subscribed(room_b, "viewer", [origin.track.id])
    consumer = participant.consumers[origin.track.id]
    origin.send(VP8_KEY)
    assert await until(lambda: len(client.by_ssrc().get(consumer.ssrc, [])) == 1)
    relayed.relay.drop_back = lambda data: len(data) > 500  # the next big datagram A sends
    lost = origin.send(b"\x10\x01" + b"L" * 500)
    assert await until(lambda: relayed.relay.dropped == 1)
    relayed.relay.drop_back = lambda data: False
    for _ in range(3):
        origin.send(VP8_DELTA)
    assert await until(lambda: len(client.by_ssrc().get(consumer.ssrc, [])) == 5)
    assert payload_of(lost) in [payload_of(d) for d in client.packets]
    export = next(iter(relayed.a.exports.by_flow.values()))
    assert export.retransmitted == 1
    await client.t.close()


async def test_a_publisher_leaving_a_closes_the_consumers_in_b(nodes, rooms):
    room_a, room_b = rooms
    origin = Origin(nodes, room_a)
    remote = await import_track(nodes.b, room_b, origin.track.id)
    participant, client = await subscribed(room_b, "viewer", [origin.track.id])
    consumer = participant.consumers[origin.track.id]
    await origin.publisher.close()
    assert await until(lambda: remote.closed)
    assert consumer.closed and remote.close_reason == "unpublished"
    assert origin.track.id not in room_b.producers
    assert (nodes.a.flows, nodes.b.flows) == (0, 0)
    await client.t.close()
