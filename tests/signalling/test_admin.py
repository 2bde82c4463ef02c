"""signalling.admin: the administration handlers against a stand-in node."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from signalling.admin import MAX_WATCHED, Admin
from signalling.errors import BadRequest, Conflict, Forbidden, NotFound
from signalling.membership import LocalMembership
from signalling.schema import validate


class Conn:
    def __init__(self, room_claim: str | None = None, shipment_claim: str | None = None) -> None:
        self.claims = SimpleNamespace(room=room_claim, shipment=shipment_claim, name=None)
        self.events: list[dict] = []

    def send_event(self, msg: dict) -> bool:
        self.events.append(msg)
        return True


class Host:
    """A RoomHost that keeps rooms in a dict and logs what it is asked to do."""

    def __init__(self) -> None:
        self.lifecycle = asyncio.Lock()
        self.rooms: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple] = []
        self.refuse: Exception | None = None

    def room_info(self, room):
        return self.rooms.get(room)

    def room_names(self):
        return list(self.rooms)

    async def create_room(self, room, fields):
        assert self.lifecycle.locked()
        if self.refuse is not None:
            raise self.refuse
        self.calls.append(("create", room, dict(fields)))
        self.rooms[room] = {"room": room, "shipment_id": fields.get("shipment_id"), "participants": []}
        return self.rooms[room]

    async def close_room(self, room, reason):
        assert self.lifecycle.locked()
        self.calls.append(("close", room, reason))
        del self.rooms[room]

    def has_participant(self, room, participant_id):
        return participant_id == "P1"

    async def remove_participant(self, room, participant_id):
        self.calls.append(("remove", room, participant_id))


ADMIN = Conn()


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def admin(host) -> Admin:
    return Admin(host, LocalMembership())


async def ask(admin: Admin, msg_type: str, conn: Conn = ADMIN, **fields: Any) -> dict:
    return await admin.handlers()[msg_type](conn, validate({"type": msg_type, "id": 1, **fields}))


async def test_room_create_opens_and_answers_room(admin, host):
    reply = await ask(admin, "room.create", room="dock-1", shipment_id="S1", metadata={"d": 1})
    assert reply["type"] == "room" and reply["room"] == "dock-1" and reply["shipment_id"] == "S1"
    assert host.calls == [("create", "dock-1", {"room": "dock-1", "shipment_id": "S1", "metadata": {"d": 1}})]


async def test_room_create_refusals_change_nothing(admin, host):
    await ask(admin, "room.create", room="dock-1")
    with pytest.raises(Conflict):
        await ask(admin, "room.create", room="dock-1")
    with pytest.raises(Forbidden):
        await ask(admin, "room.create", Conn(room_claim="dock-1"), room="dock-2")
    with pytest.raises(BadRequest):
        await ask(admin, "room.create", room="r" * 300)
    host.refuse = Conflict("shipment S1 is bound to open room dock-1")
    with pytest.raises(Conflict):
        await ask(admin, "room.create", room="dock-2", shipment_id="S1")
    assert list(host.rooms) == ["dock-1"] and len(host.calls) == 1
    assert not host.lifecycle.locked()


async def test_room_list_shows_what_the_token_admits(admin):
    for name in ("dock-2", "dock-1"):
        await ask(admin, "room.create", room=name)
    assert [r["room"] for r in (await ask(admin, "room.list"))["rooms"]] == ["dock-1", "dock-2"]
    limited = await ask(admin, "room.list", Conn(room_claim="dock-2"))
    assert [r["room"] for r in limited["rooms"]] == ["dock-2"]


async def test_room_close(admin, host):
    with pytest.raises(NotFound):
        await ask(admin, "room.close", room="dock-1")
    await ask(admin, "room.create", room="dock-1")
    with pytest.raises(Forbidden):
        await ask(admin, "room.close", Conn(room_claim="dock-9"), room="dock-1")
    assert await ask(admin, "room.close", room="dock-1") == {"type": "ok"}
    assert host.calls[-1] == ("close", "dock-1", "closed")


async def test_participant_remove(admin, host):
    with pytest.raises(NotFound):
        await ask(admin, "participant.remove", room="dock-1", participant_id="P1")
    await ask(admin, "room.create", room="dock-1")
    with pytest.raises(NotFound):
        await ask(admin, "participant.remove", room="dock-1", participant_id="P2")
    assert await ask(admin, "participant.remove", room="dock-1", participant_id="P1") == {"type": "ok"}
    assert host.calls[-1] == ("remove", "dock-1", "P1")


async def test_events_subscribe_checks_before_subscribing(admin):
    watcher = Conn()
    with pytest.raises(BadRequest):
        await ask(admin, "events.subscribe", watcher)
    with pytest.raises(BadRequest):
        await ask(admin, "events.subscribe", watcher, rooms=[], shipment_ids=[])
    with pytest.raises(Forbidden):
        await ask(admin, "events.subscribe", Conn(room_claim="dock-1"), rooms=["dock-1", "dock-2"])
    with pytest.raises(BadRequest):
        await ask(admin, "events.subscribe", watcher, shipment_ids=["s" * 300])
    await ask(admin, "events.subscribe", watcher, rooms=[f"r{i}" for i in range(MAX_WATCHED - 1)])
    with pytest.raises(BadRequest):
        await ask(admin, "events.subscribe", watcher, shipment_ids=["S1", "S2"])
    assert await ask(admin, "events.subscribe", watcher, shipment_ids=["S1"]) == {"type": "ok"}
    assert admin.membership.watched_count(watcher) == MAX_WATCHED


# -- scopes of a token: rooms and shipments (issue 8, point 1) -------------------------


async def test_a_room_scoped_token_may_not_watch_shipments(admin):
    """A shipment's events follow it to whatever room it is bound to next: a token for
    room A watching a shipment would hear room B. It watches its room instead."""
    for conn in (Conn(room_claim="dock-1"), Conn(room_claim="dock-1", shipment_claim="S1")):
        with pytest.raises(Forbidden):
            await ask(admin, "events.subscribe", conn, shipment_ids=["S2"])
        with pytest.raises(Forbidden):
            await ask(admin, "events.subscribe", conn, shipment_ids=["S1"])
        with pytest.raises(Forbidden):  # with its own room too: nothing is watched
            await ask(admin, "events.subscribe", conn, rooms=["dock-1"], shipment_ids=["S1"])
        assert admin.membership.watched_count(conn) == 0
        assert await ask(admin, "events.subscribe", conn, rooms=["dock-1"]) == {"type": "ok"}
        assert admin.membership.watched_count(conn) == 1


async def test_a_shipment_scoped_token_watches_only_its_shipment(admin):
    conn = Conn(shipment_claim="S1")
    with pytest.raises(Forbidden):
        await ask(admin, "events.subscribe", conn, shipment_ids=["S1", "S2"])
    with pytest.raises(Forbidden):  # a room by name, whatever shipment it holds
        await ask(admin, "events.subscribe", conn, rooms=["dock-1"])
    assert admin.membership.watched_count(conn) == 0
    assert await ask(admin, "events.subscribe", conn, shipment_ids=["S1"]) == {"type": "ok"}
    assert admin.membership.watchers(None, "S1") == {conn}


async def test_an_unscoped_admin_token_watches_anything(admin):
    conn = Conn()
    assert await ask(admin, "events.subscribe", conn, rooms=["dock-1"], shipment_ids=["S1", "S2"]) \
        == {"type": "ok"}
    assert admin.membership.watched_count(conn) == 3


async def test_room_create_binds_only_the_tokens_shipment(admin, host):
    with pytest.raises(Forbidden):
        await ask(admin, "room.create", Conn(room_claim="dock-1", shipment_claim="S1"),
                  room="dock-1", shipment_id="S2")
    with pytest.raises(Forbidden):  # a shipment token opens only rooms of its shipment
        await ask(admin, "room.create", Conn(shipment_claim="S1"), room="dock-1", shipment_id="S2")
    with pytest.raises(Forbidden):
        await ask(admin, "room.create", Conn(shipment_claim="S1"), room="dock-1")
    assert host.rooms == {} and host.calls == []
    reply = await ask(admin, "room.create", Conn(room_claim="dock-1", shipment_claim="S1"),
                      room="dock-1", shipment_id="S1")
    assert reply["shipment_id"] == "S1"
    reply = await ask(admin, "room.create", Conn(shipment_claim="S2"), room="dock-2", shipment_id="S2")
    assert reply["shipment_id"] == "S2"
    # a room token binds any shipment to its own room
    reply = await ask(admin, "room.create", Conn(room_claim="dock-3"), room="dock-3", shipment_id="S3")
    assert reply["shipment_id"] == "S3"


async def test_room_create_by_a_scoped_token_does_not_name_another_room(admin, host):
    await ask(admin, "room.create", room="dock-b", shipment_id="S1")
    for conn in (Conn(room_claim="dock-a"), Conn(shipment_claim="S1")):
        with pytest.raises(Conflict) as refused:
            await ask(admin, "room.create", conn, room="dock-a", shipment_id="S1")
        assert "dock-b" not in str(refused.value)
    assert list(host.rooms) == ["dock-b"] and len(host.calls) == 1


async def test_a_shipment_scoped_token_acts_only_on_the_room_of_its_shipment(admin, host):
    await ask(admin, "room.create", room="dock-1", shipment_id="S1")
    await ask(admin, "room.create", room="dock-2", shipment_id="S2")
    await ask(admin, "room.create", room="plain")
    conn = Conn(shipment_claim="S1")
    assert [r["room"] for r in (await ask(admin, "room.list", conn))["rooms"]] == ["dock-1"]
    for room in ("dock-2", "plain", "not-open"):
        with pytest.raises(Forbidden):
            await ask(admin, "participant.remove", conn, room=room, participant_id="P1")
        with pytest.raises(Forbidden):
            await ask(admin, "room.close", conn, room=room)
    assert [c[0] for c in host.calls] == ["create"] * 3
    assert await ask(admin, "participant.remove", conn, room="dock-1", participant_id="P1") == {"type": "ok"}
    assert await ask(admin, "room.close", conn, room="dock-1") == {"type": "ok"}
    assert sorted(host.rooms) == ["dock-2", "plain"]


def test_merge_rooms_joins_one_room_across_nodes():
    from signalling.admin import merge_rooms

    here = [{"room": "b", "shipment_id": "S1", "participants": [{"participant_id": "p1"}]}]
    there = [{"room": "a", "shipment_id": None, "participants": []},
             {"room": "b", "shipment_id": "other", "participants": [{"participant_id": "p2"},
                                                                     {"participant_id": "p1"}]},
             {"room": None, "participants": []}]
    merged = merge_rooms(here, there)
    assert [r["room"] for r in merged] == ["a", "b"]
    b = merged[1]
    assert b["shipment_id"] == "S1"  # this node's fields win
    assert [p["participant_id"] for p in b["participants"]] == ["p1", "p2"]  # each once
    assert here[0]["participants"] == [{"participant_id": "p1"}]  # the inputs are not changed


@pytest.fixture
def two_nodes():
    """Two admins wired as a cluster would: each asks the other's `answer`."""
    hosts = [Host(), Host()]
    admins = [Admin(h, LocalMembership()) for h in hosts]
    for me, other in ((0, 1), (1, 0)):
        async def elsewhere(op, args, other=other):
            return [await admins[other].answer(op, args)]
        admins[me].elsewhere = elsewhere
    return hosts, admins


async def test_room_list_close_and_remove_reach_the_other_node(two_nodes):
    hosts, (here, there) = two_nodes
    await ask(there, "room.create", room="dock-1", shipment_id="S1")
    await ask(here, "room.create", room="dock-2")
    assert [r["room"] for r in (await ask(here, "room.list"))["rooms"]] == ["dock-1", "dock-2"]
    assert [r["room"] for r in (await ask(here, "room.list", Conn(room_claim="dock-1")))["rooms"]] == ["dock-1"]
    # a participant of the other node's room
    assert await ask(here, "participant.remove", room="dock-1", participant_id="P1") == {"type": "ok"}
    assert hosts[1].calls[-1] == ("remove", "dock-1", "P1")
    with pytest.raises(NotFound, match="participant"):
        await ask(here, "participant.remove", room="dock-1", participant_id="P2")
    # a shipment-scoped token acts only on its shipment's room, wherever it is
    with pytest.raises(Forbidden):
        await ask(here, "room.close", Conn(shipment_claim="S9"), room="dock-1")
    assert "dock-1" in hosts[1].rooms
    assert await ask(here, "room.close", Conn(shipment_claim="S1"), room="dock-1") == {"type": "ok"}
    assert "dock-1" not in hosts[1].rooms and hosts[1].calls[-1] == ("close", "dock-1", "closed")
    with pytest.raises(NotFound):
        await ask(here, "room.close", room="dock-1")
    with pytest.raises(NotFound, match="not open"):
        await ask(here, "participant.remove", room="dock-1", participant_id="P1")


async def test_an_unknown_operation_from_another_node_is_refused(admin):
    await ask(admin, "room.create", room="dock-1")
    with pytest.raises(BadRequest):
        await admin.answer("room.delete_everything", {"room": "dock-1"})
    assert (await admin.answer("room.close", {"room": 5})) == {"room": False, "done": False}
