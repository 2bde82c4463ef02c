"""Node: one Dockcast process, wiring the signalling server to the media plane.

The node owns the rooms, answers the Session and Media requests of ``PROTOCOL.md``,
turns room events into protocol events, serves ``/healthz`` and ``/metrics``, and stops
gracefully (drain, close peers, flush stores).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import threading
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sfu import ice
from sfu.errors import NotFound as SfuNotFound
from sfu.participant import MediaSettings, Participant
from sfu.room import Room
from signalling.errors import BadRequest, NotFound
from signalling.server import Connection, SignallingServer
from signalling.schema import Request
from signalling.session import Limits, NodeInfo, require_room
from signalling.tokens import TokenVerifier

from . import __version__
from .config import NodeConfig

__all__ = ["Node"]

logger = logging.getLogger("dockcast.node")

WEB_DIR = pathlib.Path(__file__).resolve().parent.parent / "signalling" / "web"


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


class _MediaCollector:
    """Prometheus metrics read from the live objects at scrape time (no per-packet cost)."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        rooms = list(self.node.rooms.values())
        participants = [p for r in rooms for p in r.participants.values()]
        producers = [t for r in rooms for t in r.producers.values()]
        consumers = [c for p in participants for c in p.consumers.values()]
        yield GaugeMetricFamily("dockcast_rooms", "Open rooms", value=len(rooms))
        yield GaugeMetricFamily("dockcast_participants", "Participants in rooms", value=len(participants))
        yield GaugeMetricFamily("dockcast_tracks", "Published tracks", value=len(producers))
        yield GaugeMetricFamily("dockcast_consumers", "Forwarded track subscriptions", value=len(consumers))
        yield CounterMetricFamily("dockcast_packets_received", "RTP packets received from publishers",
                                  value=self.node.retired["packets_in"] + sum(t.packets for t in producers))
        yield CounterMetricFamily("dockcast_packets_forwarded", "RTP packets forwarded to subscribers",
                                  value=self.node.retired["packets_out"] + sum(c.state.packets for c in consumers))
        yield CounterMetricFamily("dockcast_bytes_forwarded", "RTP payload bytes forwarded",
                                  value=self.node.retired["bytes_out"] + sum(c.state.octets for c in consumers))
        yield CounterMetricFamily("dockcast_retransmissions", "Packets resent after a NACK",
                                  value=self.node.retired["retransmitted"] + sum(c.retransmitted for c in consumers))
        # resources, to see leaks: every join/leave cycle must give back what it took
        yield GaugeMetricFamily("dockcast_asyncio_tasks", "Pending asyncio tasks",
                                value=len(asyncio.all_tasks()))
        yield GaugeMetricFamily("dockcast_threads", "Threads of the process",
                                value=threading.active_count())
        yield GaugeMetricFamily("dockcast_open_fds", "Open file descriptors (sockets included)",
                                value=_open_fds())


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.node_id = config.node_id or "node-" + uuid.uuid4().hex[:8]
        self.registry = CollectorRegistry()
        self.settings = MediaSettings(ice_servers=config.ice_servers)
        self.rooms: dict[str, Room] = {}
        self.retired = {"packets_in": 0, "packets_out": 0, "bytes_out": 0, "retransmitted": 0}
        self.started_at = time.time()
        self._tasks: set[asyncio.Task] = set()
        verifier = TokenVerifier({config.api_key: config.api_secret})
        limits = Limits(max_frame_bytes=config.max_frame_bytes,
                        max_payload_bytes=config.max_payload_bytes)
        self.server = SignallingServer(
            verifier, NodeInfo(self.node_id, config.region, __version__), limits,
            registry=self.registry)
        self.registry.register(_MediaCollector(self))
        self.port: int | None = None
        for name, handler in {
            "join": self.on_join, "leave": self.on_leave,
            "publish": self.on_publish, "unpublish": self.on_unpublish,
            "subscribe": self.on_subscribe, "unsubscribe": self.on_unsubscribe,
            "answer": self.on_answer, "trickle": self.on_trickle,
        }.items():
            self.server.route(name, handler)
        self.server.on_disconnect(self._disconnected)
        self.server.add_http_route("/healthz", self._healthz)
        self.server.add_http_route("/metrics", self._metrics)
        if WEB_DIR.is_dir():
            self.server.add_static("/web/", str(WEB_DIR))

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> int:
        ice.use_host_addresses(self.config.announced_ice_addresses)
        self.port = await self.server.start(self.config.host, self.config.port)
        logger.info("node %s serving on ws://%s:%d/ws", self.node_id, self.config.host, self.port,
                    extra={"node": self.node_id, "region": self.config.region})
        return self.port

    async def stop(self) -> None:
        """Drain: refuse new requests, close every room (peers, producers), stop serving."""
        self.server.draining = True
        for room in list(self.rooms.values()):
            await self._close_room(room, "node_stopping")
        await self.server.close()
        logger.info("node %s stopped", self.node_id)

    async def _healthz(self) -> tuple[int, str, bytes]:
        if self.server.draining:
            return 503, "text/plain", b"draining\n"
        return 200, "text/plain", b"ok\n"

    async def _metrics(self) -> tuple[int, str, bytes]:
        return 200, "text/plain; version=0.0.4", generate_latest(self.registry)

    # -- rooms -----------------------------------------------------------------------

    def room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            raise NotFound(f"room {name!r} does not exist")
        return room

    def _open_room(self, name: str, metadata: Any = None) -> Room:
        room = self.rooms.get(name)
        if room is not None:
            return room
        room = Room(name, self.settings, metadata)
        room.on_event = lambda event, **data: self._room_event(room, event, **data)
        self.rooms[name] = room
        logger.info("room opened", extra={"room": name})
        return room

    async def _close_room(self, room: Room, reason: str) -> None:
        self.broadcast(room, {"type": "room_closed", "room": room.name, "reason": reason})
        for conn in self._members(room):
            conn.room = None
            conn.participant_id = None
        await room.close(reason)
        self.rooms.pop(room.name, None)

    def _members(self, room: Room, exclude: str | None = None) -> list[Connection]:
        return [c for c in self.server.connections
                if c.room == room.name and c.participant_id and c.participant_id != exclude]

    def broadcast(self, room: Room, msg: dict[str, Any], exclude: str | None = None) -> None:
        for conn in self._members(room, exclude):
            conn.send_event(msg)

    def _room_event(self, room: Room, event: str, **data: Any) -> None:
        if event == "participant_joined":
            p = data["participant"]
            self.broadcast(room, {"type": "participant_joined", "participant": p.describe()}, exclude=p.id)
        elif event == "participant_left":
            p = data["participant"]
            self._retire(p)
            self.broadcast(room, {"type": "participant_left", "participant_id": p.id}, exclude=p.id)
            if not room.participants and not room.closed:
                self.rooms.pop(room.name, None)
                logger.info("room closed: empty", extra={"room": room.name})
        elif event == "track_published":
            t = data["producer"]
            self.broadcast(room, {"type": "track_published", "track": t.describe()}, exclude=t.participant_id)
        elif event == "track_unpublished":
            t = data["producer"]
            self.broadcast(room, {"type": "track_unpublished", "track_id": t.id}, exclude=t.participant_id)

    def _retire(self, participant: Participant) -> None:
        """Keep the counters of a leaving participant in the metrics totals."""
        for producer in participant.producers.values():
            self.retired["packets_in"] += producer.packets
        for consumer in participant.consumers.values():
            self.retired["packets_out"] += consumer.state.packets
            self.retired["bytes_out"] += consumer.state.octets
            self.retired["retransmitted"] += consumer.retransmitted

    def _participant(self, conn: Connection) -> tuple[Room, Participant]:
        if not conn.room or not conn.participant_id:
            raise BadRequest("join a room first")
        room = self.room(conn.room)
        try:
            return room, room.participant(conn.participant_id)
        except SfuNotFound as exc:
            raise NotFound(str(exc)) from exc

    # -- session ---------------------------------------------------------------------

    async def on_join(self, conn: Connection, request: Request) -> dict[str, Any]:
        name = request["room"]
        require_room(conn, name)
        if conn.room is not None:
            raise BadRequest(f"already in room {conn.room!r}: leave it first")
        if name not in self.rooms and not self.config.auto_create_rooms:
            raise NotFound(f"room {name!r} does not exist")
        room = self._open_room(name)
        participant = room.join(conn.identity, request.get("name") or conn.claims.name,
                                request.get("metadata"))
        conn.room = name
        conn.participant_id = participant.id

        async def send_offer(sdp: str) -> None:
            conn.send_event({"type": "offer", "pc": "sub", "sdp": sdp})

        participant.send_offer = send_offer
        logger.info("joined", extra={"room": name, "participant": participant.id,
                                     "identity": conn.identity})
        return {
            "type": "joined", "room": name, "participant_id": participant.id,
            "participants": [p.describe() for p in room.participants.values() if p is not participant],
            "tracks": room.tracks(), "last_seq": 0,
        }

    async def on_leave(self, conn: Connection, request: Request) -> dict[str, Any]:
        await self._leave(conn)
        return {"type": "left"}

    async def _leave(self, conn: Connection) -> None:
        room_name, participant_id = conn.room, conn.participant_id
        conn.room = conn.participant_id = None
        room = self.rooms.get(room_name) if room_name else None
        if room is not None and participant_id:
            await room.leave(participant_id)
            logger.info("left", extra={"room": room_name, "participant": participant_id})

    async def _disconnected(self, conn: Connection) -> None:
        await self._leave(conn)

    # -- media -----------------------------------------------------------------------

    async def on_publish(self, conn: Connection, request: Request) -> dict[str, Any]:
        room, participant = self._participant(conn)
        tracks = [dict(t) for t in request["tracks"]]
        answer, producers = await room.publish(participant, request["sdp"], tracks)
        logger.info("published", extra={"room": room.name, "participant": participant.id,
                                        "tracks": [p.id for p in producers]})
        return {"type": "published", "sdp": answer,
                "tracks": [{"track_id": p.id, "mid": p.mid, "kind": p.kind} for p in producers]}

    async def on_unpublish(self, conn: Connection, request: Request) -> dict[str, Any]:
        room, participant = self._participant(conn)
        track_ids = list(request["track_ids"])
        room.unpublish(participant, track_ids)
        return {"type": "unpublished", "track_ids": track_ids}

    async def on_subscribe(self, conn: Connection, request: Request) -> dict[str, Any]:
        room, participant = self._participant(conn)
        track_ids = list(request["track_ids"])
        for track_id in track_ids:
            if track_id not in room.producers:
                raise NotFound(f"track {track_id!r} is not published in room {room.name!r}")
        self._after_reply(conn, "subscribe", room.subscribe(participant, track_ids))
        return {"type": "subscribed", "track_ids": track_ids}

    async def on_unsubscribe(self, conn: Connection, request: Request) -> dict[str, Any]:
        room, participant = self._participant(conn)
        track_ids = list(request["track_ids"])
        for track_id in track_ids:
            if track_id not in participant.consumers:
                raise NotFound(f"not subscribed to track {track_id!r}")
        self._after_reply(conn, "unsubscribe", room.unsubscribe(participant, track_ids))
        return {"type": "unsubscribed", "track_ids": track_ids}

    def _after_reply(self, conn: Connection, what: str, coro: Any) -> None:
        """Run ``coro`` once the handler's reply is queued, so that the events it sends
        (the subscriber's new ``offer``) follow the reply on the wire: the server queues
        a reply as soon as the handler returns, before this task gets to run."""

        async def run() -> None:
            try:
                await coro
            except Exception as exc:  # noqa: BLE001 - reported to the client as an alert
                logger.exception("%s failed after its reply", what,
                                 extra={"room": conn.room, "participant": conn.participant_id})
                conn.send_event({"type": "error", "code": getattr(exc, "code", "internal"),
                                 "message": f"{what} failed: {exc}"})

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_answer(self, conn: Connection, request: Request) -> dict[str, Any]:
        _, participant = self._participant(conn)
        if request["pc"] != "sub":
            raise BadRequest("answer is for pc 'sub' (the server answers 'pub' offers itself)")
        await participant.answer(request["sdp"])
        return {"type": "ok"}

    async def on_trickle(self, conn: Connection, request: Request) -> dict[str, Any] | None:
        _, participant = self._participant(conn)
        transport = participant.pub if request["pc"] == "pub" else participant.sub
        if transport is None:
            raise BadRequest(f"no {request['pc']!r} peer connection yet")
        candidate = request["candidate"]
        await transport.add_ice_candidate(candidate.get("candidate", ""), candidate.get("sdpMid"),
                                          candidate.get("sdpMLineIndex"))
        return None
