"""Room and Participant with real peers on loopback (WebRtcTransport clients, no codecs).

A client publisher writes hand-made VP8/Opus RTP packets; client subscribers see what
the SFU forwards: rewritten headers, keyframe gating, unsubscribe, unpublish, close.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from sfu import _aiortc_internals as internals, forward
from sfu.errors import NegotiationError, NotFound
from sfu.participant import MediaSettings, Participant, mline_count
from fakes import PUBLISHER_EXT_IDS, FakeTransport, Publisher
from sfu.clock import ManualClock
from sfu.events import (ActiveSpeakers, ParticipantJoined, ParticipantLeft, RoomClosed, RoomEvent,
                        TrackUnpublished)
from sfu.extensions import EXT_AUDIO_LEVEL
from sfu.rtcp import Nack, SenderReport, parse_rtcp, serialize_rtcp
from sfu.room import Room
from sfu.rtp import parse_header

from loopback import VP8_DELTA, VP8_KEY, ClientPublisher, ClientSubscriber, publish, subscribed, until


@pytest.fixture
async def room():
    r = Room("dock-7")
    events = []
    r.on_event = events.append
    r.events = events
    yield r
    await r.close()


async def test_forwarding_rewrites_and_waits_for_a_keyframe(room):
    pub, _, producers = await publish(room)
    viewer = room.join("seller")
    sub = ClientSubscriber(viewer)
    await room.subscribe(viewer, [producers["video"].id, producers["audio"].id])
    await asyncio.wait_for(sub.t.connected.wait(), 20)
    consumers = {c.kind: c for c in viewer.consumers.values()}
    assert await until(lambda: not consumers["video"].state.paused and not consumers["audio"].state.paused)
    # compiled: packets are protected by libsrtp and written with sendto(2) from C
    assert consumers["video"].state.native == (forward.IMPLEMENTATION == "cython")

    for i in range(5):
        pub.send("video", VP8_DELTA, 90000 + i * 3000)   # no keyframe yet: held back
        pub.send("audio", b"opus" * 10, 48000 + i * 960)
    assert await until(lambda: len(sub.packets) >= 5)
    # the audio sent after the video arrived, so the held-back video would have too
    assert len(sub.by_ssrc().get(consumers["audio"].ssrc, [])) == 5
    assert consumers["video"].ssrc not in sub.by_ssrc()
    pub.send("video", VP8_KEY, 120000)
    for i in range(3):
        pub.send("video", VP8_DELTA, 123000 + i * 3000)
    assert await until(lambda: len(sub.by_ssrc().get(consumers["video"].ssrc, [])) == 4)

    video = sub.by_ssrc()[consumers["video"].ssrc]
    first = sub.packets[[parse_header(d)[4] for d in sub.packets].index(consumers["video"].ssrc)]
    assert first[parse_header(first)[5]:parse_header(first)[6]] == VP8_KEY  # starts at the keyframe
    seqs = [h[2] for h in video]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == [0, 1, 2, 3]
    assert [(h[3] - video[0][3]) & 0xFFFFFFFF for h in video] == [0, 3000, 6000, 9000]
    transceiver = viewer._transceivers[consumers["video"].id]
    negotiated_pt = internals.negotiated_codecs(transceiver)[0].payloadType
    assert {h[0] for h in video} == {negotiated_pt}
    assert len(sub.by_ssrc()[consumers["audio"].ssrc]) == 5  # audio needs no keyframe
    assert producers["video"].keyframes.sent >= 1  # the SFU asked the publisher for one

    # one compound report for the subscriber: the publisher's SR, translated
    assert viewer.subscriber_reports() is None  # no publisher SR yet: nothing to translate
    producers["video"].receive_sender_report(
        SenderReport(ssrc=internals.sender_ssrc(pub.video.sender), ntp_timestamp=0xE000_0000_0000_0000,
                     rtp_timestamp=120000, packet_count=9, octet_count=99), 0.0)
    sr, sdes = parse_rtcp(viewer.subscriber_reports())
    assert sr.ssrc == consumers["video"].ssrc and sr.ntp_timestamp == 0xE000_0000_0000_0000
    assert sr.rtp_timestamp == video[0][3]  # the keyframe's timestamp, in the output's terms
    assert (sr.packet_count, sr.octet_count) == (4, len(VP8_KEY) + 3 * len(VP8_DELTA))
    assert [ssrc for ssrc, _ in sdes.chunks] == [consumers["video"].ssrc]
    await sub.t.close()
    await pub.t.close()


async def test_unsubscribe_unpublish_and_close_cascade(room):
    pub, publisher, producers = await publish(room)
    viewer, sub = await subscribed(room, "seller", [p.id for p in producers.values()])

    with pytest.raises(NotFound):
        await room.subscribe(viewer, ["TR_nope"])
    with pytest.raises(NotFound):
        await room.unsubscribe(viewer, ["TR_nope"])

    video = viewer.consumers[producers["video"].id]
    await room.unsubscribe(viewer, [producers["audio"].id])
    assert producers["audio"].id not in viewer.consumers
    assert producers["audio"].consumers == []
    assert await until(lambda: not video.state.paused)
    before = len(sub.packets)
    pub.send("audio", b"opus", 1)
    pub.send("video", VP8_KEY, 200000)  # still subscribed: it arrives, after the audio would
    assert await until(lambda: len(sub.packets) > before)
    assert [parse_header(data)[4] for data in sub.packets[before:]] == [video.ssrc]

    room.unpublish(publisher, [producers["video"].id])
    assert TrackUnpublished("dock-7", producers["video"]) in room.events
    assert viewer.consumers == {} and producers["video"].closed
    with pytest.raises(NotFound):
        room.unpublish(publisher, [producers["video"].id])

    await room.close("test over")
    assert publisher.closed and viewer.closed and publisher.pub.closed and viewer.sub.closed
    assert room.events[-1] == RoomClosed("dock-7", "test over")
    await sub.t.close()
    await pub.t.close()


async def test_bad_offers_change_nothing(room):
    participant = room.join("camera")
    client = ClientPublisher()
    sdp, tracks = await client.offer()
    for bad_tracks in ([{"mid": "9", "kind": "video"}], [{"mid": tracks[0]["mid"], "kind": "audio"}]):
        with pytest.raises(NegotiationError):
            await room.publish(participant, sdp, bad_tracks)
    with pytest.raises(NegotiationError):
        await room.publish(participant, "garbage", tracks)
    with pytest.raises(NegotiationError) as garbage:  # aiortc's parser raises on this one
        await room.publish(participant, "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF x\r\n", tracks)
    assert str(garbage.value) == "the SDP offer cannot be parsed"  # no aiortc internals
    # codecs this node does not take (say a client offers only H.264 to a VP8-only node)
    vp8_only = MediaSettings(video_codecs=("video/AV1",), audio_codecs=("audio/opus",))
    picky = Participant("camera-2", settings=vp8_only)
    with pytest.raises(NegotiationError, match="offers video/VP8, video/H264; this node takes video/AV1"):
        await picky.publish(sdp, tracks)
    assert picky.pub is None and picky.producers == {}  # no half-made peer connection
    assert participant.pub is None and room.producers == {}
    answer, producers = await room.publish(participant, sdp, tracks)
    assert len(producers) == 2
    await client.t.close()


async def test_an_offer_over_max_mlines_per_offer_changes_nothing(caplog):
    client = ClientPublisher()
    sdp, tracks = await client.offer()
    assert mline_count(sdp) == 2
    capped = Participant("camera", settings=MediaSettings(max_mlines_per_offer=1))
    with pytest.raises(NegotiationError, match="2 m-lines; this node takes at most 1") as refused:
        await capped.publish(sdp, tracks[:1])
    assert refused.value.code == "bad_request"
    assert capped.pub is None and capped.producers == {}  # no half-made peer connection
    # a hostile offer is refused before it is parsed (aiortc would log its complaint)
    hostile = sdp + "".join(f"m=video {i} UDP/TLS/RTP/SAVPF 96\r\n" for i in range(10_000))
    with pytest.raises(NegotiationError, match="10002 m-lines"):
        await capped.publish(hostile, tracks)
    assert "unparsable" not in caplog.text and capped.pub is None
    at_cap = Participant("camera-2", settings=MediaSettings(max_mlines_per_offer=2))
    answer, producers = await at_cap.publish(sdp, tracks)
    assert len(producers) == 2
    await at_cap.close()
    await client.t.close()


async def test_hostile_packets_into_the_handlers_are_ignored(room):
    from hypothesis import given, settings, strategies as st

    pub, publisher, producers = await publish(room)
    viewer, sub = await subscribed(room, "seller", [p.id for p in producers.values()])

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200))
    def feed(data):
        publisher._on_publisher_rtp(data, 0.0)
        publisher._on_publisher_rtcp(data)
        viewer._on_subscriber_rtcp(data)
        viewer._filter_outgoing_rtcp(data)

    ssrcs = [internals.sender_ssrc(pub.video.sender), internals.sender_ssrc(pub.audio.sender)]
    pts = [c.payloadType for tr in (pub.video, pub.audio) for c in internals.negotiated_codecs(tr)]

    # derandomized: a random storm may leave the stream's highest seq far ahead of the
    # publisher's next one, and a packet that looks 30,000 behind is rightly dropped
    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.sampled_from(ssrcs), st.sampled_from(pts), st.integers(0, 0xFFFF),
           st.integers(0, 0xFFFFFFFF), st.binary(max_size=64), st.booleans())
    def feed_rtp(ssrc, pt, seq, ts, payload, padded):
        import struct
        first = (0xA0 if padded else 0x80) | (0x10 if payload[:1] == b"\xbe" else 0)
        data = struct.pack("!BBHII", first, pt, seq, ts, ssrc) + payload
        publisher._on_publisher_rtp(data, 0.0)

    feed()
    feed_rtp()
    assert not publisher.closed
    pub.send("video", VP8_KEY, 1)  # still forwarding after the storm
    ok = await until(lambda: any(len(p) == 12 + len(VP8_KEY) and p.endswith(VP8_KEY) for p in sub.packets), timeout=5)
    c = next(iter(c for c in viewer.consumers.values() if c.kind == "video"))
    assert ok, (len(sub.packets), c.state.paused, c.state.started, c.state.dropped, c.state.packets, producers["video"].packets, producers["video"].malformed, publisher.demux.unroutable)
    await sub.t.close()
    await pub.t.close()


async def test_late_consumer_starts_from_the_cached_keyframe(room):
    room.settings.keyframe_replay_age = 60.0  # a slow machine: the rule is tested, not the timing
    pub, _, producers = await publish(room)
    first = room.join("early")
    early = ClientSubscriber(first)
    await room.subscribe(first, [producers["video"].id])
    await asyncio.wait_for(early.t.connected.wait(), 20)
    assert await until(lambda: all(not c.state.paused for c in first.consumers.values()))
    pub.send("video", VP8_KEY, 1000)
    for i in range(5):
        pub.send("video", VP8_DELTA, 4000 + i * 3000)
    assert await until(lambda: len(early.packets) == 6)

    requests_before = producers["video"].keyframes.sent + producers["video"].keyframes.suppressed
    late_p = room.join("late")
    late = ClientSubscriber(late_p)
    await room.subscribe(late_p, [producers["video"].id])
    await asyncio.wait_for(late.t.connected.wait(), 20)
    # the keyframe and the five frames since arrive without a new keyframe from the publisher
    assert await until(lambda: len(late.packets) == 6)
    payloads = [d[parse_header(d)[5]:parse_header(d)[6]] for d in late.packets]
    assert payloads == [VP8_KEY] + [VP8_DELTA] * 5
    seqs = [parse_header(d)[2] for d in late.packets]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == list(range(6))
    assert producers["video"].replays == 1
    # the keyframe was fresh: no request upstream for this consumer
    assert producers["video"].keyframes.sent + producers["video"].keyframes.suppressed == requests_before
    pub.send("video", VP8_DELTA, 19000)  # and live packets continue the sequence
    assert await until(lambda: len(late.packets) == 7)
    assert (parse_header(late.packets[-1])[2] - seqs[0]) & 0xFFFF == 6
    await early.t.close()
    await late.t.close()
    await pub.t.close()


async def test_failed_publisher_connection_unpublishes(room):
    pub, publisher, producers = await publish(room)
    viewer = room.join("seller")
    sub = ClientSubscriber(viewer)
    await room.subscribe(viewer, [producers["video"].id])
    await asyncio.wait_for(sub.t.connected.wait(), 20)
    lost = []
    publisher.on_media_lost = lost.append
    assert not publisher.media_lost()
    await pub.t.close()  # the camera's network is gone; its websocket may live on
    publisher._transport_state(publisher.pub, "failed")  # what ICE consent expiry reports
    await publisher.pub.close()
    # its only peer connection is gone: told (at least once; the node's handler is idempotent)
    assert publisher.media_lost() and lost and set(lost) == {publisher}
    assert publisher.producers == {} and room.producers == {}
    assert viewer.consumers == {}
    assert [type(e) for e in room.events].count(TrackUnpublished) == 2
    viewer._transport_state(viewer.sub, "failed")  # nothing left to pause: no error
    await sub.t.close()


# -- without peers: a manual clock, in-memory stand-ins ---------------------------------


async def test_events_are_typed_and_name_their_room():
    clock = ManualClock()
    room = Room("dock-9", clock=clock, scheduler=clock)
    events = []
    room.on_event = events.append
    assert room.created_at == clock.wall()
    participant = room.join("seller")
    assert participant.clock is clock and participant.scheduler is clock
    await room.leave(participant.id)
    await room.close("done")
    assert events == [ParticipantJoined("dock-9", participant),
                      ParticipantLeft("dock-9", participant), RoomClosed("dock-9", "done")]
    assert all(isinstance(e, RoomEvent) for e in events)
    with pytest.raises(dataclasses.FrozenInstanceError):
        events[0].room = "elsewhere"


async def test_unpublishing_renegotiates_in_the_background(caplog, clock, make_producer):
    room = Room("dock-9", clock=clock, scheduler=clock)
    room.on_event = lambda event: 1 / 0  # an observer bug is logged, nothing breaks
    viewers = [room.join("seller"), room.join("buyer")]
    offers = []
    for viewer in viewers:
        viewer.sub = FakeTransport()

    async def renegotiate(viewer=viewers[0]):
        offers.append(viewer.identity)

    async def broken():
        raise RuntimeError("offer failed")

    viewers[0].renegotiate, viewers[1].renegotiate = renegotiate, broken
    producer = make_producer()
    room.producers[producer.id] = producer
    producer.on_close.append(room._producer_closed)
    producer.close()
    assert room.producers == {} and offers == []  # not inside the close
    clock.advance(0)
    assert offers == ["seller"]
    assert "observer failed" in caplog.text and "background task failed" in caplog.text
    assert room._tasks == set()


async def test_the_subscriber_offer_names_each_tracks_publisher_and_id(room):
    pub, publisher, producers = await publish(room)
    viewer, sub = await subscribed(room, "seller", [p.id for p in producers.values()])
    sdp = viewer.sub.pc.localDescription.sdp
    for producer in producers.values():
        # one stream per publisher (a browser plays its audio and video in sync)
        assert f"a=msid:{publisher.id} {producer.id}" in sdp
    offered = viewer.offered_tracks()
    assert sorted((t["track_id"], t["participant_id"], t["kind"]) for t in offered) == sorted(
        (p.id, publisher.id, p.kind) for p in producers.values())
    assert sorted(t["mid"] for t in offered) == sorted(
        t.mid for t in viewer.sub.pc.getTransceivers())
    assert viewer.pending_offer() is None  # answered
    await sub.t.close()
    await pub.t.close()



async def test_the_room_tells_who_speaks_loudest_first_from_the_audio_levels(clock, make_producer):
    room = Room("dock-9", clock=clock, scheduler=clock)
    events = []
    room.on_event = events.append
    loud, quiet = room.join("loud"), room.join("quiet")
    video = room.publish_local(loud, make_producer("video"))
    publishers = {p.id: Publisher(room.publish_local(p, make_producer("audio")), step=960)
                  for p in (loud, quiet)}
    level_id = PUBLISHER_EXT_IDS[EXT_AUDIO_LEVEL]

    def talk(seconds, levels):
        """20 ms Opus packets from each publisher at -``level`` dBov."""
        for _ in range(round(seconds / 0.02)):
            for participant_id, level in levels.items():
                publishers[participant_id].send(b"\xfcopus", extensions=[(level_id, bytes([level]))])
            clock.advance(0.02)

    def speakers():
        return [e.speakers for e in events if isinstance(e, ActiveSpeakers)]

    talk(1.0, {loud.id: 10, quiet.id: 127})
    assert speakers() and all(e.room == "dock-9" for e in events)
    (first, level), = speakers()[0]  # the silent one is not listed
    assert first == loud.id and 0.2 < level <= 0.32  # -10 dBov, smoothed: about 0.316
    talk(1.0, {loud.id: 10, quiet.id: 30})
    assert [p for p, _ in speakers()[-1]] == [loud.id, quiet.id]
    talk(3.0, {loud.id: 127, quiet.id: 127})
    assert speakers()[-1] == ()  # the room fell silent: said once
    assert video.audio_level is None and room._speaker_timer is not None
    for publisher in publishers.values():
        publisher.producer.close()
    clock.advance(1.0)
    assert room._speaker_timer is None  # no level left to sample: the timer stopped
    count = len(speakers())
    clock.advance(5.0)
    assert len(speakers()) == count
    await room.close()


async def test_subscribers_get_rtx_and_opus_fec_in_their_offer(room):
    pub, publisher, producers = await publish(room)
    answer = pub.t.pc.remoteDescription.sdp  # the node's answer to the publisher
    assert "useinbandfec=1" in answer.split("m=audio")[1]
    viewer, sub = await subscribed(room, "seller", [p.id for p in producers.values()])
    video = viewer.consumers[producers["video"].id]
    offer = sub.t.pc.remoteDescription.sdp
    assert f"a=ssrc-group:FID {video.ssrc} {video.rtx_ssrc}" in offer
    rtx = next(c for c in internals.negotiated_codecs(viewer._transceivers[video.id])
               if c.mimeType.lower() == "video/rtx")
    assert video.rtx_payload_type == rtx.payloadType
    assert rtx.parameters["apt"] == video.state.payload_type
    assert viewer.consumers[producers["audio"].id].rtx_payload_type is None
    assert "useinbandfec=1" in offer.split("m=audio")[1]

    # a NACK from the subscriber is answered on the RTX stream, the OSN first
    pub.send("video", VP8_KEY, 300000)
    assert await until(lambda: video.ssrc in sub.by_ssrc())
    lost = sub.by_ssrc()[video.ssrc][0][2]
    sub.t.send_rtcp(serialize_rtcp([Nack(sender_ssrc=1, media_ssrc=video.ssrc, lost=[lost])]))
    assert await until(lambda: video.rtx_ssrc in sub.by_ssrc())
    data = next(d for d in sub.packets if parse_header(d)[4] == video.rtx_ssrc)
    h = parse_header(data)
    assert h[0] == rtx.payloadType and data[h[5]:h[5] + 2] == lost.to_bytes(2, "big")
    assert data[h[5] + 2:h[6]] == VP8_KEY
    await sub.t.close()
    await pub.t.close()
