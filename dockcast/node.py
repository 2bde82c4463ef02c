"""Node: one Dockcast process, wiring the signalling server to the media plane.

The node owns the rooms, answers the Session and Media requests of ``PROTOCOL.md``,
turns room events into protocol events, serves ``/healthz`` and ``/metrics``, and stops
gracefully (drain, close peers, flush stores). It composes the rest:

- room messages (``send``, ``ack``, resume): `dockcast.messaging.Messaging` over the
  SQLite room log in ``<data-dir>/messages.db``;
- administration (``room.*``, ``participant.remove``, ``events.subscribe``):
  `dockcast.admin.Admin`, with the node as its `RoomHost`;
- plugins (the built-in shipments and webhooks, plus ``config.plugins``): a
  `HookRegistry`; plugins see the node through `_PluginContext`. Lifecycle hooks run
  one at a time in the order things happened (`_notify`), away from the media path.

Every room event goes to the room's members, to the ``events.subscribe`` watchers of
the room or of its shipment (once each), and to the plugins (``event_published``:
webhooks).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sfu import ice
from sfu.errors import NotFound as SfuNotFound
from sfu.participant import MediaSettings, Participant
from sfu.room import Room
from signalling.errors import BadRequest, Conflict, NotFound
from signalling.roomlog import RetentionPolicy, SqliteRoomLog, StoredMessage
from signalling.server import Connection, Handler, SignallingServer
from signalling.schema import Request
from signalling.session import Limits, NodeInfo, require_room
from signalling.tokens import TokenVerifier

from . import __version__
from .admin import Admin, Watchers
from .config import NodeConfig, tls_context
from .hooks import HookRegistry, load_plugins
from .messaging import Messaging

__all__ = ["Node", "BUILTIN_PLUGINS"]

logger = logging.getLogger("dockcast.node")

#: Plugins every node loads, by the short name their options are given under.
BUILTIN_PLUGINS = {
    "shipments": "plugins.shipments:ShipmentsPlugin",
    "webhooks": "plugins.webhooks:WebhooksPlugin",
}
PRUNE_INTERVAL_S = 60.0

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
        messaging = self.node.messaging
        if messaging is not None:
            yield CounterMetricFamily("dockcast_messages_stored", "Room messages stored",
                                      value=messaging.stored)
            yield CounterMetricFamily("dockcast_message_duplicates",
                                      "Sends answered with an earlier seq (same msg_id)",
                                      value=messaging.duplicates)
            yield GaugeMetricFamily("dockcast_message_replays",
                                    "Connections catching up from the message log",
                                    value=messaging.replays())
        yield GaugeMetricFamily("dockcast_watchers", "Connections with events.subscribe",
                                value=len(self.node.watchers))
        # resources, to see leaks: every join/leave cycle must give back what it took
        yield GaugeMetricFamily("dockcast_asyncio_tasks", "Pending asyncio tasks",
                                value=len(asyncio.all_tasks()))
        yield GaugeMetricFamily("dockcast_threads", "Threads of the process",
                                value=threading.active_count())
        yield GaugeMetricFamily("dockcast_open_fds", "Open file descriptors (sockets included)",
                                value=_open_fds())


class _PluginContext:
    """The `PluginContext` the node gives plugins."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.data_dir = node.config.data_path
        self.metrics_registry = node.registry

    def route(self, type: str, handler: Handler) -> None:
        self._node.server.route(type, handler)

    async def broadcast(self, room: str, msg: dict[str, Any]) -> None:
        open_room = self._node.rooms.get(room)
        if open_room is not None:
            self._node.broadcast(open_room, msg)

    async def publish_event(self, msg: dict[str, Any], room: str | None = None,
                            shipment_id: str | None = None) -> None:
        await self._node.publish_event(msg, room, shipment_id)

    def room_names(self) -> list[str]:
        return self._node.room_names()

    def room_info(self, room: str) -> dict[str, Any] | None:
        return self._node.room_info(room)


@dataclass(slots=True)
class _RoomState:
    """What the node keeps beside a media `Room`."""

    shipment_id: str | None = None
    record: bool = False
    # Made by room.create: open with nobody in it until a participant joined and left.
    hold_open: bool = False


class Node:
    """One node; it is the `RoomHost` of `Admin`, and plugins see it through
    `_PluginContext`."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.node_id = config.node_id or "node-" + uuid.uuid4().hex[:8]
        self.registry = CollectorRegistry()
        self.settings = MediaSettings(ice_servers=config.ice_servers)
        self.rooms: dict[str, Room] = {}
        self._room_state: dict[str, _RoomState] = {}
        self.lifecycle = asyncio.Lock()  # RoomHost: held while a room opens or closes
        self.retired = {"packets_in": 0, "packets_out": 0, "bytes_out": 0, "retransmitted": 0}
        self.started_at = time.time()
        self._tasks: set[asyncio.Task] = set()
        verifier = TokenVerifier({config.api_key: config.api_secret})
        limits = Limits(max_frame_bytes=config.max_frame_bytes,
                        max_payload_bytes=config.max_payload_bytes,
                        rate=config.request_rate, burst=config.request_burst)
        self.server = SignallingServer(
            verifier, NodeInfo(self.node_id, config.region, __version__), limits,
            registry=self.registry)
        self.registry.register(_MediaCollector(self))
        self.port: int | None = None
        self.watchers = Watchers()
        self.admin = Admin(self, self.watchers)
        self.hooks = HookRegistry()  # replaced by the loaded plugins in start()
        self.messaging: Messaging | None = None
        self._hook_calls: asyncio.Queue[Any] = asyncio.Queue()
        self._hook_runner: asyncio.Task | None = None
        for name, handler in {
            "join": self.on_join, "leave": self.on_leave,
            "publish": self.on_publish, "unpublish": self.on_unpublish,
            "subscribe": self.on_subscribe, "unsubscribe": self.on_unsubscribe,
            "answer": self.on_answer, "trickle": self.on_trickle,
            **self.admin.handlers(),
        }.items():
            self.server.route(name, handler)
        self.server.on_disconnect(self._disconnected)
        self.server.add_http_route("/healthz", self._healthz)
        self.server.add_http_route("/metrics", self._metrics)
        if WEB_DIR.is_dir():
            self.server.add_static("/web/", str(WEB_DIR))

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> int:
        """Open the stores, start the plugins (they register their routes), serve."""
        tls = tls_context(self.config)  # a bad certificate stops us before anything opened
        ice.use_host_addresses(self.config.announced_ice_addresses)
        log = SqliteRoomLog(self.config.data_path / "messages.db", self._retention())
        self.messaging = Messaging(log, self._message_stored)
        self.server.route("send", self.messaging.on_send)
        self.server.route("ack", self.messaging.on_ack)
        self._hook_runner = asyncio.create_task(self._run_hook_calls())
        try:
            self.hooks = HookRegistry(self._load_plugins(), metrics_registry=self.registry)
            await self.hooks.start(_PluginContext(self))
        except BaseException:
            await self._stop_hook_calls()
            await self.messaging.close()
            raise
        self.port = await self.server.start(self.config.host, self.config.port, ssl=tls)
        self._spawn(self._prune_periodically())
        logger.info("node %s serving on %s://%s:%d/ws", self.node_id, "wss" if tls else "ws",
                    self.config.host, self.port,
                    extra={"node": self.node_id, "region": self.config.region,
                           "plugins": [p.name or type(p).__name__ for p in self.hooks.plugins]})
        return self.port

    async def stop(self) -> None:
        """Drain: refuse new requests, close every room (peers, producers), stop
        serving, then stop the plugins and close the room log."""
        self.server.draining = True
        for room in list(self.rooms.values()):
            async with self.lifecycle:
                await self._close_room(room, "node_stopping")
        await self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stop_hook_calls()
        await self.hooks.stop()
        if self.messaging is not None:
            await self.messaging.close()
        logger.info("node %s stopped", self.node_id)

    def _retention(self) -> RetentionPolicy:
        c = self.config
        return RetentionPolicy(max_age_s=c.message_max_age_s or None,
                               max_messages=c.message_max_count or None,
                               max_bytes=c.message_max_bytes or None,
                               drop_unacked=c.message_drop_unacked)

    def _load_plugins(self) -> list[Any]:
        """The built-in plugins, then ``config.plugins``; options by name (a built-in's
        short name, an entry point name, or ``module:Class``)."""
        specs = list(BUILTIN_PLUGINS.values())
        for name in self.config.plugins:
            spec = BUILTIN_PLUGINS.get(name, name)
            if spec not in specs:
                specs.append(spec)
        options = {BUILTIN_PLUGINS.get(name, name): dict(values)
                   for name, values in self.config.plugin_options.items()}
        return load_plugins(specs, options)

    async def _prune_periodically(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL_S)
            try:
                await self.messaging.prune(time.time())
            except Exception:  # noqa: BLE001 - the store may come back; try next time
                logger.exception("pruning room messages failed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- plugin hooks, in order ------------------------------------------------------

    def _notify(self, hook: str, *args: Any) -> asyncio.Future:
        """Call ``self.hooks.<hook>(*args)`` after the hook calls queued before it.

        Returns a future that resolves once it ran: await it to wait (room_closed must
        finish before a shipment's room can be created again), or do not. The registry
        isolates plugin failures, so the future never holds an error.
        """
        done = asyncio.get_running_loop().create_future()
        self._hook_calls.put_nowait((hook, args, done))
        return done

    async def _run_hook_calls(self) -> None:
        while True:
            hook, args, done = await self._hook_calls.get()
            if hook is None:
                done.set_result(None)
                return
            try:
                await getattr(self.hooks, hook)(*args)
            finally:
                if not done.done():
                    done.set_result(None)

    async def _stop_hook_calls(self) -> None:
        """Run the hook calls still queued, then stop the runner."""
        if self._hook_runner is not None and not self._hook_runner.done():
            await self._notify(None)  # type: ignore[arg-type]
        self._hook_runner = None

    # -- what plugins and Admin see ----------------------------------------------------

    async def publish_event(self, msg: dict[str, Any], room: str | None = None,
                            shipment_id: str | None = None) -> None:
        """An event for watchers of ``room`` or ``shipment_id``, and for plugins."""
        self.watchers.publish(msg, room, shipment_id)
        # Directly, not through _notify: a plugin may call this from inside a hook.
        await self.hooks.event_published(msg, room, shipment_id)

    def room_names(self) -> list[str]:
        return list(self.rooms)

    def room_info(self, room: str) -> dict[str, Any] | None:
        open_room = self.rooms.get(room)
        if open_room is None:
            return None
        state = self._room_state.get(room, _RoomState())
        return {"room": room, "shipment_id": state.shipment_id, "created_at": open_room.created_at,
                "record": state.record, "metadata": open_room.metadata,
                "participants": [p.describe() for p in open_room.participants.values()]}

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

    def _open_room(self, name: str, metadata: Any = None, state: _RoomState | None = None) -> Room:
        room = self.rooms.get(name)
        if room is not None:
            return room
        room = Room(name, self.settings, metadata)
        room.on_event = lambda event, **data: self._room_event(room, event, **data)
        self.rooms[name] = room
        self._room_state[name] = state or _RoomState()
        logger.info("room opened", extra={"room": name})
        self._notify("room_created", name)
        return room

    async def _close_room(self, room: Room, reason: str) -> None:
        """Close an open room (with ``lifecycle`` held): members get ``room_closed``
        and are out of the room at once; then peers close and plugins are told."""
        if self.rooms.get(room.name) is not room:
            return  # closed already
        msg = {"type": "room_closed", "room": room.name, "reason": reason}
        members = self._members(room)
        for conn in members:
            conn.send_event(msg)
            self.messaging.left(conn)
            conn.room = None
            conn.participant_id = None
        del self.rooms[room.name]  # a join from now on opens a new room
        state = self._room_state.get(room.name, _RoomState())
        self.messaging.room_closed(room.name)
        await room.close(reason)  # watchers see each participant_left, then room_closed
        if room.name not in self.rooms:
            self._room_state.pop(room.name, None)
        self.watchers.publish(msg, room.name, state.shipment_id)
        self._notify("event_published", msg, room.name, state.shipment_id)
        await self._notify("room_closed", room.name, reason)
        logger.info("room closed", extra={"room": room.name, "reason": reason})

    async def _close_if_empty(self, room: Room) -> None:
        state = self._room_state.get(room.name)
        if room.participants or room.closed or state is None or state.hold_open:
            return
        async with self.lifecycle:
            if not room.participants:
                await self._close_room(room, "empty")

    def _members(self, room: Room, exclude: str | None = None) -> list[Connection]:
        return [c for c in self.server.connections
                if c.room == room.name and c.participant_id and c.participant_id != exclude]

    def broadcast(self, room: Room, msg: dict[str, Any], exclude: str | None = None) -> None:
        """Send ``msg`` to the members of ``room`` but ``exclude`` (a participant id)."""
        for conn in self._members(room, exclude):
            conn.send_event(msg)

    def _emit(self, room: Room, msg: dict[str, Any], exclude: str | None = None) -> None:
        """A room event: to the members, the watchers, and the plugins."""
        self.broadcast(room, msg, exclude)
        state = self._room_state.get(room.name)
        shipment_id = state.shipment_id if state is not None else None
        self.watchers.publish(msg, room.name, shipment_id)
        self._notify("event_published", msg, room.name, shipment_id)

    def _room_event(self, room: Room, event: str, **data: Any) -> None:
        if event == "participant_joined":
            p = data["participant"]
            described = p.describe()
            self._emit(room, {"type": "participant_joined", "participant": described}, exclude=p.id)
            self._notify("participant_joined", room.name, described)
        elif event == "participant_left":
            p = data["participant"]
            self._retire(p)
            self._emit(room, {"type": "participant_left", "participant_id": p.id}, exclude=p.id)
            self._notify("participant_left", room.name, p.id)
        elif event == "track_published":
            t = data["producer"]
            described = t.describe()
            self._emit(room, {"type": "track_published", "track": described}, exclude=t.participant_id)
            self._notify("track_published", room.name, described)
        elif event == "track_unpublished":
            t = data["producer"]
            self._emit(room, {"type": "track_unpublished", "track_id": t.id}, exclude=t.participant_id)
            self._notify("track_unpublished", room.name, t.id)

    async def _message_stored(self, message: StoredMessage) -> None:
        """A new room message went to the members: now the watchers and plugins."""
        state = self._room_state.get(message.room)
        shipment_id = state.shipment_id if state is not None else None
        event = message.to_event()
        self.watchers.publish(event, message.room, shipment_id)
        self._notify("message", message.room, message)
        await self._notify("event_published", event, message.room, shipment_id)

    # -- RoomHost (dockcast.admin) ---------------------------------------------------

    async def create_room(self, room: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        try:
            await self.hooks.room_create_check(room, fields)
        except BaseException:
            # A plugin refused: those checked before it may have claimed something.
            await self._notify("room_closed", room, "create_failed")
            raise
        if room in self.rooms:
            # A join opened it while the plugins were checking: undo what they claimed.
            await self._notify("room_closed", room, "create_failed")
            raise Conflict(f"room {room!r} is already open")
        state = _RoomState(fields.get("shipment_id"), bool(fields.get("record")), hold_open=True)
        self._open_room(room, fields.get("metadata"), state)
        return self.room_info(room)

    async def close_room(self, room: str, reason: str) -> None:
        await self._close_room(self.room(room), reason)

    def has_participant(self, room: str, participant_id: str) -> bool:
        open_room = self.rooms.get(room)
        return open_room is not None and participant_id in open_room.participants

    async def remove_participant(self, room: str, participant_id: str) -> None:
        """The participant's connection gets ``room_closed {reason: "removed"}`` and is
        out of the room; the others see ``participant_left``. Its identity loses its
        message cursor unless it is still in the room on another connection."""
        open_room = self.room(room)
        participant = open_room.participant(participant_id)
        for conn in self._members(open_room):
            if conn.participant_id == participant_id:
                conn.send_event({"type": "room_closed", "room": room, "reason": "removed"})
                self.messaging.left(conn)
                conn.room = conn.participant_id = None
        await open_room.leave(participant_id)
        logger.info("participant removed", extra={"room": room, "participant": participant_id})
        if not any(p.identity == participant.identity for p in open_room.participants.values()):
            await self.messaging.remove_member(room, participant.identity)
        await self._close_if_empty(open_room)

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
        logged_last_seq = await self.messaging.prepare_join(name, conn.identity)
        extras = await self.hooks.join_info(name)
        # From here no await: the connection becomes a member in one step.
        if name not in self.rooms and not self.config.auto_create_rooms:
            raise NotFound(f"room {name!r} was closed")
        room = self._open_room(name)
        participant = room.join(conn.identity, request.get("name") or conn.claims.name,
                                request.get("metadata"))
        self._room_state[name].hold_open = False
        conn.room = name
        conn.participant_id = participant.id
        last_seq = self.messaging.joined(conn, name, logged_last_seq)

        async def send_offer(sdp: str) -> None:
            conn.send_event({"type": "offer", "pc": "sub", "sdp": sdp})

        participant.send_offer = send_offer
        logger.info("joined", extra={"room": name, "participant": participant.id,
                                     "identity": conn.identity})
        return {
            **extras,
            "type": "joined", "room": name, "participant_id": participant.id,
            "participants": [p.describe() for p in room.participants.values() if p is not participant],
            "tracks": room.tracks(), "last_seq": last_seq,
        }

    async def on_leave(self, conn: Connection, request: Request) -> dict[str, Any]:
        await self._leave(conn)
        return {"type": "left"}

    async def _leave(self, conn: Connection) -> None:
        room_name, participant_id = conn.room, conn.participant_id
        conn.room = conn.participant_id = None
        self.messaging.left(conn)
        room = self.rooms.get(room_name) if room_name else None
        if room is not None and participant_id:
            await room.leave(participant_id)
            logger.info("left", extra={"room": room_name, "participant": participant_id})
            await self._close_if_empty(room)

    async def _disconnected(self, conn: Connection) -> None:
        self.watchers.remove(conn)
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
