"""signalling.membership: rooms, members and watchers of a node, in one place."""

from __future__ import annotations

import pytest

from signalling.membership import LocalMembership, MembershipError, RoomRecord


class Conn:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<Conn {self.name}>"


def test_members_join_and_leave_in_order():
    m = LocalMembership()
    m.open_room(RoomRecord("dock-1", shipment_id="S1"))
    a, b = Conn("a"), Conn("b")
    m.join(a, "dock-1", "PA_a", "alice")
    m.join(b, "dock-1", "PA_b", "bob")
    assert [x.participant_id for x in m.members("dock-1")] == ["PA_a", "PA_b"]
    assert m.room_of(a) == "dock-1" and m.shipment_of("dock-1") == "S1"
    assert m.connections("dock-1", exclude="PA_a") == [b]
    assert m.has_identity("dock-1", "bob") and not m.has_identity("dock-1", "carol")
    left = m.leave(a)
    assert left is not None and left.identity == "alice"
    assert m.room_of(a) is None and m.leave(a) is None
    assert [x.conn for x in m.members("dock-1")] == [b]


def test_a_connection_is_in_one_open_room_at_most():
    m = LocalMembership()
    m.open_room(RoomRecord("dock-1"))
    m.open_room(RoomRecord("dock-2"))
    a = Conn("a")
    with pytest.raises(MembershipError):
        m.join(a, "dock-3", "PA_a", "alice")  # not open
    m.join(a, "dock-1", "PA_a", "alice")
    with pytest.raises(MembershipError):
        m.join(a, "dock-2", "PA_a2", "alice")
    assert m.room_of(a) == "dock-1"


def test_opening_an_open_room_keeps_its_record():
    m = LocalMembership()
    first = m.open_room(RoomRecord("dock-1", shipment_id="S1", hold_open=True))
    again = m.open_room(RoomRecord("dock-1"))
    assert again is first and m.room_names() == ["dock-1"]


def test_closing_a_room_returns_and_forgets_its_members():
    m = LocalMembership()
    m.open_room(RoomRecord("dock-1", record=True))
    a, b = Conn("a"), Conn("b")
    m.join(a, "dock-1", "PA_a", "alice")
    m.join(b, "dock-1", "PA_b", "bob")
    record, members = m.close_room("dock-1")
    assert record is not None and record.record
    assert {x.conn for x in members} == {a, b}
    assert m.room("dock-1") is None and m.room_of(a) is None and m.members("dock-1") == []
    assert m.close_room("dock-1") == (None, [])


def test_watchers_of_a_room_or_its_shipment_are_found_once():
    m = LocalMembership()
    both, by_room, by_shipment, other = Conn("both"), Conn("room"), Conn("ship"), Conn("other")
    m.watch(both, ["dock-1"], ["S1"])
    m.watch(by_room, ["dock-1"], [])
    m.watch(by_shipment, [], ["S1"])
    m.watch(other, ["dock-2"], ["S2"])
    assert m.watchers("dock-1", "S1") == {both, by_room, by_shipment}
    assert m.watchers(None, "S1") == {both, by_shipment}
    assert m.watcher_count() == 4


def test_watchers_end_with_their_connection():
    m = LocalMembership()
    conn = Conn("w")
    m.watch(conn, ["dock-1"], ["S1"])
    m.watch(conn, ["dock-1", "dock-2"], [])
    assert m.watched_count(conn) == 3
    m.unwatch(conn)
    assert m.watchers("dock-1", "S1") == set() and m.watched_count(conn) == 0
    assert m.watcher_count() == 0
    m.unwatch(conn)  # twice is fine
