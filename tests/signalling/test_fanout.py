"""signalling.fanout: each event to the members and watchers that hear it."""

from __future__ import annotations

from signalling.events import (
    Event,
    MessageStored,
    ParticipantJoined,
    RoomClosed,
    RoomCreated,
    ShipmentStatus,
)
from signalling.bus import EventBus
from signalling.fanout import EventFanout
from signalling.membership import LocalMembership, RoomRecord
from signalling.messages import StoredMessage


class Conn:
    def __init__(self, name: str) -> None:
        self.name = name
        self.events: list[dict] = []

    def send_event(self, msg: dict) -> bool:
        self.events.append(msg)
        return True


def setup():
    membership = LocalMembership()
    membership.open_room(RoomRecord("dock-1", shipment_id="S1"))
    alice, bob, room_watcher, ship_watcher, other = (Conn(n) for n in ("a", "b", "rw", "sw", "o"))
    membership.join(alice, "dock-1", "PA_a", "alice")
    membership.join(bob, "dock-1", "PA_b", "bob")
    membership.watch(room_watcher, ["dock-1"], [])
    membership.watch(ship_watcher, [], ["S1"])
    membership.watch(other, ["dock-2"], ["S2"])
    bus = EventBus(shipment_of=membership.shipment_of)
    fanout = EventFanout(membership)
    bus.subscribe(Event, fanout.deliver, inline=True)
    return bus, alice, bob, room_watcher, ship_watcher, other


async def test_members_but_the_origin_and_the_watchers_of_room_and_shipment_hear_it():
    bus, alice, bob, rw, sw, other = setup()
    bus.publish(ParticipantJoined(room="dock-1", participant={"participant_id": "PA_a"}))
    assert alice.events == []  # its own join
    assert bob.events == [{"type": "participant_joined", "participant": {"participant_id": "PA_a"}}]
    # watchers watch many rooms: they are told which
    assert rw.events == sw.events == [{**bob.events[0], "room": "dock-1"}]
    assert other.events == []


async def test_audiences_decide_who_hears_what():
    bus, alice, bob, rw, sw, other = setup()
    bus.publish(RoomCreated(room="dock-1"))
    assert (alice.events, rw.events) == ([], [])
    bus.publish(RoomClosed(room="dock-1", reason="closed"))
    assert alice.events == [] and rw.events == [{"type": "room_closed", "room": "dock-1", "reason": "closed"}]
    bus.publish(MessageStored(room="dock-1", message=StoredMessage("dock-1", 1, "m", "alice", "t", 1, 0.0)))
    assert alice.events == [] and sw.events[-1]["type"] == "message"


async def test_a_shipment_event_without_a_room_reaches_the_shipments_watchers_only():
    bus, alice, bob, rw, sw, other = setup()
    bus.publish(ShipmentStatus(shipment_id="S1", status="delivered", ts=1.0))
    assert sw.events == [{"type": "shipment_status", "shipment_id": "S1", "status": "delivered",
                          "detail": None, "ts": 1000}]
    assert alice.events == bob.events == rw.events == other.events == []
    bus.publish(ShipmentStatus(shipment_id="S1", status="in_transit", room="dock-1"))
    assert [e["status"] for e in alice.events] == ["in_transit"]
    assert rw.events[-1]["room"] == "dock-1" and sw.events[-1]["status"] == "in_transit"
