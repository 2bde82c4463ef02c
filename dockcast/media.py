"""Media requests of a node: ``publish``, ``unpublish``, ``subscribe``, ``unsubscribe``,
``answer`` and ``trickle``, on the joined connection's participant.

Each handler finds the participant through `Rooms.participant` (which asks the
membership), checks what the request names, and asks the media room. A subscription
change answers at once and renegotiates after the reply is queued, so that the new
``offer`` follows the reply on the wire.

Caps (0: no limit), each refusal counted in the rooms' `CapRefusals` and changing
nothing: a ``publish`` that would give the participant more than
``max_tracks_per_participant`` tracks, or a ``subscribe`` more than
``max_subscriptions_per_participant``, is ``forbidden``; an offer with more than the
media settings' ``max_mlines_per_offer`` m-lines is ``bad_request`` (the media plane
refuses it before it is applied).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sfu import events as media
from sfu.consumer import Consumer
from sfu.errors import OfferTooLarge
from sfu.participant import Participant
from sfu.room import Room
from signalling.errors import BadRequest, Forbidden, NotFound
from signalling.schema import Request
from signalling.server import Connection

from .rooms import MEDIA_EVENTS, Rooms

__all__ = ["MediaRequests"]

logger = logging.getLogger("dockcast.media")


class MediaRequests:
    """The media request handlers; ``handlers()`` maps message types to them."""

    def __init__(self, rooms: Rooms, *, max_tracks_per_participant: int = 0,
                 max_subscriptions_per_participant: int = 0) -> None:
        self.rooms = rooms
        self.max_tracks = max_tracks_per_participant
        self.max_subscriptions = max_subscriptions_per_participant
        self._tasks: set[asyncio.Task] = set()
        # track ids of subscribes answered whose consumers are not made yet
        self._subscribing: dict[Participant, set[str]] = {}
        # make tracks published on other nodes producers of a room here (a cluster sets it)
        self.import_tracks: Callable[[Room, list[str]], Awaitable[None]] | None = None

    def handlers(self) -> dict[str, Any]:
        return {
            "publish": self.on_publish, "unpublish": self.on_unpublish,
            "join": self.on_join, "subscribe": self.on_subscribe, "unsubscribe": self.on_unsubscribe,
            "answer": self.on_answer, "trickle": self.on_trickle,
        }

    async def on_publish(self, conn: Connection, request: Request) -> dict[str, Any]:
        room, participant = self.rooms.participant(conn)
        tracks = [dict(t) for t in request["tracks"]]
        new = {t["mid"] for t in tracks} - {p.mid for p in participant.producers.values()}
        if self.max_tracks and len(participant.producers) + len(new) > self.max_tracks:
            self.rooms.refusals.refused("tracks_per_participant")
            raise Forbidden(f"this participant publishes {len(participant.producers)} tracks; "
                            f"{len(new)} more would pass this node's limit of {self.max_tracks} "
                            f"(max_tracks_per_participant): unpublish first")
        try:
            answer, producers = await room.publish(participant, request["sdp"], tracks)
        except OfferTooLarge:
            self.rooms.refusals.refused("mlines_per_offer")
            raise
        logger.info("published", extra={"room": room.name, "participant": participant.id,
                                        "tracks": [p.id for p in producers]})
        return {"type": "published", "sdp": answer,
                "tracks": [{"track_id": p.id, "mid": p.mid, "kind": p.kind} for p in producers]}

    async def on_unpublish(self, conn: Connection, request: Request) -> dict[str, Any]:
        room, participant = self.rooms.participant(conn)
        track_ids = list(request["track_ids"])
        room.unpublish(participant, track_ids)
        return {"type": "unpublished", "track_ids": track_ids}

    async def on_join(self, conn: Connection, request: Request) -> dict[str, Any]:
        """``join``, and with ``subscribe: true`` a subscription to every track the
        ``joined`` lists (``joined.subscribed``): the offer follows the reply at once,
        saving the subscribe round trip (a join across an ocean)."""
        if request.get("subscribe") and not conn.claims.grants.allows("subscribe"):
            raise Forbidden("join with subscribe needs the subscribe grant")
        joined = await self.rooms.on_join(conn, request)
        if request.get("subscribe"):
            track_ids = [t["track_id"] for t in joined["tracks"]
                         if t.get("participant_id") != joined["participant_id"]]
            joined["subscribed"] = track_ids
            if track_ids:
                await self._subscribe(conn, track_ids, {})
        return joined

    async def on_subscribe(self, conn: Connection, request: Request) -> dict[str, Any]:
        track_ids = await self._subscribe(conn, list(request["track_ids"]), _layer_limits(request))
        return {"type": "subscribed", "track_ids": track_ids}

    async def _subscribe(self, conn: Connection, track_ids: list[str], limits: dict[str, Any]) -> list[str]:
        if self.import_tracks is not None:  # tracks of other nodes come over a trunk first
            room, _ = self.rooms.participant(conn)
            await self.import_tracks(room, [t for t in track_ids if t not in room.producers])
        room, participant, track_ids = self._tracks(conn, track_ids, lambda r, p: r.producers,
                                                    "is not published in room {room}")
        pending = self._subscribing.get(participant, set())
        have = set(participant.consumers) | pending
        new = set(track_ids) - have
        if self.max_subscriptions and len(have) + len(new) > self.max_subscriptions:
            self.rooms.refusals.refused("subscriptions_per_participant")
            raise Forbidden(f"this participant subscribes to {len(have)} tracks; {len(new)} more "
                            f"would pass this node's limit of {self.max_subscriptions} "
                            f"(max_subscriptions_per_participant): unsubscribe first")
        if participant.on_bandwidth is None:
            participant.on_bandwidth = lambda consumer, reason: self._bandwidth_event(
                room, participant, consumer, reason)
        for track_id in set(track_ids) & set(participant.consumers):  # a change of limits
            participant.consumers[track_id].set_limits(**limits)
        self._subscribing.setdefault(participant, set()).update(new)

        async def subscribe() -> None:
            try:
                for consumer in await room.subscribe(participant, track_ids):
                    # before it forwards anything: activation waits for the answer
                    consumer.on_close.append(self.rooms.retired.retire_consumer)
                    consumer.set_limits(**limits)
            finally:
                left = self._subscribing.get(participant, set())
                left.difference_update(new)
                if not left:
                    self._subscribing.pop(participant, None)

        self._after_reply(conn, "subscribe", subscribe())
        return track_ids

    async def on_unsubscribe(self, conn: Connection, request: Request) -> dict[str, Any]:
        room, participant, track_ids = self._tracks(conn, list(request["track_ids"]),
                                                    lambda r, p: p.consumers,
                                                    "is not subscribed on this connection")
        self._after_reply(conn, "unsubscribe", room.unsubscribe(participant, track_ids))
        return {"type": "unsubscribed", "track_ids": track_ids}

    def _bandwidth_event(self, room: Room, participant: Participant, consumer: Consumer,
                         reason: str | None) -> None:
        """A consumer of ``participant`` paused for bandwidth (``reason``) or resumed
        (None): ``track_paused``/``track_resumed`` to that subscriber's connection only,
        and the room's event to the bus (plugins)."""
        event: media.RoomEvent = (
            media.TrackPaused(room.name, participant, consumer.producer, reason) if reason
            else media.TrackResumed(room.name, participant, consumer.producer))
        room.on_event(event)
        msg = MEDIA_EVENTS[type(event)](event).to_wire()
        for member in self.rooms.membership.members(room.name):
            if member.participant_id == participant.id:
                member.conn.send_event(msg)
        logger.info("track paused" if reason else "track resumed",
                    extra={"room": room.name, "participant": participant.id,
                           "track": consumer.producer.id, "reason": reason})

    def _tracks(self, conn: Connection, track_ids: list[str], known: Any, missing: str) -> tuple:
        """The room, participant and ``track_ids`` of a request; ``not_found`` unless
        every track id is in ``known(room, participant)``."""
        room, participant = self.rooms.participant(conn)
        found = known(room, participant)
        for track_id in track_ids:
            if track_id not in found:
                raise NotFound(f"track {track_id!r} " + missing.format(room=repr(room.name)))
        return room, participant, track_ids

    def _after_reply(self, conn: Connection, what: str, coro: Any) -> None:
        """Run ``coro`` once the handler's reply is queued, so that the events it sends
        (the subscriber's new ``offer``) follow the reply on the wire: the server queues
        a reply as soon as the handler returns, before this task gets to run."""

        async def run() -> None:
            try:
                await coro
            except Exception as exc:  # noqa: BLE001 - reported to the client as an error event
                logger.exception("%s failed after its reply", what,
                                 extra={"room": conn.room, "participant": conn.participant_id})
                conn.send_event({"type": "error", "code": getattr(exc, "code", "internal"),
                                 "message": f"{what} failed: {exc}"})

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_answer(self, conn: Connection, request: Request) -> dict[str, Any]:
        _, participant = self.rooms.participant(conn)
        if request["pc"] != "sub":
            raise BadRequest("answer is for pc 'sub' (the server answers 'pub' offers itself)")
        await participant.answer(request["sdp"])
        return {"type": "ok"}

    async def on_trickle(self, conn: Connection, request: Request) -> dict[str, Any] | None:
        _, participant = self.rooms.participant(conn)
        transport = participant.pub if request["pc"] == "pub" else participant.sub
        if transport is None:
            raise BadRequest(f"no {request['pc']!r} peer connection yet")
        candidate = request["candidate"]
        await transport.add_ice_candidate(candidate.get("candidate", ""), candidate.get("sdpMid"),
                                          candidate.get("sdpMLineIndex"))
        return None

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _layer_limits(request: Request) -> dict[str, Any]:
    """``subscribe``'s ``max_height`` (pixels) and ``max_fps`` (frames a second): the
    most of a simulcast track this subscriber wants (absent: no limit). They apply to
    every track named, also to one already subscribed (no new offer then)."""
    limits: dict[str, Any] = {}
    for name, kind in (("max_height", int), ("max_fps", (int, float))):
        value = request.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind) or value <= 0):
            raise BadRequest(f"field '{name}' must be a positive number")
        limits[name] = value
    return limits
