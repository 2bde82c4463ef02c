"""dockcast.rooms: rooms open and close, connections join and leave, events in order.

Real media rooms (no peer connection is made: nobody publishes), a real membership,
bus, fan-out, message delivery on the memory log and plugin registry; connections are
stand-ins that record what they are sent.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from dockcast.rooms import MEDIA_EVENTS, Rooms
from sfu import events as media
from sfu.participant import MediaSettings
from signalling.bus import EventBus
from signalling.errors import BadRequest, Conflict, Forbidden, NotFound, Unavailable
from signalling.events import Event, RoomClosed, RoomCreated, RoomCreateFailed
from signalling.fanout import EventFanout
from signalling.hooks import HookRegistry, Plugin
from signalling.membership import LocalMembership
from signalling.messages import MemoryRoomLog
from signalling.messages.delivery import Messaging
from signalling.schema import validate


class Conn:
    def __init__(self, identity: str, room_claim: str | None = None, name: str | None = None) -> None:
        self.identity = identity
        self.claims = SimpleNamespace(room=room_claim, name=name)
        self.session_id = f"session-{identity}-{id(self):x}"
        self.lost = True  # the connection ends without a close frame: a network drop
        self.resume = None
        self.data: dict = {}
        self.events: list[dict] = []
        self.queued_messages = 0
        self.closed = False
        self.membership: LocalMembership | None = None

    @property
    def room(self):
        return self.membership.room_of(self)

    def send_event(self, msg: dict) -> bool:
        self.events.append(msg)
        return True

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


class Claims(Plugin):
    """Refuses room.create for shipment 'taken'; journals what it sees."""

    name = "claims"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def start(self, ctx):
        pass

    async def room_create_check(self, room, fields):
        if fields.get("shipment_id") == "taken":
            raise Conflict("shipment taken is bound to another open room")

    async def join_info(self, room):
        return {"shipment": {"shipment_id": "S1"}} if room == "bound" else {}


class Timers:
    """The empty-room timers, fired by the test: ``fire()`` runs what is due."""

    def __init__(self) -> None:
        self.now = 0.0
        self.due: list[list] = []

    def call_later(self, delay, callback):
        entry = [self.now + delay, callback, False]
        self.due.append(entry)
        return SimpleNamespace(cancel=lambda: entry.__setitem__(2, True))

    @property
    def pending(self) -> list[float]:
        return sorted(when for when, _, cancelled in self.due if not cancelled)

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for entry in sorted(self.due, key=lambda e: e[0]):
            if entry[0] <= self.now and not entry[2]:
                entry[2] = True
                entry[1]()
        for _ in range(20):  # let the close tasks run
            await asyncio.sleep(0)


@pytest.fixture
async def node():
    membership = LocalMembership()
    bus = EventBus(shipment_of=membership.shipment_of)
    bus.subscribe(Event, EventFanout(membership).deliver, inline=True)
    plugin_events: list[Event] = []

    async def plugin(event):
        plugin_events.append(event)

    bus.subscribe(Event, plugin, name="journal")
    hooks = HookRegistry([Claims()])
    messaging = Messaging(MemoryRoomLog(), membership, bus=bus)
    timers = Timers()
    rooms = Rooms(MediaSettings(), membership, bus, lambda: hooks, lambda: messaging,
                  departure_timeout_s=0, scheduler=timers, participant_grace_s=0)
    ns = SimpleNamespace(rooms=rooms, timers=timers, membership=membership, bus=bus, plugin_events=plugin_events,
                         messaging=messaging)

    def conn(identity: str, **kwargs) -> Conn:
        c = Conn(identity, **kwargs)
        c.membership = membership
        return c

    ns.conn = conn
    yield ns
    await rooms.close_all("test_over")
    await messaging.close()


def join_request(room: str, **fields):
    return validate({"type": "join", "id": 1, "room": room, **fields})


def test_every_media_event_has_a_translation():
    assert set(MEDIA_EVENTS) == {media.ParticipantJoined, media.ParticipantLeft, media.TrackPublished,
                                 media.TrackUnpublished, media.ActiveSpeakers, media.TrackPaused,
                                 media.TrackResumed, media.RoomClosed}


async def test_join_opens_the_room_and_members_see_each_other(node):
    alice, bob = node.conn("alice"), node.conn("bob", name="Bob")
    joined = await node.rooms.on_join(alice, join_request("dock-1"))
    assert (joined["room"], joined["participants"], joined["tracks"], joined["last_seq"]) == (
        "dock-1", [], [], 0)
    second = await node.rooms.on_join(bob, join_request("dock-1"))
    assert [p["identity"] for p in second["participants"]] == ["alice"]
    assert alice.types() == ["participant_joined"] and bob.types() == []
    assert alice.events[0]["participant"]["name"] == "Bob"
    assert node.membership.room_of(bob) == "dock-1"
    assert node.rooms.room_info("dock-1")["participants"][1]["participant_id"] == second["participant_id"]


async def test_join_is_refused_without_changing_anything(node):
    alice = node.conn("alice", room_claim="dock-1")
    with pytest.raises(Forbidden):
        await node.rooms.on_join(alice, join_request("dock-2"))
    await node.rooms.on_join(alice, join_request("dock-1"))
    with pytest.raises(BadRequest, match="already in room 'dock-1'"):
        await node.rooms.on_join(alice, join_request("dock-1"))
    node.rooms.auto_create = False
    with pytest.raises(NotFound):
        await node.rooms.on_join(node.conn("bob"), join_request("dock-9"))
    assert node.membership.room_names() == ["dock-1"]


async def test_the_last_leave_closes_the_room_and_watchers_see_it_in_order(node):
    watcher = node.conn("desk")
    node.membership.watch(watcher, ["dock-1"], [])
    alice, bob = node.conn("alice"), node.conn("bob")
    await node.rooms.on_join(alice, join_request("dock-1"))
    await node.rooms.on_join(bob, join_request("dock-1"))
    await node.rooms.leave(alice)
    assert bob.types() == ["participant_left"]
    await node.rooms.disconnected(bob)
    assert node.membership.room("dock-1") is None and "dock-1" not in node.rooms.media
    assert watcher.types() == ["participant_joined", "participant_joined", "participant_left",
                               "participant_left", "room_closed"]
    assert watcher.events[-1] == {"type": "room_closed", "room": "dock-1", "reason": "empty"}
    await node.bus.drain()
    kinds = [type(e).__name__ for e in node.plugin_events]
    assert kinds == ["RoomCreated", "ParticipantJoined", "ParticipantJoined", "ParticipantLeft",
                     "ParticipantLeft", "RoomClosed"]


async def test_closing_tells_members_first_and_takes_them_out(node):
    watcher = node.conn("desk")
    alice, bob = node.conn("alice"), node.conn("bob")
    await node.rooms.on_join(alice, join_request("dock-1"))
    await node.rooms.on_join(bob, join_request("dock-1"))
    node.membership.watch(watcher, ["dock-1"], [])
    async with node.rooms.lifecycle:
        await node.rooms.close_room("dock-1", "closed")
    for member in (alice, bob):
        assert member.events[-1] == {"type": "room_closed", "room": "dock-1", "reason": "closed"}
        assert "participant_left" not in member.types()  # they were out before peers closed
        assert node.membership.room_of(member) is None
    assert watcher.types() == ["participant_left", "participant_left", "room_closed"]
    with pytest.raises(NotFound):
        await node.rooms.close_room("dock-1", "closed")


async def test_room_create_waits_for_its_first_participant_then_closes_when_left(node):
    info = await node.rooms.create_room("dock-7", {"room": "dock-7", "shipment_id": "S7",
                                                   "record": True, "metadata": {"bay": 3}})
    assert (info["shipment_id"], info["record"], info["metadata"], info["participants"]) == (
        "S7", True, {"bay": 3}, [])
    alice = node.conn("alice")
    await node.rooms.on_join(alice, join_request("dock-7"))
    await node.rooms.leave(alice)
    assert node.rooms.room_info("dock-7") is None
    await node.bus.drain()
    assert [e.shipment_id for e in node.plugin_events] == ["S7"] * len(node.plugin_events)


async def test_a_refused_create_releases_claims_for_plugins_only(node):
    watcher = node.conn("desk")
    node.membership.watch(watcher, ["dock-8"], [])
    with pytest.raises(Conflict):
        await node.rooms.create_room("dock-8", {"shipment_id": "taken"})
    assert node.rooms.room_info("dock-8") is None and watcher.events == []
    assert [type(e) for e in node.plugin_events] == [RoomCreateFailed]
    assert isinstance(node.plugin_events[0], RoomClosed)


async def test_remove_participant_tells_it_and_drops_its_cursor(node):
    alice, bob = node.conn("alice"), node.conn("bob")
    joined = await node.rooms.on_join(alice, join_request("dock-1"))
    await node.rooms.on_join(bob, join_request("dock-1"))
    await node.rooms.remove_participant("dock-1", joined["participant_id"])
    assert alice.events[-1] == {"type": "room_closed", "room": "dock-1", "reason": "removed"}
    assert bob.types()[-1] == "participant_left"
    assert await node.messaging.log.cursor("dock-1", "alice") is None
    assert await node.messaging.log.cursor("dock-1", "bob") == 0


async def test_join_carries_the_plugins_extras(node):
    joined = await node.rooms.on_join(node.conn("alice"), join_request("bound"))
    assert joined["shipment"] == {"shipment_id": "S1"} and joined["type"] == "joined"
    await node.bus.drain()
    assert isinstance(node.plugin_events[0], RoomCreated)


async def test_an_empty_created_room_closes_after_its_empty_timeout(node):
    await node.rooms.create_room("dock-5", {"room": "dock-5"})
    await node.rooms.create_room("dock-6", {"room": "dock-6", "empty_timeout": 30})
    assert node.timers.pending == [30.0, 300.0]
    await node.timers.advance(29)
    assert node.membership.room_names() == ["dock-5", "dock-6"]
    await node.timers.advance(1)
    assert node.membership.room_names() == ["dock-5"]
    await node.timers.advance(300)
    assert node.membership.room_names() == [] and node.rooms.closing == []


async def test_a_worker_who_drops_comes_back_to_the_same_room(node):
    node.rooms.departure_timeout_s = 20
    await node.rooms.create_room("dock-7", {"room": "dock-7", "shipment_id": "S7"})
    worker = node.conn("worker")
    await node.rooms.on_join(worker, join_request("dock-7"))
    assert node.timers.pending == []  # the first join stops the empty timeout
    await node.rooms.disconnected(worker)  # the phone lost its network
    assert node.rooms.closing == ["dock-7"] and node.timers.pending == [20.0]
    await node.timers.advance(10)
    again = node.conn("worker")
    joined = await node.rooms.on_join(again, join_request("dock-7"))
    assert joined["room"] == "dock-7" and node.rooms.closing == []
    assert node.rooms.room_info("dock-7")["shipment_id"] == "S7"
    await node.timers.advance(60)
    assert node.membership.room("dock-7") is not None  # the cancelled timer did nothing
    await node.rooms.leave(again)
    await node.timers.advance(19)
    assert node.membership.room("dock-7") is not None
    await node.timers.advance(1)
    assert node.membership.room("dock-7") is None
    await node.bus.drain()
    closed = [e for e in node.plugin_events if isinstance(e, RoomClosed)]
    assert [(e.reason, e.shipment_id) for e in closed] == [("empty", "S7")]


async def test_a_removed_last_participant_leaves_the_room_waiting_too(node):
    node.rooms.departure_timeout_s = 20
    joined = await node.rooms.on_join(node.conn("alice"), join_request("dock-1"))
    await node.rooms.remove_participant("dock-1", joined["participant_id"])
    assert node.rooms.closing == ["dock-1"]
    await node.timers.advance(20)
    assert node.membership.room("dock-1") is None


async def test_closing_all_rooms_cancels_the_waits(node):
    node.rooms.departure_timeout_s = 20
    await node.rooms.create_room("dock-5", {"room": "dock-5"})
    await node.rooms.close_all("node_stopping")
    assert node.rooms.closing == [] and node.timers.pending == []



# -- caps ----------------------------------------------------------------------------


class Gate(Plugin):
    """Holds every join_info and room_create_check until ``open`` is set."""

    name = "gate"

    def __init__(self) -> None:
        self.open = asyncio.Event()

    async def start(self, ctx):
        pass

    async def join_info(self, room):
        await self.open.wait()
        return {}

    async def room_create_check(self, room, fields):
        await self.open.wait()


async def test_max_rooms_refuses_one_room_more_and_changes_nothing(node):
    node.rooms.max_rooms = 2
    await node.rooms.on_join(node.conn("alice"), join_request("dock-1"))
    await node.rooms.create_room("dock-2", {"room": "dock-2"})
    await node.bus.drain()
    seen = len(node.plugin_events)
    bob = node.conn("bob")
    with pytest.raises(Unavailable, match="max_rooms"):
        await node.rooms.on_join(bob, join_request("dock-3"))
    with pytest.raises(Unavailable):
        await node.rooms.create_room("dock-4", {"room": "dock-4", "shipment_id": "S4"})
    assert node.membership.room_names() == ["dock-1", "dock-2"] and sorted(node.rooms.media) == [
        "dock-1", "dock-2"]
    assert node.membership.room_of(bob) is None
    assert await node.messaging.log.cursor("dock-3", "bob") is None  # no cursor made
    await node.bus.drain()
    assert len(node.plugin_events) == seen  # no RoomCreated, no claim to undo
    assert node.rooms.refusals.counts["rooms"] == 2
    # rooms that are open take more participants; a closed one frees its place
    await node.rooms.on_join(bob, join_request("dock-2"))
    async with node.rooms.lifecycle:
        await node.rooms.close_room("dock-1", "closed")
    await node.rooms.on_join(node.conn("carol"), join_request("dock-3"))
    assert node.rooms.refusals.counts["rooms"] == 2


async def test_a_join_is_refused_while_the_event_loop_runs_late_and_changes_nothing(node):
    """Admission by loop lag: a node that is behind says unavailable (try later or
    another node) instead of taking one more participant; once it has caught up, the
    same join goes through."""
    import time

    from dockcast.loop_lag import LoopLag

    lag = LoopLag(interval=0.02, window=0.3)
    lag.start()
    node.rooms.loop_lag, node.rooms.max_loop_lag_ms = lag, 100.0
    try:
        await node.rooms.on_join(node.conn("alice"), join_request("dock-1"))
        bob = node.conn("bob")
        time.sleep(0.25)  # the loop held up: its timer is 0.2 s overdue
        with pytest.raises(Unavailable, match="overloaded.*max_loop_lag_ms"):
            await node.rooms.on_join(bob, join_request("dock-1"))
        assert node.membership.room_of(bob) is None
        assert len(node.rooms.media["dock-1"].participants) == 1
        assert node.rooms.refusals.counts["loop_lag"] == 1
        await asyncio.sleep(0.5)  # caught up: the window holds no late tick any more
        await node.rooms.on_join(bob, join_request("dock-1"))
        assert node.membership.room_of(bob) == "dock-1"
    finally:
        lag.stop()


async def test_joins_on_their_way_hold_their_rooms_place(node):
    gate = Gate()
    hooks = HookRegistry([gate])
    node.rooms._hooks = lambda: hooks
    node.rooms.max_rooms = 1
    first = asyncio.ensure_future(node.rooms.on_join(node.conn("alice"), join_request("dock-1")))
    await asyncio.sleep(0)  # alice waits in join_info, her room not open yet
    bob = node.conn("bob")
    with pytest.raises(Unavailable):
        await node.rooms.on_join(bob, join_request("dock-2"))
    second = asyncio.ensure_future(node.rooms.on_join(node.conn("carol"), join_request("dock-1")))
    await asyncio.sleep(0)
    create = asyncio.ensure_future(node.rooms.create_room("dock-3", {"room": "dock-3"}))
    with pytest.raises(Unavailable):
        await create
    gate.open.set()
    await first
    await second  # the room alice opens is the one carol joins
    assert sorted(node.rooms.media) == ["dock-1"] and len(node.rooms.media["dock-1"].participants) == 2
    assert await node.messaging.log.cursor("dock-2", "bob") is None
    assert node.rooms.refusals.counts["rooms"] == 2 and node.rooms._joining == {}


async def test_a_create_is_refused_when_joins_took_the_last_room_while_plugins_checked(node):
    gate = Gate()
    hooks = HookRegistry([gate])
    node.rooms._hooks = lambda: hooks
    node.rooms.max_rooms = 1
    create = asyncio.ensure_future(node.rooms.create_room("dock-3", {"room": "dock-3"}))
    await asyncio.sleep(0)  # the plugins check
    node.rooms._hooks = lambda: HookRegistry([])  # joins do not wait
    await node.rooms.on_join(node.conn("alice"), join_request("dock-1"))
    gate.open.set()
    with pytest.raises(Unavailable):
        await create
    assert sorted(node.rooms.media) == ["dock-1"]
    await node.bus.drain()
    assert [type(e) for e in node.plugin_events if isinstance(e, RoomClosed)] == [RoomCreateFailed]


async def test_max_participants_per_room_refuses_one_more_and_changes_nothing(node):
    node.rooms.max_participants_per_room = 2
    alice, bob, carol = node.conn("alice"), node.conn("bob"), node.conn("carol")
    await node.rooms.on_join(alice, join_request("dock-1"))
    await node.rooms.on_join(bob, join_request("dock-1"))
    with pytest.raises(Forbidden, match="max_participants_per_room"):
        await node.rooms.on_join(carol, join_request("dock-1"))
    assert len(node.rooms.media["dock-1"].participants) == 2 and node.membership.room_of(carol) is None
    assert await node.messaging.log.cursor("dock-1", "carol") is None
    assert "participant_joined" not in alice.types()[1:]  # alice saw bob only
    assert node.rooms.refusals.counts["participants_per_room"] == 1
    await node.rooms.on_join(node.conn("dave"), join_request("dock-2"))  # other rooms: their own cap
    await node.rooms.leave(bob)
    await node.rooms.on_join(carol, join_request("dock-1"))
    assert node.rooms.refusals.counts == {"rooms": 0, "participants_per_room": 1,
                                          "tracks_per_participant": 0,
                                          "subscriptions_per_participant": 0,
                                          "mlines_per_offer": 0, "loop_lag": 0}


async def test_joins_on_their_way_hold_their_place_in_the_room(node):
    gate = Gate()
    hooks = HookRegistry([gate])
    node.rooms._hooks = lambda: hooks
    node.rooms.max_participants_per_room = 1
    first = asyncio.ensure_future(node.rooms.on_join(node.conn("alice"), join_request("dock-1")))
    await asyncio.sleep(0)
    with pytest.raises(Forbidden):
        await node.rooms.on_join(node.conn("bob"), join_request("dock-1"))
    gate.open.set()
    await first
    assert await node.messaging.log.cursor("dock-1", "bob") is None
    assert [p.identity for p in node.rooms.media["dock-1"].participants.values()] == ["alice"]


async def test_a_dropped_connection_keeps_its_participant_and_a_resume_takes_it_back(node):
    node.rooms.participant_grace_s = 15
    node.rooms.departure_timeout_s = 20
    seller = node.conn("seller")
    await node.rooms.on_join(seller, join_request("dock-7"))
    worker = node.conn("worker")
    first = await node.rooms.on_join(worker, join_request("dock-7"))
    await node.rooms.disconnected(worker)  # the websocket dropped; the peer connections did not
    room = node.rooms.media["dock-7"]
    assert first["participant_id"] in room.participants
    assert node.timers.pending == [15.0] and node.rooms.closing == []
    assert "participant_left" not in seller.types()

    stranger = node.conn("intruder")  # the session id alone is not enough
    stranger.resume = {"session_id": worker.session_id, "last_seq": 0}
    other = await node.rooms.on_join(stranger, join_request("dock-7"))
    assert other["participant_id"] != first["participant_id"]

    again = node.conn("worker")
    again.resume = {"session_id": worker.session_id, "last_seq": 0}
    joined = await node.rooms.on_join(again, join_request("dock-7"))
    assert joined["participant_id"] == first["participant_id"]
    await node.timers.advance(60)  # the grace timer was cancelled
    assert first["participant_id"] in room.participants
    assert "participant_left" not in seller.types()


async def test_a_participant_whose_connection_does_not_come_back_leaves_after_the_grace(node):
    node.rooms.participant_grace_s = 15
    node.rooms.departure_timeout_s = 20
    seller = node.conn("seller")
    await node.rooms.on_join(seller, join_request("dock-7"))
    worker = node.conn("worker")
    first = await node.rooms.on_join(worker, join_request("dock-7"))
    await node.rooms.disconnected(worker)
    await node.timers.advance(14)
    assert "participant_left" not in seller.types()
    await node.timers.advance(1)
    await asyncio.sleep(0)
    assert first["participant_id"] not in node.rooms.media["dock-7"].participants
    assert "participant_left" in seller.types()
    again = node.conn("worker")  # too late to resume: a new participant
    again.resume = {"session_id": worker.session_id, "last_seq": 0}
    joined = await node.rooms.on_join(again, join_request("dock-7"))
    assert joined["participant_id"] != first["participant_id"]


async def test_a_connection_the_client_closed_leaves_at_once(node):
    node.rooms.participant_grace_s = 15
    seller = node.conn("seller")
    await node.rooms.on_join(seller, join_request("dock-7"))
    worker = node.conn("worker")
    first = await node.rooms.on_join(worker, join_request("dock-7"))
    worker.lost = False  # it sent a close frame: it chose to go
    await node.rooms.disconnected(worker)
    assert first["participant_id"] not in node.rooms.media["dock-7"].participants
    assert "participant_left" in seller.types()
