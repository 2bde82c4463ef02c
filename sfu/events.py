"""What a room reports: small frozen dataclasses, one per kind of event.

``Room.on_event`` is called with one event object; each names its room first. The
node turns them into protocol events and plugin hooks (``match``/``isinstance``,
never strings in an if-chain).

    RoomEvent
    ├── ParticipantJoined(room, participant)
    ├── ParticipantLeft(room, participant)     after its tracks and peers closed
    ├── TrackPublished(room, producer)
    ├── TrackUnpublished(room, producer)       unpublished, or its peer connection failed
    ├── ActiveSpeakers(room, speakers)         who speaks, loudest first (rate-limited)
    ├── TrackPaused(room, participant, producer, reason)   one subscriber's, for bandwidth
    ├── TrackResumed(room, participant, producer)          ... and back by itself
    └── RoomClosed(room, reason)               the last event of a room
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .participant import Participant
    from .producer import Producer

__all__ = ["RoomEvent", "ParticipantJoined", "ParticipantLeft", "TrackPublished",
           "TrackUnpublished", "ActiveSpeakers", "TrackPaused", "TrackResumed", "RoomClosed"]


@dataclass(frozen=True)
class RoomEvent:
    """Base of every room event: ``room`` is the room's name."""

    room: str


@dataclass(frozen=True)
class ParticipantJoined(RoomEvent):
    participant: Participant


@dataclass(frozen=True)
class ParticipantLeft(RoomEvent):
    participant: Participant


@dataclass(frozen=True)
class TrackPublished(RoomEvent):
    producer: Producer


@dataclass(frozen=True)
class TrackUnpublished(RoomEvent):
    producer: Producer


@dataclass(frozen=True)
class ActiveSpeakers(RoomEvent):
    """The room's speakers changed (or, while someone speaks, a periodic refresh):
    ``(participant_id, level)`` pairs, the first speaker first, then by level; levels
    are linear 0..1 (RFC 6464 amplitude, smoothed). Empty: nobody speaks any more.
    See `sfu.audio_level.SpeakerDetector` for when it is sent."""

    speakers: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class TrackPaused(RoomEvent):
    """``participant`` (a subscriber) stopped receiving ``producer``'s video: even its
    lowest layer does not fit the subscriber's bandwidth estimate (``reason``
    ``"bandwidth"``). Its audio goes on. For that subscriber only."""

    participant: Participant
    producer: Producer
    reason: str


@dataclass(frozen=True)
class TrackResumed(RoomEvent):
    """The video ``participant`` had paused for bandwidth flows again, by itself."""

    participant: Participant
    producer: Producer


@dataclass(frozen=True)
class RoomClosed(RoomEvent):
    reason: str
