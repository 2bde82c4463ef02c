"""Media through a real node: aiortc peers publish, subscribe and decode."""

from __future__ import annotations

import asyncio
import time

import pytest

from .peer import VIDEO_CLOCK, Participant, ProtocolError
from .waiting import wait_until as _wait

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

FRAME_TICKS = VIDEO_CLOCK // 15


async def _publisher(node, identity="warehouse-cam"):
    pub = Participant(node.url, node.token(identity))
    await pub.connect()
    await pub.join()
    published = await pub.publish()
    return pub, published


async def _subscriber(node, identity, track_ids):
    sub = Participant(node.url, node.token(identity))
    await sub.connect()
    await sub.join()
    reply = await sub.request("subscribe", track_ids=track_ids)
    assert reply["type"] == "subscribed" and reply["track_ids"] == track_ids
    return sub




@pytest.mark.twin  # run again with DOCKCAST_PUREPYTHON=1: the node forwards with the twins
async def test_one_publisher_three_subscribers_decode(node):
    pub, published = await _publisher(node)
    track_ids = [t["track_id"] for t in published["tracks"]]
    assert sorted(t["kind"] for t in published["tracks"]) == ["audio", "video"]
    subs = [await _subscriber(node, f"seller-{i}", track_ids) for i in range(3)]
    try:
        assert await _wait(lambda: all(len(s.video()) == 1 and len(s.audio()) == 1 for s in subs))
        assert await _wait(lambda: all(s.video()[0].frames > 0 for s in subs))
        await asyncio.sleep(4)
        for s in subs:
            video, audio = s.video()[0], s.audio()[0]
            assert video.frames >= 40, video.frames
            assert video.decoded_fraction(FRAME_TICKS) >= 0.9, video.decoded_fraction(FRAME_TICKS)
            assert audio.frames >= 100  # 20 ms Opus frames, decoded
            assert s.first_video_packet_keyframe is True
            # sender reports are translations of the publisher's, not aiortc's NTP-0 ones
            stats = await s.sub.getStats()
            remote = [r for r in stats.values() if r.type == "remote-outbound-rtp"]
            assert remote and all(r.remoteTimestamp.year >= 2020 for r in remote)
            assert all(r.packetsSent > 0 for r in remote)
        metrics = node.metrics()
        assert metrics["dockcast_packets_forwarded_total"] > 0
        assert metrics["dockcast_consumers"] == 6
    finally:
        for p in subs + [pub]:
            await p.close()


async def test_a_join_that_subscribes_gets_its_offer_with_no_subscribe_round_trip(node):
    pub, published = await _publisher(node)
    viewer = Participant(node.url, node.token("seller"))
    refused = Participant(node.url, node.token("auditor", grants=("message",)))
    try:
        await viewer.connect()
        joined = await viewer.join(subscribe=True)
        assert sorted(joined["subscribed"]) == sorted(t["track_id"] for t in published["tracks"])
        # the offer came right behind `joined`: no subscribe was sent
        assert await _wait(lambda: viewer.video() and viewer.video()[0].frames > 5)
        assert viewer.first_video_packet_keyframe is True
        assert [e for e in viewer.all_events if e.get("type") == "subscribed"] == []
        await refused.connect()
        with pytest.raises(ProtocolError, match="forbidden"):
            await refused.join(subscribe=True)  # no subscribe grant
    finally:
        for p in (viewer, refused, pub):
            await p.close()


async def test_late_joiner_starts_with_a_keyframe(node):
    pub, published = await _publisher(node)
    track_ids = [t["track_id"] for t in published["tracks"]]
    early = await _subscriber(node, "early", track_ids)
    try:
        # 60 frames (two seconds of the test pattern) after the early one's keyframe, the
        # latest keyframe is too old to replay to a newcomer
        assert await _wait(lambda: early.video() and early.video()[0].frames > 60)
        late = await _subscriber(node, "late", track_ids)
        assert await _wait(lambda: late.video() and late.video()[0].frames > 0)
        assert late.first_video_packet_keyframe is True
        # so the node asked the publisher for a new one once the late one subscribed
        assert any(t >= late.joined_at for t in pub.keyframe_requests), pub.keyframe_requests
        await late.close()
    finally:
        await early.close()
        await pub.close()


async def test_unsubscribe_unpublish_leave(node):
    pub, published = await _publisher(node)
    video_id = next(t["track_id"] for t in published["tracks"] if t["kind"] == "video")
    audio_id = next(t["track_id"] for t in published["tracks"] if t["kind"] == "audio")
    sub = await _subscriber(node, "seller", [video_id, audio_id])
    try:
        assert await _wait(lambda: sub.video() and sub.video()[0].frames > 5)
        reply = await sub.request("unsubscribe", track_ids=[video_id])
        assert reply == {"type": "unsubscribed", "track_ids": [video_id], "id": reply["id"]}
        await sub.next_event("offer")  # the video m-line goes inactive
        # audio keeps flowing: once 10 more frames came, what was in flight has landed
        frames = sub.audio()[0].frames
        assert await _wait(lambda: sub.audio()[0].frames > frames + 10)
        before = sub.sub_video_packets
        frames = sub.audio()[0].frames
        assert await _wait(lambda: sub.audio()[0].frames > frames + 25)  # half a second more
        assert sub.sub_video_packets == before  # no more video forwarded

        with pytest.raises(ProtocolError) as err:
            await sub.request("unsubscribe", track_ids=[video_id])
        assert err.value.code == "not_found"

        reply = await pub.request("unpublish", track_ids=[audio_id])
        assert reply["track_ids"] == [audio_id]
        event = await sub.next_event("track_unpublished")
        assert event["track_id"] == audio_id

        await pub.request("leave")
        event = await sub.next_event("participant_left")
        assert event["participant_id"] == published.get("participant_id", event["participant_id"])
        assert (await sub.next_event("track_unpublished"))["track_id"] == video_id
    finally:
        await sub.close()
        await pub.close()


async def test_peer_vanishing_without_leave(node_factory):
    # a vanished peer looks like a signalling blip until the grace is over (1 s here)
    node = node_factory.start(env={"DOCKCAST_PARTICIPANT_GRACE_S": "1"})
    pub, published = await _publisher(node)
    watcher = Participant(node.url, node.token("watcher"))
    await watcher.connect()
    joined = await watcher.join()
    assert {t["track_id"] for t in joined["tracks"]} == {t["track_id"] for t in published["tracks"]}
    await pub.close(abrupt=True)
    left = await watcher.next_event("participant_left", timeout=15)
    assert left["participant_id"]
    assert node.metrics()["dockcast_tracks"] == 0
    # the node still serves
    again, _ = await _publisher(node, "camera-2")
    await again.close()
    await watcher.close()


async def test_join_leave_cycles_leak_nothing(node):
    pub, published = await _publisher(node)
    track_ids = [t["track_id"] for t in published["tracks"]]

    async def cycle(i):
        sub = await _subscriber(node, f"visitor-{i}", track_ids)
        assert await _wait(lambda: sub.audio() and sub.audio()[0].frames > 0)
        await sub.request("leave")
        await sub.close()

    await cycle(0)  # warm up: first-use allocations (codecs, thread pools)
    await asyncio.sleep(1)
    before = node.metrics()
    for i in range(1, 21):
        await cycle(i)
    resources = ("dockcast_asyncio_tasks", "dockcast_threads", "dockcast_open_fds")

    def given_back() -> bool:  # closed peer connections finish their tasks in a moment
        now = node.metrics()
        return all(now[r] <= before[r] for r in resources)

    assert await _wait(given_back, timeout=15, step=0.25)
    after = node.metrics()
    assert after["dockcast_participants"] == 1 and after["dockcast_consumers"] == 0
    for resource in resources:
        assert after[resource] <= before[resource], (resource, before[resource], after[resource])
    await pub.close()


async def test_keyframe_requests_are_throttled_per_producer(node):
    pub, published = await _publisher(node)
    track_ids = [t["track_id"] for t in published["tracks"]]
    await asyncio.sleep(2.5)  # the first keyframe is too old to replay: a new one is needed
    subs = await asyncio.gather(*(_subscriber(node, f"burst-{i}", track_ids) for i in range(5)))
    try:
        assert await _wait(lambda: all(s.video() and s.video()[0].frames > 0 for s in subs), timeout=20)
        # five subscribers asking at once (a PLI each), past the last request's second
        assert await _wait(lambda: time.monotonic() - max(pub.keyframe_requests, default=0) > 1.2,
                           timeout=30, step=0.1)
        before = len(pub.keyframe_requests)
        sent = await asyncio.gather(*(s.send_pli() for s in subs))
        assert sum(sent) == 5
        assert await _wait(lambda: len(pub.keyframe_requests) > before, timeout=10), \
            "the node never asked the publisher for a keyframe"
        requests = pub.keyframe_requests
        # at most one request per second
        gaps = [b - a for a, b in zip(requests, requests[1:])]
        assert all(g >= 0.9 for g in gaps), gaps
    finally:
        for p in subs + [pub]:
            await p.close()
