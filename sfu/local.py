"""Tracks published from inside the node: a recording played back into a room.

A `LocalPublisher` is a participant of a room with no peer connection; each
`LocalTrack` it publishes is an ordinary `Producer` (subscribers consume it like any
other) that is fed RTP packets by the node itself with `LocalTrack.send`. RTCP the
producer would send its publisher (NACK, PLI, receiver reports) has nowhere to go and
is dropped: a played-back track cannot make a keyframe on demand, so subscribers start
at the next recorded keyframe (or the cached one, when it is fresh).
"""

from __future__ import annotations

import random
from typing import Any

from .errors import MalformedPacket
from .participant import Participant
from .producer import CodecInfo, Producer
from .room import Room
from .rtp import parse_header

__all__ = ["LocalPublisher", "LocalTrack", "NullRtcpSink"]


class NullRtcpSink:
    """Where RTCP toward a source inside the node goes: nowhere."""

    def send_rtcp(self, packet: bytes) -> bool:
        return False


class LocalTrack:
    """One track of a `LocalPublisher`; `send` feeds it."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.malformed = 0

    @property
    def id(self) -> str:
        return self.producer.id

    @property
    def closed(self) -> bool:
        return self.producer.closed

    def send(self, data: bytes) -> bool:
        """Forward one RTP packet of this track (its own SSRC, seq and timestamps: an
        SSRC change restarts the consumers at the next keyframe). ``False`` when it is
        not RTP or the track is closed."""
        if self.producer.closed:
            return False
        try:
            pt, _marker, seq, ts, ssrc, off, end, *_ = parse_header(data)
        except (ValueError, MalformedPacket):
            self.malformed += 1
            return False
        self.producer.receive_rtp(data, pt, seq, ts, ssrc, off, end)
        return True

    def close(self) -> None:
        self.producer.close()


class LocalPublisher:
    """A participant of ``room`` (identity ``identity``) whose tracks the node feeds."""

    def __init__(self, room: Room, identity: str, name: str | None = None,
                 metadata: Any = None) -> None:
        self.room = room
        self.participant: Participant = room.join(identity, name, metadata)
        self._sink = NullRtcpSink()

    def publish(self, kind: str, codec: CodecInfo, *, source: str = "playback",
                name: str | None = None, ext_ids: dict[str, int] | None = None) -> LocalTrack:
        """A new track in the room (``track_published`` goes out). ``codec`` must be the
        payload type the packets carry; ``ext_ids`` their header extensions' ids."""
        producer = Producer(
            participant_id=self.participant.id, kind=kind, mid=str(len(self.participant.producers)),
            codec=codec, ext_ids=ext_ids or {}, transport=self._sink,
            rtcp_ssrc=random.getrandbits(32), source=source, name=name,
            clock=self.participant.clock, scheduler=self.participant.scheduler)
        self.room.publish_local(self.participant, producer)
        return LocalTrack(producer)

    async def close(self) -> None:
        """Unpublish every track and leave the room."""
        await self.room.leave(self.participant.id)
