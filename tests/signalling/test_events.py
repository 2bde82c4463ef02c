"""signalling.events: typed events, their wire forms, audiences and lanes."""

from __future__ import annotations

import dataclasses

import pytest

from signalling.events import (
    Alert,
    Audience,
    MessageStored,
    ParticipantJoined,
    ParticipantLeft,
    RecordingStarted,
    RoomClosed,
    RoomCreated,
    RoomCreateFailed,
    ShipmentStatus,
    TrackPublished,
    TrackUnpublished,
    event_from_wire,
)
from signalling.messages import StoredMessage


def test_wire_forms_are_the_protocol_events():
    joined = ParticipantJoined(room="dock", participant={"participant_id": "PA_1", "identity": "cam"})
    assert joined.to_wire() == {"type": "participant_joined",
                                "participant": {"participant_id": "PA_1", "identity": "cam"}}
    assert joined.origin == "PA_1"
    assert ParticipantLeft(room="dock", participant_id="PA_1").to_wire() == {
        "type": "participant_left", "participant_id": "PA_1"}
    assert ParticipantLeft(room="dock", participant_id="PA_1", identity="cam").to_wire() == {
        "type": "participant_left", "participant_id": "PA_1", "identity": "cam"}
    track = TrackPublished(room="dock", track={"track_id": "TR_1", "participant_id": "PA_1"})
    assert track.to_wire()["track"]["track_id"] == "TR_1" and track.origin == "PA_1"
    assert TrackUnpublished(room="dock", track_id="TR_1", participant_id="PA_1").to_wire() == {
        "type": "track_unpublished", "track_id": "TR_1"}
    assert RoomClosed(room="dock", reason="empty").to_wire() == {
        "type": "room_closed", "room": "dock", "reason": "empty"}
    assert ShipmentStatus(shipment_id="S1", status="delivered", detail="ok", ts=1.5).to_wire() == {
        "type": "shipment_status", "shipment_id": "S1", "status": "delivered", "detail": "ok", "ts": 1500}
    assert Alert(shipment_id="S1", room="dock", severity="warning", text="hold", ts=2.0).to_wire() == {
        "type": "alert", "shipment_id": "S1", "room": "dock", "severity": "warning", "text": "hold",
        "ts": 2000}
    assert "room" not in Alert(severity="critical", text="x").to_wire()
    message = StoredMessage("dock", 3, "m3", "alice", "chat", {"a": 1}, 4.0)
    assert MessageStored(room="dock", message=message).to_wire() == message.to_event()


def test_audiences():
    assert RoomCreated.audience is Audience.NOBODY and RoomCreateFailed.audience is Audience.NOBODY
    assert RoomClosed.audience is Audience.WATCHERS  # members are told as they are taken out
    assert MessageStored.audience is Audience.WATCHERS  # members get it from the delivery
    assert ParticipantJoined.audience is Audience.ALL and ShipmentStatus.audience is Audience.ALL
    assert issubclass(RoomCreateFailed, RoomClosed)
    assert RoomCreateFailed(room="dock").reason == "create_failed"


def test_events_are_frozen():
    event = RoomClosed(room="dock", reason="closed")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.room = "other"  # type: ignore[misc]


def test_wire_events_parse_back():
    for event in (RoomClosed(room="dock", reason="closed"),
                  ShipmentStatus(shipment_id="S1", status="delivered", detail=None, ts=1.0, room="dock"),
                  RecordingStarted(room="dock", recording_id="rec-1"),
                  Alert(shipment_id="S1", room="dock", severity="warning", text="t", ts=3.0)):
        assert event_from_wire(event.to_wire(), room=event.room, shipment_id=event.shipment_id) == event
    with pytest.raises(ValueError, match="not a room or shipment event"):
        event_from_wire({"type": "hello"})
    with pytest.raises(ValueError, match="room_closed"):
        event_from_wire({"type": "room_closed", "room": "x"})


async def test_lanes_by_room_then_shipment():
    assert RoomClosed(room="dock", reason="x").lane == "room:dock"
    assert ShipmentStatus(shipment_id="S1", status="x").lane == "shipment:S1"
    assert ShipmentStatus(shipment_id="S1", status="x", room="dock").lane == "room:dock"
    assert Alert(severity="info", text="t").lane == ""
