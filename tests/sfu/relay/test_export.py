"""A's producers served over a real trunk to B: one flow per track, every packet once,
keyframe requests and NACKs upstream, sender reports down, the end of a producer or
of a subscription on either side, split horizon, oversized packets."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from fakes import (
    OPUS,
    PUBLISHER_EXT_IDS,
    PUBLISHER_SSRC,
    SUBSCRIBER_EXT_IDS,
    SUBSCRIBER_PAYLOAD_TYPES,
    VP8,
    VP8_DELTA,
    VP8_KEY,
    FakeTransport,
    Publisher,
)
from trunks import until

from sfu.consumer import Consumer
from sfu.producer import Producer
from sfu.relay import RemoteProducer, SubscribeRefused, is_remote
from sfu.relay.export import track_info
from sfu.rtcp import Nack, Pli, SenderReport, serialize_rtcp


def produce(nodes, kind="video", room="shop", **options) -> tuple[Producer, Publisher, FakeTransport]:
    """A producer of node A (its publisher's leg is a FakeTransport) that A serves."""
    upstream = FakeTransport("pub")
    producer = Producer(participant_id="PA_cam", kind=kind, mid="0" if kind == "video" else "1",
                        codec=VP8 if kind == "video" else OPUS, ext_ids=PUBLISHER_EXT_IDS,
                        transport=upstream, rtcp_ssrc=0xC0FFEE, ssrcs=(PUBLISHER_SSRC,),
                        source="camera", name="dock door", **options)
    nodes.producers["A"][room, producer.id] = producer
    return producer, Publisher(producer, seq=100), upstream


def export_of(nodes, producer):
    return next(e for e in nodes.a.exports.by_flow.values() if e.producer is producer)


async def test_a_subscription_is_an_ordinary_producer_of_the_same_track(nodes):
    producer, _, _ = produce(nodes)
    remote = await nodes.b.subscribe("shop", producer.id)
    assert isinstance(remote, RemoteProducer) and is_remote(remote) and not is_remote(producer)
    assert remote.origin_node == "A"
    assert track_info(remote) == track_info(producer)  # id, codec, payload type, ext ids, ...
    # RTX is restored at the origin (taps see the original packets): none crosses
    assert remote.codec == dataclasses.replace(producer.codec, rtx_payload_type=None)
    assert nodes.lookups["A"] == [("shop", producer.id)]
    assert (nodes.a.flows, nodes.b.flows) == (1, 1)


async def test_an_unknown_track_is_not_found(nodes):
    with pytest.raises(SubscribeRefused) as refused:
        await nodes.b.subscribe("shop", "TR_missing")
    assert refused.value.code == "not_found"
    assert (nodes.a.flows, nodes.b.flows) == (0, 0)


async def test_one_flow_per_track_however_many_ask(nodes):
    producer, publisher, _ = produce(nodes)
    first, second = await asyncio.gather(nodes.b.subscribe("shop", producer.id),
                                         nodes.b.subscribe("shop", producer.id))
    again = await nodes.b.subscribe("shop", producer.id)
    assert first is second is again
    assert nodes.lookups["A"] == [("shop", producer.id)]
    sent = [publisher.send(VP8_KEY)] + [publisher.send(VP8_DELTA) for _ in range(19)]
    assert await until(lambda: first.packets == 20)
    assert first.cache.get(publisher.seq - 1) == sent[-1]  # the same bytes, unchanged
    assert nodes.a.metrics.datagrams_out == export_of(nodes, producer).packets == 20
    assert nodes.b.metrics.datagrams_in == 20


async def test_the_latest_keyframe_goes_first_to_a_new_subscription(nodes):
    producer, publisher, _ = produce(nodes)
    publisher.send(VP8_KEY)
    publisher.send(VP8_DELTA)
    publisher.send(VP8_DELTA)
    remote = await nodes.b.subscribe("shop", producer.id)  # its datagrams may beat `subscribed`
    assert await until(lambda: remote.packets == 3)
    assert remote.keyframes_seen == 1


async def test_a_keyframe_request_reaches_the_origin_producer(nodes):
    producer, publisher, upstream = produce(nodes)
    remote = await nodes.b.subscribe("shop", producer.id)
    export = export_of(nodes, producer)
    asked = export.keyframe_requests  # the subscription itself asked for one
    publisher.send(VP8_KEY)
    assert await until(lambda: remote.keyframes_seen == 1)
    remote.request_keyframe()  # what a consumer's PLI does
    assert await until(lambda: export.keyframe_requests == asked + 1)
    assert await until(lambda: len(upstream.rtcp_packets(Pli)) == producer.keyframes.sent)
    assert producer.keyframes.sent + producer.keyframes.suppressed == asked + 1


async def test_a_nack_from_the_far_node_is_answered_from_the_origin_cache(nodes):
    producer, publisher, _ = produce(nodes)
    remote = await nodes.b.subscribe("shop", producer.id)
    packets = [publisher.send(VP8_KEY)] + [publisher.send(VP8_DELTA) for _ in range(4)]
    assert await until(lambda: remote.packets == 5)
    wanted = (publisher.seq - 3) & 0xFFFF
    # what the remote producer's NACK upstream writes (Producer._nack_upstream)
    assert remote.transport.send_rtcp(serialize_rtcp([Nack(sender_ssrc=1, media_ssrc=PUBLISHER_SSRC,
                                                           lost=[wanted, 9999])]))
    export = export_of(nodes, producer)
    assert await until(lambda: export.retransmitted == 1)  # 9999 was never in the cache
    assert await until(lambda: remote.packets == 6)
    assert remote.cache.get(wanted) == packets[2]
    assert producer.nacks_sent == 0  # answered by A, not asked of A's publisher


async def test_a_gap_makes_the_remote_producer_nack_over_the_trunk(relayed):
    producer, publisher, _ = produce(relayed)
    remote = await relayed.b.subscribe("shop", producer.id)
    publisher.send(VP8_KEY)
    assert await until(lambda: remote.packets == 1)
    lost = publisher.seq
    relayed.relay.drop_back = lambda data: len(data) > 400  # the next big datagram A sends
    publisher.send(b"\x10\x01" + b"L" * 400)
    assert await until(lambda: relayed.relay.dropped == 1)
    relayed.relay.drop_back = lambda data: False
    publisher.send(VP8_DELTA)
    export = export_of(relayed, producer)
    assert await until(lambda: export.retransmitted == 1)
    assert await until(lambda: remote.cache.get(lost) is not None)
    assert remote.nacks_sent == 1
    # counted on both trunks, for the nodes' metrics
    assert relayed.b.metrics.nacked == 1 and relayed.a.metrics.retransmitted == 1


async def test_sender_reports_cross_as_rtcp(nodes):
    producer, publisher, _ = produce(nodes)
    remote = await nodes.b.subscribe("shop", producer.id)
    publisher.send(VP8_KEY)
    producer.receive_sender_report(SenderReport(ssrc=PUBLISHER_SSRC, ntp_timestamp=0xABCDEF0012345678,
                                                rtp_timestamp=4242), 1.0)
    assert await until(lambda: remote.last_sr is not None)
    assert (remote.last_sr.ntp_timestamp, remote.last_sr.rtp_timestamp) == (0xABCDEF0012345678, 4242)


async def test_the_origin_producer_closing_closes_the_remote_one_and_its_consumers(nodes):
    producer, publisher, _ = produce(nodes)
    remote = await nodes.b.subscribe("shop", producer.id)
    consumer = Consumer(remote, "PA_viewer", FakeTransport(), 0x50B5C001)
    assert consumer.negotiate(SUBSCRIBER_PAYLOAD_TYPES, SUBSCRIBER_EXT_IDS)
    publisher.send(VP8_KEY)
    assert await until(lambda: len(consumer.transport.rtp) == 1)
    producer.close()
    assert await until(lambda: remote.closed)
    assert consumer.closed and remote.close_reason == "unpublished"
    assert (nodes.a.flows, nodes.b.flows) == (0, 0)


@pytest.mark.parametrize("how", ["trunk.unsubscribe", "producer.close"])
async def test_ending_the_subscription_stops_the_export(nodes, how):
    producer, publisher, _ = produce(nodes)
    remote = await nodes.b.subscribe("shop", producer.id)
    if how == "trunk.unsubscribe":
        nodes.b.unsubscribe(remote.flow)
    else:
        remote.close()  # the node closed it (its last consumer left)
    assert remote.closed and nodes.b.flows == 0
    assert await until(lambda: nodes.a.flows == 0)
    publisher.send(VP8_KEY)
    assert nodes.a.metrics.datagrams_out == 0  # the tap is gone: nothing is framed
    again = await nodes.b.subscribe("shop", producer.id)  # and it can be taken again
    assert again is not remote and again.flow != remote.flow


async def test_a_lost_trunk_closes_remote_producers_and_detaches_exports(nodes):
    producer, publisher, _ = produce(nodes)
    remote = await nodes.b.subscribe("shop", producer.id)
    nodes.b.close("node B is stopping")
    assert remote.closed and remote.close_reason == "node B is stopping"
    assert await until(lambda: nodes.a.closed)
    assert nodes.a.exports.by_flow == {}
    publisher.send(VP8_KEY)  # A's producer goes on without the tap
    assert producer.packets == 1 and not producer.closed


async def test_a_remote_producer_is_never_exported_again(nodes):
    producer, _, _ = produce(nodes)
    remote = await nodes.b.subscribe("shop", producer.id)
    nodes.producers["B"]["shop", remote.id] = remote  # B would serve its copy if asked
    with pytest.raises(SubscribeRefused, match="never relayed on") as refused:
        await nodes.a.subscribe("shop", remote.id)
    assert refused.value.code == "not_found"
    assert nodes.lookups["B"] == [("shop", remote.id)]
    assert nodes.b.exports.by_flow == {}


async def test_an_oversized_packet_is_dropped_and_counted_and_the_trunk_keeps_working(nodes):
    producer, publisher, _ = produce(nodes)
    remote = await nodes.b.subscribe("shop", producer.id)
    publisher.send(VP8_KEY)
    publisher.send(b"\x10\x01" + b"O" * 1500)  # over the cap: dropped, never queued
    publisher.send(VP8_DELTA)
    assert await until(lambda: remote.packets == 2)
    # B saw the gap and asked for it: the answer from A's cache is over the cap too
    assert await until(lambda: nodes.a.metrics.dropped_oversized == 2)
    assert remote.nacks_sent == 1
    assert nodes.a.metrics.datagrams_out == 2
    assert remote.cache.get((publisher.seq - 2) & 0xFFFF) is None


async def test_audio_crosses_too(nodes):
    producer, publisher, _ = produce(nodes, kind="audio")
    remote = await nodes.b.subscribe("shop", producer.id)
    for _ in range(5):
        publisher.send(b"\xfc" + b"a" * 60)
    assert await until(lambda: remote.packets == 5)
    assert remote.kind == "audio" and remote.codec.channels == 2
