"""Node-wide caps through a real node started with tiny ones: each refusal is the
documented error code, changes nothing, and counts in ``dockcast_cap_refusals_total``."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection

from .peer import CountingVideoTrack, Participant, ProtocolError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CAPS = {
    "DOCKCAST_MAX_ROOMS": "1",
    "DOCKCAST_MAX_PARTICIPANTS_PER_ROOM": "3",
    "DOCKCAST_MAX_TRACKS_PER_PARTICIPANT": "1",
    "DOCKCAST_MAX_SUBSCRIPTIONS_PER_PARTICIPANT": "1",
    "DOCKCAST_MAX_MLINES_PER_OFFER": "2",
}


async def _joined(node, identity, room="dock-1"):
    p = Participant(node.url, node.token(identity, room=room))
    await p.connect()
    await p.join(room)
    return p


async def _refused(code, coro):
    with pytest.raises(ProtocolError) as refused:
        await coro
    assert refused.value.code == code, refused.value
    return refused.value


async def test_tiny_caps_refuse_with_their_codes_and_count(node_factory):
    node = node_factory.start(env=CAPS)

    def cap(name):
        return node.metrics()[f'dockcast_cap_refusals_total{{cap="{name}"}}']

    assert [cap(n) for n in ("rooms", "participants_per_room", "tracks_per_participant",
                             "subscriptions_per_participant", "mlines_per_offer")] == [0] * 5
    peers = []
    try:
        cam1 = await _joined(node, "cam-1")
        peers.append(cam1)
        # rooms: the node has its one room open; neither a join nor room.create opens another
        other = Participant(node.url, node.token("other", room="dock-2"))
        peers.append(other)
        await other.connect()
        await _refused("unavailable", other.request("join", room="dock-2"))
        admin = Participant(node.url, node.token("desk", room=None, grants=("admin",)))
        peers.append(admin)
        await admin.connect()
        await _refused("unavailable", admin.request("room.create", room="dock-3"))
        assert [r["room"] for r in (await admin.request("room.list"))["rooms"]] == ["dock-1"]
        assert cap("rooms") == 2

        # m-lines: three in one offer (one track named) is bad_request before anything is made
        pc = RTCPeerConnection()
        for _ in range(3):
            pc.addTransceiver(CountingVideoTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        mid = pc.getTransceivers()[0].mid
        refused = await _refused("bad_request", cam1.request(
            "publish", sdp=pc.localDescription.sdp,
            tracks=[{"mid": mid, "kind": "video", "source": "camera"}]))
        assert "max_mlines_per_offer" in str(refused)
        await pc.close()
        assert cap("mlines_per_offer") == 1

        # tracks: audio and video are two, one over the cap; one video track is fine
        await _refused("forbidden", cam1.publish())
        await cam1.pub.close()
        assert cap("tracks_per_participant") == 1 and node.metrics()["dockcast_tracks"] == 0
        first = (await cam1.publish(audio=False))["tracks"][0]["track_id"]
        cam2 = await _joined(node, "cam-2")
        peers.append(cam2)
        second = (await cam2.publish(audio=False))["tracks"][0]["track_id"]

        # participants: a room of three takes no fourth
        viewer = await _joined(node, "viewer")
        peers.append(viewer)
        late = Participant(node.url, node.token("late"))
        peers.append(late)
        await late.connect()
        await _refused("forbidden", late.request("join", room="dock-1"))
        assert node.metrics()["dockcast_participants"] == 3 and cap("participants_per_room") == 1

        # subscriptions: one track is the cap; the same one again is no more
        assert (await viewer.request("subscribe", track_ids=[first]))["track_ids"] == [first]
        await viewer.next_event("offer")
        await viewer.request("subscribe", track_ids=[first])
        await _refused("forbidden", viewer.request("subscribe", track_ids=[second]))
        await _refused("forbidden", viewer.request("subscribe", track_ids=[first, second]))
        assert cap("subscriptions_per_participant") == 2
        assert node.metrics()["dockcast_consumers"] == 1
        # unsubscribing frees the place
        await viewer.request("unsubscribe", track_ids=[first])
        assert (await viewer.request("subscribe", track_ids=[second]))["track_ids"] == [second]
        assert [cap(n) for n in ("rooms", "participants_per_room", "tracks_per_participant",
                                 "subscriptions_per_participant", "mlines_per_offer")] == [2, 1, 1, 2, 1]
    finally:
        for p in peers:
            await p.close()
