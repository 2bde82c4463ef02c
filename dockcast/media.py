"""Media requests of a node: ``publish``, ``unpublish``, ``subscribe``, ``unsubscribe``,
``answer`` and ``trickle``, on the joined connection's participant.

Each handler finds the participant through `Rooms.participant` (which asks the
membership), checks what the request names, and asks the media room. A subscription
change answers at once and renegotiates after the reply is queued, so that the new
``offer`` follows the reply on the wire.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from signalling.errors import BadRequest, NotFound
from signalling.schema import Request
from signalling.server import Connection

from .rooms import Rooms

__all__ = ["MediaRequests"]

logger = logging.getLogger("dockcast.media")


class MediaRequests:
    """The media request handlers; ``handlers()`` maps message types to them."""

    def __init__(self, rooms: Rooms) -> None:
        self.rooms = rooms
        self._tasks: set[asyncio.Task] = set()

    def handlers(self) -> dict[str, Any]:
        return {
            "publish": self.on_publish, "unpublish": self.on_unpublish,
            "subscribe": self.on_subscribe, "unsubscribe": self.on_unsubscribe,
            "answer": self.on_answer, "trickle": self.on_trickle,
        }

    async def on_publish(self, conn: Connection, request: Request) -> dict[str, Any]:
        room, participant = self.rooms.participant(conn)
        tracks = [dict(t) for t in request["tracks"]]
        answer, producers = await room.publish(participant, request["sdp"], tracks)
        logger.info("published", extra={"room": room.name, "participant": participant.id,
                                        "tracks": [p.id for p in producers]})
        return {"type": "published", "sdp": answer,
                "tracks": [{"track_id": p.id, "mid": p.mid, "kind": p.kind} for p in producers]}

    async def on_unpublish(self, conn: Connection, request: Request) -> dict[str, Any]:
        room, participant = self.rooms.participant(conn)
        track_ids = list(request["track_ids"])
        room.unpublish(participant, track_ids)
        return {"type": "unpublished", "track_ids": track_ids}

    async def on_subscribe(self, conn: Connection, request: Request) -> dict[str, Any]:
        room, participant, track_ids = self._tracks(conn, request, lambda r, p: r.producers,
                                                    "is not published in room {room}")
        self._after_reply(conn, "subscribe", room.subscribe(participant, track_ids))
        return {"type": "subscribed", "track_ids": track_ids}

    async def on_unsubscribe(self, conn: Connection, request: Request) -> dict[str, Any]:
        room, participant, track_ids = self._tracks(conn, request, lambda r, p: p.consumers,
                                                    "is not subscribed on this connection")
        self._after_reply(conn, "unsubscribe", room.unsubscribe(participant, track_ids))
        return {"type": "unsubscribed", "track_ids": track_ids}

    def _tracks(self, conn: Connection, request: Request, known: Any, missing: str) -> tuple:
        """The room, participant and ``track_ids`` of a request; ``not_found`` unless
        every track id is in ``known(room, participant)``."""
        room, participant = self.rooms.participant(conn)
        track_ids = list(request["track_ids"])
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
