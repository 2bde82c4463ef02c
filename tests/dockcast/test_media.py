"""dockcast.media: the per-participant caps, on stand-in rooms (no peer connection; the
same caps through real peers are in tests/e2e/test_caps.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from dockcast.media import MediaRequests
from dockcast.metrics import CapRefusals
from sfu.errors import NegotiationError, OfferTooLarge
from sfu.participant import MediaSettings, mline_count
from signalling.errors import BadRequest, Forbidden


class Member:
    def __init__(self) -> None:
        self.id = "PA1"
        self.producers: dict = {}
        self.consumers: dict = {}
        self.on_bandwidth = None


class StandInConsumer:
    def __init__(self) -> None:
        self.limits: dict = {}
        self.on_close: list = []

    def set_limits(self, **limits) -> None:
        self.limits = limits


class StandInRoom:
    """A media room whose subscribe waits for ``gate`` (the consumers come later, as
    after a real subscribe's reply) and whose publish records its calls."""

    def __init__(self, member: Member) -> None:
        self.name = "dock-1"
        self.member = member
        self.events: list = []  # what the media room reported (to the bus)
        self.on_event = self.events.append
        self.producers = {f"TR{i}": object() for i in range(1, 4)}
        self.settings = MediaSettings(max_mlines_per_offer=2)
        self.gate = asyncio.Event()
        self.published: list = []
        self.publish_error: Exception | None = None

    async def subscribe(self, participant, track_ids):
        await self.gate.wait()
        made = [participant.consumers.setdefault(track_id, StandInConsumer())
                for track_id in track_ids if track_id not in participant.consumers]
        return made

    async def publish(self, participant, sdp, tracks):
        cap = self.settings.max_mlines_per_offer
        if cap and mline_count(sdp) > cap:  # as the media plane refuses it
            raise OfferTooLarge(f"the offer has {mline_count(sdp)} m-lines")
        if self.publish_error is not None:
            raise self.publish_error
        self.published.append([t["mid"] for t in tracks])
        for t in tracks:
            participant.producers[f"TR-{t['mid']}"] = SimpleNamespace(id=f"TR-{t['mid']}", mid=t["mid"],
                                                                     kind="video")
        return "answer", []


@pytest.fixture
def media():
    member = Member()
    room = StandInRoom(member)
    rooms = SimpleNamespace(participant=lambda conn: (room, member), refusals=CapRefusals())
    rooms.retired = SimpleNamespace(retire_consumer=lambda consumer: None)
    requests = MediaRequests(rooms, max_tracks_per_participant=2, max_subscriptions_per_participant=2)
    conn = SimpleNamespace(room="dock-1", participant_id="PA1", sent=[])
    conn.send_event = conn.sent.append
    rooms.membership = SimpleNamespace(members=lambda name: [SimpleNamespace(participant_id="PA1", conn=conn)])
    return SimpleNamespace(requests=requests, room=room, member=member, conn=conn,
                           counts=rooms.refusals.counts, rooms=rooms)


def subscribe(*track_ids, **limits):
    return {"type": "subscribe", "track_ids": list(track_ids), **limits}


def publish(*mids, sdp="v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"):
    return {"type": "publish", "sdp": sdp,
            "tracks": [{"mid": mid, "kind": "video", "source": "camera"} for mid in mids]}


async def test_subscriptions_answered_but_not_made_yet_count(media):
    on = media.requests.on_subscribe
    await on(media.conn, subscribe("TR1"))
    assert media.member.consumers == {}  # its consumer comes after the reply
    with pytest.raises(Forbidden, match="max_subscriptions_per_participant"):
        await on(media.conn, subscribe("TR2", "TR3"))
    await on(media.conn, subscribe("TR1", "TR2"))  # TR1 counts once
    media.room.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert sorted(media.member.consumers) == ["TR1", "TR2"] and media.requests._subscribing == {}
    with pytest.raises(Forbidden):
        await on(media.conn, subscribe("TR3"))
    await on(media.conn, subscribe("TR2"))  # already had: nothing more
    assert media.counts["subscriptions_per_participant"] == 2
    await asyncio.gather(*media.requests._tasks)


async def test_tracks_count_the_mids_not_published_yet(media):
    on = media.requests.on_publish
    await on(media.conn, publish("0"))
    await on(media.conn, publish("0", "1"))  # a new offer: mid 0 is published already
    with pytest.raises(Forbidden, match="max_tracks_per_participant"):
        await on(media.conn, publish("0", "1", "2"))
    assert media.room.published == [["0"], ["0", "1"]]  # the refused one never reached the room
    assert media.counts["tracks_per_participant"] == 1


async def test_an_offer_over_the_m_line_cap_is_counted_other_bad_offers_not(media):
    media.room.publish_error = NegotiationError("refused by the media plane")
    three = "v=0\r\n" + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" * 3
    with pytest.raises(NegotiationError):
        await media.requests.on_publish(media.conn, publish("0", sdp=three))
    with pytest.raises(NegotiationError):
        await media.requests.on_publish(media.conn, publish("0"))
    assert media.counts["mlines_per_offer"] == 1


async def test_layer_limits_reach_new_and_existing_consumers(media):
    on = media.requests.on_subscribe
    await on(media.conn, subscribe("TR1", max_height=180))
    media.room.gate.set()
    for _ in range(5):  # the consumer is made after the reply
        await asyncio.sleep(0)
    assert media.member.consumers["TR1"].limits == {"max_height": 180, "max_fps": None}
    await on(media.conn, subscribe("TR1", max_fps=15))  # again: only the limits change
    assert media.member.consumers["TR1"].limits == {"max_height": None, "max_fps": 15}
    for bad in ({"max_height": 0}, {"max_fps": "30"}, {"max_height": True}):
        with pytest.raises(BadRequest, match=next(iter(bad))):
            await on(media.conn, subscribe("TR1", **bad))


async def test_a_track_paused_for_bandwidth_is_told_to_its_subscriber_only(media):
    other = SimpleNamespace(sent=[])
    other.send_event = other.sent.append
    members = [SimpleNamespace(participant_id="PA1", conn=media.conn),
               SimpleNamespace(participant_id="PA2", conn=other)]
    media.rooms.membership = SimpleNamespace(members=lambda name: members)
    await media.requests.on_subscribe(media.conn, subscribe("TR1"))
    consumer = SimpleNamespace(producer=SimpleNamespace(id="TR1"))
    media.member.on_bandwidth(consumer, "bandwidth")
    media.member.on_bandwidth(consumer, None)
    assert media.conn.sent == [{"type": "track_paused", "track_id": "TR1", "reason": "bandwidth"},
                               {"type": "track_resumed", "track_id": "TR1"}]
    assert other.sent == []
    assert [type(e).__name__ for e in media.room.events] == ["TrackPaused", "TrackResumed"]
    media.room.gate.set()
    await asyncio.gather(*media.requests._tasks)
