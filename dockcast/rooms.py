"""Room lifecycle on a node: rooms open and close, connections join and leave.

`Rooms` owns the media rooms (`sfu.Room`) of the node and keeps the `Membership`, the
message delivery and the event bus in step with them:

- a room opens with a `RoomRecord` in the membership (by ``room.create``, or by a first
  ``join``) and a `RoomCreated` event;
- an empty room is not closed at once: one made by ``room.create`` waits
  ``empty_timeout_s`` (300 s; ``room.create {empty_timeout}`` per room) for its first
  participant, and one whose last participant left, dropped or was removed waits
  ``departure_timeout_s`` (20 s), so that a worker whose phone lost its network for a
  few seconds comes back to the same room, shipment binding and recording. A join
  within the wait keeps the room;
- ``join``: the member's message cursor and the plugins' ``joined`` extras are read
  first; then, with no ``await``, the participant joins the media room, the connection
  becomes a member and message delivery starts for it;
- node-wide caps: a ``join`` or ``room.create`` that would open one room more than
  ``max_rooms`` is ``unavailable``, a ``join`` into a room with
  ``max_participants_per_room`` participants is ``forbidden`` (0: no limit); a refused
  request opens, joins and claims nothing, and is counted in `CapRefusals`;
- what the media room reports (`sfu.events`) becomes the typed events of
  `signalling.events` through one table, `MEDIA_EVENTS`; the bus sends them to the
  members, the watchers and the plugins;
- a room closes (``room.close``, empty, node stopping): its members get ``room_closed``
  and are out at once, then the media room closes (watchers see each
  ``participant_left``), then `RoomClosed` reaches watchers and plugins, and the close
  waits for the plugins (a shipment must be free before it can get a new room).

It is the `RoomHost` of `signalling.admin.Admin`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sfu import events as media
from sfu.clock import ASYNCIO_SCHEDULER, Cancellable, Scheduler
from sfu.participant import MediaSettings, Participant
from sfu.room import Room
from signalling import events
from signalling.errors import BadRequest, Conflict, Forbidden, NotFound, Unavailable
from signalling.bus import EventBus
from signalling.hooks import HookRegistry
from signalling.membership import Membership, RoomRecord
from signalling.messages.delivery import Messaging
from signalling.schema import Request
from signalling.server import Connection
from signalling.session import require_room

from .loop_lag import LoopLag
from .metrics import CapRefusals, Retired

__all__ = ["Rooms", "MEDIA_EVENTS"]

logger = logging.getLogger("dockcast.rooms")

#: What the media plane reports, as the events of the wire and the plugins.
MEDIA_EVENTS: Mapping[type, Callable[[Any], events.Event | None]] = {
    media.ParticipantJoined: lambda e: events.ParticipantJoined(
        room=e.room, participant=e.participant.describe()),
    media.ParticipantLeft: lambda e: events.ParticipantLeft(
        room=e.room, participant_id=e.participant.id, identity=e.participant.identity),
    media.TrackPublished: lambda e: events.TrackPublished(room=e.room, track=e.producer.describe()),
    media.TrackUnpublished: lambda e: events.TrackUnpublished(
        room=e.room, track_id=e.producer.id, participant_id=e.producer.participant_id),
    media.ActiveSpeakers: lambda e: events.ActiveSpeakers(room=e.room, speakers=e.speakers),
    # One subscriber's: dockcast.media sends the wire form to it, the bus to plugins.
    media.TrackPaused: lambda e: events.TrackPaused(
        room=e.room, participant_id=e.participant.id, track_id=e.producer.id, reason=e.reason),
    media.TrackResumed: lambda e: events.TrackResumed(
        room=e.room, participant_id=e.participant.id, track_id=e.producer.id),
    # The room's close is told by Rooms.close itself, once the media room closed.
    media.RoomClosed: lambda e: None,
}


class Rooms:
    """The node's rooms and who is in them; see the module docstring."""

    def __init__(self, settings: MediaSettings, membership: Membership, bus: EventBus,
                 hooks: Callable[[], HookRegistry], messaging: Callable[[], Messaging],
                 *, auto_create: bool = True, retired: Retired | None = None,
                 empty_timeout_s: float = 300.0, departure_timeout_s: float = 20.0,
                 scheduler: Scheduler | None = None, max_rooms: int = 0,
                 max_participants_per_room: int = 0, refusals: CapRefusals | None = None,
                 participant_grace_s: float = 15.0, loop_lag: LoopLag | None = None,
                 max_loop_lag_ms: float = 0.0) -> None:
        """``scheduler`` runs the empty-room and grace timers (its ``call_later``);
        ``max_rooms`` and ``max_participants_per_room`` are caps (0: none), counted in
        ``refusals``; ``participant_grace_s`` is how long a member whose connection
        dropped keeps its participant (0: it leaves at once); a join is refused while
        ``loop_lag`` reads over ``max_loop_lag_ms`` (0: never)."""
        self.settings = settings
        self.max_rooms = max_rooms
        self.max_participants_per_room = max_participants_per_room
        self.refusals = refusals if refusals is not None else CapRefusals()
        self.loop_lag = loop_lag
        self.max_loop_lag_ms = max_loop_lag_ms
        self._joining: dict[str, int] = {}  # joins past the caps, not in their room yet
        self.empty_timeout_s = empty_timeout_s
        self.departure_timeout_s = departure_timeout_s
        self.scheduler = scheduler or ASYNCIO_SCHEDULER
        self._closing: dict[str, Cancellable] = {}  # empty rooms waiting to close
        self.participant_grace_s = participant_grace_s
        self._detached: dict[str, _Detached] = {}  # by the dropped connection's session id
        self._closers: set[asyncio.Task] = set()  # their close tasks, once due
        self.membership = membership
        self.bus = bus
        self._hooks = hooks
        self._messaging = messaging
        self.auto_create = auto_create
        self.retired = retired if retired is not None else Retired()
        self.media: dict[str, Room] = {}
        self.lifecycle = asyncio.Lock()  # RoomHost: held while a room opens or closes
        # the tracks of a room published on other nodes (a cluster sets it)
        self.remote_tracks: Callable[[str], Awaitable[list[dict[str, Any]]]] | None = None

    @property
    def hooks(self) -> HookRegistry:
        return self._hooks()

    @property
    def messaging(self) -> Messaging:
        return self._messaging()

    # -- reading ---------------------------------------------------------------------

    def room_names(self) -> list[str]:
        return self.membership.room_names()

    def room_info(self, room: str) -> dict[str, Any] | None:
        """The ``room`` reply fields of an open room; ``None`` when it is not open."""
        record, media_room = self.membership.room(room), self.media.get(room)
        if record is None or media_room is None:
            return None
        return {"room": room, "shipment_id": record.shipment_id, "created_at": record.created_at,
                "record": record.record, "metadata": record.metadata,
                "participants": [p.describe() for p in media_room.participants.values()]}

    def room(self, name: str) -> Room:
        room = self.media.get(name)
        if room is None:
            raise NotFound(f"room {name!r} does not exist")
        return room

    def participant(self, conn: Connection) -> tuple[Room, Participant]:
        """The media room and participant of a joined connection."""
        member = self.membership.member(conn)
        if member is None:
            raise BadRequest("join a room first")
        room = self.room(member.room)
        participant = room.participants.get(member.participant_id)
        if participant is None:
            raise NotFound(f"participant {member.participant_id!r} is not in room {room.name!r}")
        return room, participant

    # -- caps ------------------------------------------------------------------------

    def _check_caps(self, name: str, joining: bool) -> None:
        """Refuse (and count) a request that would open ``name`` over ``max_rooms`` or,
        ``joining``, add a participant to it over ``max_participants_per_room``."""
        room = self.media.get(name)
        # joins on their way count: their rooms as open, themselves as participants
        opening = {n for n in self._joining if n not in self.media}
        if room is None and name not in opening:
            if self.max_rooms and len(self.media) + len(opening) >= self.max_rooms:
                self.refusals.refused("rooms")
                raise Unavailable(f"this node has {self.max_rooms} rooms open, its limit "
                                  f"(max_rooms): try again later")
        if joining and self.max_loop_lag_ms and self.loop_lag is not None:
            lag = self.loop_lag.current_ms
            if lag > self.max_loop_lag_ms:
                self.refusals.refused("loop_lag")
                raise Unavailable(f"this node is overloaded (its event loop runs {lag:.0f} ms late, "
                                  f"over max_loop_lag_ms {self.max_loop_lag_ms:.0f}): try again "
                                  "later or another node")
        participants = (len(room.participants) if room is not None else 0) + self._joining.get(name, 0)
        if joining and self.max_participants_per_room and (
                participants >= self.max_participants_per_room):
            self.refusals.refused("participants_per_room")
            raise Forbidden(f"room {name!r} has {self.max_participants_per_room} participants, "
                            f"the limit of this node (max_participants_per_room)")

    # -- open and close --------------------------------------------------------------

    def _open(self, name: str, record: RoomRecord | None = None) -> Room:
        room = self.media.get(name)
        if room is not None:
            return room
        record = self.membership.open_room(record or RoomRecord(name))
        if record.hold_open:
            wait = self.empty_timeout_s if record.empty_timeout_s is None else record.empty_timeout_s
            self._close_after(name, wait)
        room = Room(name, self.settings, record.metadata)
        record.created_at = room.created_at
        room.on_event = lambda event: self._media_event(record, event)
        self.media[name] = room
        logger.info("room opened", extra={"room": name})
        self.bus.publish(events.RoomCreated(room=name, shipment_id=record.shipment_id))
        return room

    def _media_event(self, record: RoomRecord, event: media.RoomEvent) -> None:
        if isinstance(event, media.TrackPublished):
            event.producer.on_close.append(self.retired.retire_producer)
        typed = MEDIA_EVENTS[type(event)](event)
        if typed is not None:
            # The record of this room, even while it closes (it left the membership).
            self.bus.publish(_with_shipment(typed, record))

    async def close(self, room: Room, reason: str) -> None:
        """Close an open room (with ``lifecycle`` held); see the module docstring."""
        if self.media.get(room.name) is not room:
            return  # closed already
        self._keep(room.name)
        record, members = self.membership.close_room(room.name)
        shipment_id = record.shipment_id if record is not None else None
        closed = events.RoomClosed(room=room.name, reason=reason, shipment_id=shipment_id)
        msg = closed.to_wire()
        for member in members:
            member.conn.send_event(msg)
            self.messaging.left(member.conn)
        del self.media[room.name]  # a join from now on opens a new room
        self.messaging.room_closed(room.name)
        await room.close(reason)  # watchers see each participant_left
        await self.bus.publish(closed)
        logger.info("room closed", extra={"room": room.name, "reason": reason})

    async def close_if_empty(self, room: Room) -> None:
        """The last participant left: close the room after ``departure_timeout_s``."""
        record = self.membership.room(room.name)
        if room.participants or room.closed or record is None or record.hold_open:
            return
        if self.departure_timeout_s > 0:
            self._close_after(room.name, self.departure_timeout_s)
            return
        await self._close_empty(room)

    async def _close_empty(self, room: Room) -> None:
        async with self.lifecycle:
            if not room.participants and self.media.get(room.name) is room:
                await self.close(room, "empty")

    def _close_after(self, name: str, seconds: float) -> None:
        self._keep(name)

        def due() -> None:
            self._closing.pop(name, None)
            room = self.media.get(name)
            if room is not None and not room.participants:
                logger.info("closing empty room", extra={"room": name, "waited_s": seconds})
                task = asyncio.ensure_future(self._close_empty(room))
                self._closers.add(task)
                task.add_done_callback(self._closers.discard)

        self._closing[name] = self.scheduler.call_later(seconds, due)

    def _keep(self, name: str) -> None:
        """``name`` is not to close for being empty (somebody joined, or it closes now)."""
        timer = self._closing.pop(name, None)
        if timer is not None:
            timer.cancel()

    @property
    def closing(self) -> list[str]:
        """Empty rooms waiting to close."""
        return list(self._closing)

    async def close_all(self, reason: str) -> None:
        for name in list(self._closing):
            self._keep(name)
        for detached in self._detached.values():
            detached.timer.cancel()
        self._detached.clear()
        if self._closers:
            await asyncio.gather(*self._closers, return_exceptions=True)
        for room in list(self.media.values()):
            async with self.lifecycle:
                await self.close(room, reason)

    # -- RoomHost (signalling.admin) ----------------------------------------------------

    async def create_room(self, room: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        self._check_caps(room, joining=False)  # before any plugin claims a shipment
        try:
            await self.hooks.room_create_check(room, fields)
        except BaseException:
            # A plugin refused: those checked before it may have claimed something.
            await self.bus.publish(events.RoomCreateFailed(room=room))
            raise
        if room in self.media:
            # A join opened it while the plugins were checking: undo what they claimed.
            await self.bus.publish(events.RoomCreateFailed(room=room))
            raise Conflict(f"room {room!r} is already open")
        try:
            self._check_caps(room, joining=False)  # joins opened rooms while plugins checked
        except BaseException:
            await self.bus.publish(events.RoomCreateFailed(room=room))
            raise
        self._open(room, RoomRecord(room, shipment_id=fields.get("shipment_id"),
                                    record=bool(fields.get("record")),
                                    metadata=fields.get("metadata"), hold_open=True,
                                    empty_timeout_s=fields.get("empty_timeout")))
        return self.room_info(room)

    async def close_room(self, room: str, reason: str) -> None:
        await self.close(self.room(room), reason)

    def has_participant(self, room: str, participant_id: str) -> bool:
        media_room = self.media.get(room)
        return media_room is not None and participant_id in media_room.participants

    async def remove_participant(self, room: str, participant_id: str) -> None:
        """The participant's connection gets ``room_closed {reason: "removed"}`` and is
        out of the room; the others see ``participant_left``. Its identity loses its
        message cursor unless it is still in the room on another connection."""
        media_room = self.room(room)
        participant = media_room.participant(participant_id)
        removed = {"type": "room_closed", "room": room, "reason": "removed"}
        for member in self.membership.members(room):
            if member.participant_id == participant_id:
                member.conn.send_event(removed)
                self.membership.leave(member.conn)
                self.messaging.left(member.conn)
        await media_room.leave(participant_id)
        logger.info("participant removed", extra={"room": room, "participant": participant_id})
        if not self.membership.has_identity(room, participant.identity):
            await self.messaging.remove_member(room, participant.identity)
        await self.close_if_empty(media_room)

    # -- join and leave --------------------------------------------------------------

    async def on_join(self, conn: Connection, request: Request) -> dict[str, Any]:
        name = request["room"]
        require_room(conn, name)
        if self.membership.member(conn) is not None:
            raise BadRequest(f"already in room {conn.room!r}: leave it first")
        if name not in self.media and not self.auto_create:
            raise NotFound(f"room {name!r} does not exist")
        self._check_caps(name, joining=True)
        # The join holds its place against the caps while it waits (below): once it
        # passed them, it is never refused after the member's cursor was made.
        self._joining[name] = self._joining.get(name, 0) + 1
        try:
            return await self._join(conn, request, name)
        finally:
            self._joining[name] -= 1
            if not self._joining[name]:
                del self._joining[name]

    async def _join(self, conn: Connection, request: Request, name: str) -> dict[str, Any]:
        logged_last_seq = await self.messaging.prepare_join(name, conn.identity)
        extras = await self.hooks.join_info(name)
        remote = await self.remote_tracks(name) if self.remote_tracks is not None else []
        # From here no await: the connection becomes a member in one step.
        if name not in self.media and not self.auto_create:
            raise NotFound(f"room {name!r} was closed")
        if self.membership.member(conn) is not None:
            raise BadRequest(f"already in room {conn.room!r}: leave it first")
        room = self._open(name)
        self._keep(name)
        participant = self._reattach(conn, room)
        resumed = participant is not None
        if participant is None:
            participant = room.join(conn.identity, request.get("name") or conn.claims.name,
                                    request.get("metadata"))
        self.membership.room(name).hold_open = False
        self.membership.join(conn, name, participant.id, conn.identity)
        last_seq = self.messaging.joined(conn, name, logged_last_seq)

        async def send_offer(sdp: str) -> None:
            conn.send_event({"type": "offer", "pc": "sub", "sdp": sdp,
                             "tracks": participant.offered_tracks()})

        participant.send_offer = send_offer
        pending = participant.pending_offer() if resumed else None
        if pending is not None:  # the offer the dropped connection may never have seen
            conn.send_event({"type": "offer", "pc": "sub", "sdp": pending,
                             "tracks": participant.offered_tracks()})
        logger.info("joined" if not resumed else "joined again (resumed)",
                    extra={"room": name, "participant": participant.id, "identity": conn.identity})
        return {
            **extras,
            "type": "joined", "room": name, "participant_id": participant.id,
            "participants": [p.describe() for p in room.participants.values() if p is not participant],
            "tracks": room.tracks() + [t for t in remote if t["track_id"] not in room.producers],
            "last_seq": last_seq,
        }

    async def on_leave(self, conn: Connection, request: Request) -> dict[str, Any]:
        await self.leave(conn)
        return {"type": "left"}

    async def leave(self, conn: Connection) -> None:
        member = self.membership.leave(conn)
        self.messaging.left(conn)
        room = self.media.get(member.room) if member is not None else None
        if room is not None:
            await room.leave(member.participant_id)
            logger.info("left", extra={"room": member.room, "participant": member.participant_id})
            await self.close_if_empty(room)

    async def disconnected(self, conn: Connection) -> None:
        """A connection closed. One that was lost (no close frame from the client:
        its network dropped) keeps its participant in the room (peer connections up,
        tracks published) for ``participant_grace_s``, so that a client whose
        signalling dropped for a moment resumes it with ``hello.resume`` and ``join``
        and its media never stops; then it leaves. One the client closed leaves now."""
        self.membership.unwatch(conn)
        member = self.membership.member(conn)
        room = self.media.get(member.room) if member is not None else None
        participant = room.participants.get(member.participant_id) if room is not None else None
        if (participant is None or self.participant_grace_s <= 0 or not getattr(conn, "lost", False)
                or participant.media_lost()):  # nothing to keep: it vanished whole
            await self.leave(conn)
            return
        self.membership.leave(conn)
        self.messaging.left(conn)
        participant.send_offer = None  # an offer now would go nowhere: sent again on resume
        # its peer connections dying too means it is gone: no need to wait any more
        participant.on_media_lost = lambda _: self._grace_over(conn.session_id)
        timer = self.scheduler.call_later(self.participant_grace_s,
                                          lambda: self._grace_over(conn.session_id))
        self._detached[conn.session_id] = _Detached(room, participant.id, conn.identity, timer)
        logger.info("connection dropped; participant kept", extra={
            "room": room.name, "participant": participant.id, "grace_s": self.participant_grace_s})

    def _reattach(self, conn: Connection, room: Room) -> Participant | None:
        """The participant a resumed connection left behind in ``room``, if it waits."""
        resume = conn.resume or {}
        detached = self._detached.get(resume.get("session_id")) if isinstance(resume, dict) else None
        if (detached is None or detached.room is not room or detached.identity != conn.identity
                or detached.participant_id not in room.participants):
            return None
        del self._detached[resume["session_id"]]
        detached.timer.cancel()
        participant = room.participants[detached.participant_id]
        participant.on_media_lost = None
        return participant

    def _grace_over(self, session_id: str) -> None:
        detached = self._detached.pop(session_id, None)
        if detached is None or detached.room.closed:
            return
        room, participant_id = detached.room, detached.participant_id

        async def leave() -> None:
            await room.leave(participant_id)
            logger.info("left (did not come back)", extra={"room": room.name,
                                                          "participant": participant_id})
            await self.close_if_empty(room)

        task = asyncio.ensure_future(leave())
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)


@dataclasses.dataclass
class _Detached:
    """A participant whose connection dropped, waiting for it to come back."""

    room: Room
    participant_id: str
    identity: str
    timer: Cancellable


def _with_shipment(event: events.Event, record: RoomRecord) -> events.Event:
    if record.shipment_id is None or event.shipment_id is not None:
        return event
    return dataclasses.replace(event, shipment_id=record.shipment_id)
