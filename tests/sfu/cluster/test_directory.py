"""The cluster directory, one suite for both backends: the registry, expiry and what a
dead node leaves behind, watching, room placement under concurrency, producers, argument
checks; and NodeInfo's wire form."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.cluster import (
    DirectoryClosed,
    InvalidEntry,
    NodeDown,
    NodeInfo,
    NodeUp,
    ProducerInfo,
    UnknownNode,
)

BOUND_S = 10.0  # no wait below is longer: a watcher that never reports fails the test


def node_info(node_id: str, region: str = "ap-east", load: float = 0.0) -> NodeInfo:
    return NodeInfo(node_id, region, f"wss://{node_id}.example:8443/ws", f"10.0.0.1:{9000 + len(node_id)}",
                    "sha-256 AB:CD:" + node_id.upper(), load)


async def registered(directory, *node_ids: str) -> list[NodeInfo]:
    return [await directory.register(node_info(node_id)) for node_id in node_ids]


# -- the registry ---------------------------------------------------------------------------


async def test_registered_nodes_are_listed_with_their_info(backend):
    [d] = backend.directories()
    szx = await d.register(node_info("szx", "ap-east", load=0.25))
    lax = await d.register(node_info("lax", "us-west"))
    assert szx == dataclasses.replace(node_info("szx", "ap-east", 0.25), incarnation=szx.incarnation)
    assert 0 < szx.incarnation < lax.incarnation
    assert await d.nodes() == [lax, szx]  # by id
    assert await d.node("szx") == szx
    assert (await d.node("szx")).public_url == "wss://szx.example:8443/ws"
    assert await d.node("fra") is None


async def test_heartbeat_reports_the_load(backend):
    [d] = backend.directories()
    await registered(d, "szx")
    await d.heartbeat("szx", 0.75)
    assert (await d.node("szx")).load == 0.75
    with pytest.raises(UnknownNode, match="'fra'") as info:
        await d.heartbeat("fra", 0.1)
    assert info.value.code == "not_found"


async def test_another_node_sees_the_same_directory(backend):
    a, b = backend.directories(2)
    [szx] = await registered(a, "szx")
    assert await b.nodes() == [szx]
    await b.join_room("dock-1", "szx")
    assert await a.room_nodes("dock-1") == ["szx"]


async def test_registering_again_is_a_new_incarnation_that_starts_afresh(backend):
    [d] = backend.directories()
    [first] = await registered(d, "szx")
    await d.join_room("dock-1", "szx")
    await d.claim_room("dock-1", "szx")
    await d.publish("dock-1", "TR_cam", "szx", {"kind": "video"})
    again = await d.register(node_info("szx", "ap-south"))
    assert again.incarnation > first.incarnation
    assert (await d.node("szx")).region == "ap-south"
    assert await d.room_nodes("dock-1") == []
    assert await d.room_home("dock-1") is None
    assert await d.producers("dock-1") == []


async def test_deregister_forgets_the_node_and_all_it_had(backend):
    [d] = backend.directories()
    await registered(d, "szx", "lax")
    await d.join_room("dock-1", "szx")
    await d.join_room("dock-1", "lax")
    await d.claim_room("dock-1", "szx")
    await d.publish("dock-1", "TR_cam", "szx")
    await d.deregister("szx")
    await d.deregister("szx")  # idempotent
    assert [n.node_id for n in await d.nodes()] == ["lax"]
    assert await d.room_nodes("dock-1") == ["lax"]
    assert await d.room_home("dock-1") is None
    assert await d.origin("TR_cam") is None


# -- expiry -----------------------------------------------------------------------------------


async def test_heartbeats_keep_a_node_alive_and_without_them_it_expires(backend):
    [d] = backend.directories(ttl_s=1.5)
    await registered(d, "szx", "lax")
    await backend.age(d, 2.0, keep_alive=("szx", "lax"))  # longer than the TTL
    assert [n.node_id for n in await d.nodes()] == ["lax", "szx"]
    await backend.age(d, 1.6, keep_alive=("lax",))
    assert [n.node_id for n in await d.nodes()] == ["lax"]
    assert await d.node("szx") is None
    with pytest.raises(UnknownNode):
        await d.heartbeat("szx", 0.0)  # too late: it must register again
    await registered(d, "szx")
    assert await d.node("szx") is not None


async def test_everything_of_a_dead_node_goes_and_it_can_no_longer_write(backend):
    a, b = backend.directories(2, ttl_s=1.0)
    await registered(a, "szx", "lax")
    for node_id, track in (("szx", "TR_szx"), ("lax", "TR_lax")):
        await a.join_room("dock-1", node_id)
        await a.publish("dock-1", track, node_id, {"kind": "video"})
    await a.join_room("dock-2", "szx")  # szx alone there
    assert await a.claim_room("dock-1", "szx") == "szx"
    assert await a.claim_room("dock-2", "szx") == "szx"
    await backend.age(a, 1.1, keep_alive=("lax",))
    # every reader sees it gone, reaped or not
    assert await b.room_nodes("dock-1") == ["lax"]
    assert await b.room_home("dock-1") is None
    assert [p.track_id for p in await b.producers("dock-1")] == ["TR_lax"]
    assert await b.origin("TR_szx") is None
    await b.reap()
    assert await b.reap() == []
    assert await b.room_nodes("dock-2") == []
    assert await b.claim_room("dock-1", "lax") == "lax"
    for write in (lambda: a.join_room("dock-3", "szx"), lambda: a.claim_room("dock-3", "szx"),
                  lambda: a.publish("dock-3", "TR_x", "szx")):
        with pytest.raises(UnknownNode):
            await write()
    assert await a.room_nodes("dock-3") == [] and await a.origin("TR_x") is None


async def test_reap_names_the_dead_once(backend):
    a, b = backend.directories(2, ttl_s=1.0)
    await registered(a, "szx", "lax")
    await backend.age(a, 1.1, keep_alive=("lax",))
    if backend.kind == "memory":  # it forgets the dead at any call, the heartbeat above too
        assert await b.reap() == []
    else:
        assert await asyncio.gather(a.reap(), b.reap()) in (
            [["szx"], []], [[], ["szx"]])


# -- watching ---------------------------------------------------------------------------------


async def test_watch_reports_nodes_coming_and_going(backend):
    a, b = backend.directories(2, ttl_s=1.0)
    szx, lax = await registered(a, "szx", "lax")
    watch = b.watch(poll_s=0.05)

    async def next_event():
        return await asyncio.wait_for(anext(watch), BOUND_S)

    try:
        assert {await next_event(), await next_event()} == {NodeUp(szx), NodeUp(lax)}
        [fra] = await registered(a, "fra")
        assert await next_event() == NodeUp(fra)
        await a.deregister("lax")
        assert await next_event() == NodeDown(lax)
        fra_again = await a.register(node_info("fra"))
        assert [await next_event(), await next_event()] == [NodeDown(fra), NodeUp(fra_again)]
        await backend.age(a, 1.1, keep_alive=("fra",))  # szx stops heartbeating
        event = await next_event()
        assert event == NodeDown(szx)
    finally:
        await watch.aclose()


async def test_watch_ends_when_the_directory_is_closed(backend):
    [d] = backend.directories()
    await registered(d, "szx")
    watch = d.watch(poll_s=0.01)
    assert isinstance(await asyncio.wait_for(anext(watch), BOUND_S), NodeUp)
    await d.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(watch), BOUND_S)
    with pytest.raises(DirectoryClosed) as info:
        await d.nodes()
    assert info.value.code == "unavailable"


# -- rooms --------------------------------------------------------------------------------------


async def test_room_nodes_follow_joins_and_leaves(backend):
    [d] = backend.directories()
    await registered(d, "szx", "lax")
    await d.join_room("dock-1", "szx")
    await d.join_room("dock-1", "lax")
    await d.join_room("dock-1", "szx")  # idempotent
    assert await d.room_nodes("dock-1") == ["lax", "szx"]
    await d.leave_room("dock-1", "szx")
    await d.leave_room("dock-1", "szx")
    await d.leave_room("dock-1", "fra")  # never there: nothing happens
    assert await d.room_nodes("dock-1") == ["lax"]
    assert await d.room_nodes("dock-2") == []
    with pytest.raises(UnknownNode):
        await d.join_room("dock-1", "fra")


async def test_claims_are_atomic_under_concurrency(backend):
    nodes = ("szx", "lax", "fra")
    views = backend.directories(len(nodes))
    await registered(views[0], *nodes)
    rooms = [f"dock-{i}" for i in range(20)]
    claims = [(room, node_id, view) for room in rooms for node_id, view in zip(nodes, views)] * 2
    homes = await asyncio.gather(*(view.claim_room(room, node_id) for room, node_id, view in claims))
    answer: dict[str, str] = {}
    for (room, _, _), home in zip(claims, homes):
        assert answer.setdefault(room, home) == home  # every claimant got the same home
    assert set(answer.values()) <= set(nodes)
    for room in rooms:
        assert await views[1].room_home(room) == answer[room]
    with pytest.raises(UnknownNode):
        await views[0].claim_room("dock-99", "ord")


async def test_a_claim_lasts_until_the_room_empties_or_its_node_dies(backend):
    [d] = backend.directories(ttl_s=1.0)
    await registered(d, "szx", "lax")
    assert await d.claim_room("dock-1", "szx") == "szx"
    await d.leave_room("dock-1", "lax")  # lax was not in the room: the claim stays
    assert await d.claim_room("dock-1", "lax") == "szx"
    await d.join_room("dock-1", "szx")
    await d.join_room("dock-1", "lax")
    await d.leave_room("dock-1", "szx")
    assert await d.room_home("dock-1") == "szx"  # lax still has members there
    await d.leave_room("dock-1", "lax")
    assert await d.room_home("dock-1") is None  # the room emptied
    assert await d.claim_room("dock-1", "lax") == "lax"
    assert await d.claim_room("dock-2", "szx") == "szx"
    await backend.age(d, 1.1, keep_alive=("lax",))
    assert await d.room_home("dock-2") is None
    assert await d.claim_room("dock-2", "lax") == "lax"


# -- producers -------------------------------------------------------------------------------


async def test_producers_and_their_origin(backend):
    a, b = backend.directories(2)
    await registered(a, "szx", "lax")
    await a.publish("dock-1", "TR_cam", "szx", {"kind": "video", "codec": "VP8"})
    await b.publish("dock-1", "TR_mic", "lax", {"kind": "audio"})
    await a.publish("dock-2", "TR_other", "lax")
    assert await b.producers("dock-1") == [
        ProducerInfo("dock-1", "TR_cam", "szx", {"kind": "video", "codec": "VP8"}),
        ProducerInfo("dock-1", "TR_mic", "lax", {"kind": "audio"}),
    ]
    assert await a.origin("TR_cam") == "szx"
    assert await a.origin("TR_none") is None
    await a.unpublish("dock-1", "TR_cam", "lax")  # not its origin: ignored
    await a.unpublish("dock-2", "TR_cam", "szx")  # not its room: ignored
    assert await a.origin("TR_cam") == "szx"
    await a.unpublish("dock-1", "TR_cam", "szx")
    assert await a.origin("TR_cam") is None
    assert [p.track_id for p in await a.producers("dock-1")] == ["TR_mic"]


async def test_a_track_whose_publisher_moved_keeps_its_new_origin(backend):
    [d] = backend.directories()
    await registered(d, "szx", "lax")
    await d.publish("dock-1", "TR_cam", "szx", {"v": 1})
    await d.publish("dock-1", "TR_cam", "lax", {"v": 2})  # the publisher reconnected to lax
    assert await d.producers("dock-1") == [ProducerInfo("dock-1", "TR_cam", "lax", {"v": 2})]
    await d.unpublish("dock-1", "TR_cam", "szx")  # szx's late news of its leaving
    await d.deregister("szx")
    assert await d.origin("TR_cam") == "lax"


# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda d: d.join_room("", "szx"), "room must be a string of 1 to 256"),
        (lambda d: d.join_room("r" * 257, "szx"), "room"),
        (lambda d: d.claim_room("dock", 7), "node_id"),
        (lambda d: d.heartbeat("szx", -1), "load"),
        (lambda d: d.heartbeat("szx", float("nan")), "load"),
        (lambda d: d.heartbeat("szx", True), "load"),
        (lambda d: d.publish("dock", "TR", "szx", ["not", "a", "dict"]), "dict"),
        (lambda d: d.publish("dock", "TR", "szx", {"x": {1, 2}}), "JSON"),
        (lambda d: d.publish("dock", "TR", "szx", {"x": float("inf")}), "JSON"),
        (lambda d: d.origin(None), "track_id"),
        (lambda d: d.register({"node_id": "szx"}), "NodeInfo"),
    ],
)
async def test_bad_arguments_are_refused_alike(backend, call, match):
    [d] = backend.directories()
    await registered(d, "szx")
    with pytest.raises(InvalidEntry, match=match) as info:
        await call(d)
    assert info.value.code == "bad_request"
    assert await d.producers("dock") == [] and await d.room_nodes("dock") == []


# -- NodeInfo on the wire ----------------------------------------------------------------------


def test_node_info_round_trips_and_refuses_bad_fields():
    info = NodeInfo("szx", "ap-east", "wss://szx:8443", "10.0.0.1:9001", "sha-256 AB", 0.5, 3)
    assert NodeInfo.parse(info.serialize()) == info
    assert NodeInfo.parse(b'{"node_id":"a","region":"","public_url":"u","trunk_address":"t",'
                          b'"cert_fingerprint":"f","from_a_newer_node":1}').load == 0.0
    for bad in (b"", b"[]", b'{"node_id":"a"}', b"\xff", b"[" * 100_000,
                b'{"node_id":"","region":"","public_url":"","trunk_address":"","cert_fingerprint":""}',
                b'{"node_id":"a","region":1,"public_url":"","trunk_address":"","cert_fingerprint":""}'):
        with pytest.raises(InvalidEntry):
            NodeInfo.parse(bad)
    with pytest.raises(InvalidEntry, match="incarnation"):
        NodeInfo("a", "", "", "", "", 0.0, -1)
    with pytest.raises(InvalidEntry, match="load"):
        NodeInfo("a", "", "", "", "", 10**400)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@given(data=st.binary(max_size=300)
       | st.dictionaries(st.sampled_from(["node_id", "region", "public_url", "trunk_address",
                                          "cert_fingerprint", "load", "incarnation"]), json_values)
       .map(lambda fields: json.dumps(fields).encode()))
def test_node_info_parse_gives_a_node_or_invalid_entry(data):
    try:
        info = NodeInfo.parse(data)
    except InvalidEntry:
        return
    assert NodeInfo.parse(info.serialize()) == info
