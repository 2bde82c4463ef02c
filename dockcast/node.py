"""Node: one Dockcast process, wired together from the layers below it.

`Node` builds the pieces and starts and stops them in order; each job is a module:

- `signalling.server.SignallingServer`: the websocket endpoint and plain HTTP
  (`dockcast.routes`: ``/healthz``, ``/metrics``, ``/web/``);
- `signalling.membership.LocalMembership`: who is in which room, and who watches what;
- `signalling.bus.EventBus`: every room and shipment event, to members and watchers
  (`signalling.fanout`) and to the plugins;
- `dockcast.rooms.Rooms`: rooms open and close, connections join and leave;
- `dockcast.media.MediaRequests`: publish, subscribe and the rest of the media requests;
- `signalling.messages.delivery.Messaging` over the SQLite room log in
  ``<data-dir>/messages.db``: ``send``, ``ack``, resume; `LogFollower`s for plugins
  that follow the log (`dockcast.plugin_context`);
- `signalling.admin.Admin`: ``room.*``, ``participant.remove``, ``events.subscribe``;
- plugins (the built-in shipments, webhooks, inspection and assistant, plus
  ``config.plugins``) in a `signalling.hooks.HookRegistry`;
- `dockcast.metrics`: Prometheus collectors read at scrape time.

Stopping drains: new requests are refused, rooms close, the server stops, queued events
reach the plugins, followers stop, plugins stop, the room log closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry

from sfu import forward, ice
from sfu.errors import SfuError
from sfu.participant import MediaSettings
from signalling.admin import Admin
from signalling.bus import EventBus
from signalling.events import Event
from signalling.fanout import EventFanout
from signalling.hooks import HookRegistry, load_plugins
from signalling.membership import LocalMembership
from signalling.messages import DurableDbError, RetentionPolicy, SqliteRoomLog
from signalling.messages.delivery import Messaging
from signalling.messages.follower import LogFollower
from signalling.server import SignallingServer
from signalling.session import Limits, NodeInfo
from signalling.tokens import TokenVerifier

from . import __version__
from .config import ConfigError, NodeConfig, tls_context
from .loop_lag import LoopLag
from .media import MediaRequests
from .metrics import MediaCollector, Retired
from .plugin_context import NodePluginContext
from .rooms import Rooms
from .routes import development_key, install_routes

__all__ = ["Node", "BUILTIN_PLUGINS"]

logger = logging.getLogger("dockcast.node")

#: Plugins every node loads, by the short name their options are given under.
BUILTIN_PLUGINS = {
    "shipments": "plugins.shipments:ShipmentsPlugin",
    "webhooks": "plugins.webhooks:WebhooksPlugin",
    "inspection": "plugins.inspection:InspectionPlugin",
    "assistant": "plugins.assistant:AssistantPlugin",
}
PRUNE_INTERVAL_S = 60.0
FOLLOWER_DRAIN_S = 5.0
SIBLINGS_WAIT_S = 15.0
"""How long a worker waits for the other workers to be listed before it serves on the
common port (they start one after another; one failing to start must not stop the rest)."""


class Node:
    """One node: see the module docstring."""

    def __init__(self, config: NodeConfig, worker: Any = None) -> None:
        self.config = config
        self.worker = worker  # dockcast.workers.WorkerRole under `serve --workers N`
        self.node_id = worker.node_id if worker is not None else config.node_id or "node-" + uuid.uuid4().hex[:8]
        self.registry = CollectorRegistry()
        self.started_at = time.time()
        self.membership = LocalMembership()
        self.hooks = HookRegistry()  # replaced by the loaded plugins in start()
        self.bus = EventBus(shipment_of=self.membership.shipment_of,
                            on_error=lambda name, event: self.hooks.failed(name, type(event).__name__))
        self.bus.subscribe(Event, EventFanout(self.membership).deliver, name="fanout", inline=True)
        self.messaging: Messaging | None = None
        self.retired = Retired()
        self.loop_lag = LoopLag()
        self.rooms = Rooms(MediaSettings(ice_servers=config.ice_servers,
                                         max_mlines_per_offer=config.max_mlines_per_offer,
                                         transport_cc=config.transport_cc),
                           self.membership, self.bus,
                           lambda: self.hooks, lambda: self.messaging,
                           auto_create=config.auto_create_rooms, retired=self.retired,
                           empty_timeout_s=config.room_empty_timeout_s,
                           departure_timeout_s=config.room_departure_timeout_s,
                           participant_grace_s=config.participant_grace_s,
                           max_rooms=config.max_rooms,
                           max_participants_per_room=config.max_participants_per_room,
                           loop_lag=self.loop_lag, max_loop_lag_ms=config.max_loop_lag_ms)
        self.media = MediaRequests(
            self.rooms, max_tracks_per_participant=config.max_tracks_per_participant,
            max_subscriptions_per_participant=config.max_subscriptions_per_participant)
        self.admin = Admin(self.rooms, self.membership)
        verifier = TokenVerifier(config.keys, max_ttl=config.max_token_ttl_s or None)
        limits = Limits(max_frame_bytes=config.max_frame_bytes,
                        max_payload_bytes=config.max_payload_bytes,
                        rate=config.request_rate, burst=config.request_burst,
                        max_connections=config.max_connections)
        self.server = SignallingServer(
            verifier, NodeInfo(self.node_id, config.region, __version__), limits,
            registry=self.registry, membership=self.membership)
        self.registry.register(MediaCollector(lambda: self.rooms.media.values(), self.retired,
                                              self.membership, lambda: self.messaging,
                                              refusals=self.rooms.refusals, loop_lag=self.loop_lag))
        self.port: int | None = None
        self.serving = False  # start() has finished: /healthz answers 200
        self.cluster: Any = None  # dockcast.cluster.Cluster with --redis
        self._tasks: set[asyncio.Task] = set()
        for name, handler in {"leave": self.rooms.on_leave,
                              **self.media.handlers(), **self.admin.handlers()}.items():
            self.server.route(name, handler)
        self.server.on_disconnect(self.rooms.disconnected)
        # /dev mints demo tokens only on the development key `dockcast serve` made
        install_routes(self.server.http, self.registry, lambda: self.server.draining,
                       dev_key=development_key(config.data_path, config.api_key, config.api_secret),
                       starting=lambda: not self.serving)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> int:
        """Open the stores, start the plugins (they register routes, events, followers),
        let the followers catch up, serve."""
        tls = tls_context(self.config)  # a bad certificate stops us before anything opened
        ice.use_host_addresses(self.config.announced_ice_addresses)
        ice.use_rfc7675_consent()
        forward.set_fanout_threads(self.config.resolved_fanout_threads)
        self.loop_lag.start()
        if self.config.redis:  # a cluster: the room log is shared by every node
            from signalling.messages import RedisRoomLog

            log = RedisRoomLog(self.config.redis, self._retention())
            try:
                problems = await log.config_problems()
            except DurableDbError as exc:  # Redis unreachable: nothing can work
                await log.close()
                raise ConfigError(f"redis: cannot use the cluster's Redis: {exc}") from exc
            for problem in problems:
                logger.warning("redis: %s (messages answered `sent` could be lost)", problem)
        else:
            try:
                log = SqliteRoomLog(self.config.data_path / "messages.db", self._retention())
            except DurableDbError as exc:  # a corrupt file: the operator must look, not us
                raise ConfigError(f"room log: {exc}") from exc
        self.messaging = Messaging(log, self.membership, bus=self.bus)
        self.server.route("send", self.messaging.on_send)
        self.server.route("ack", self.messaging.on_ack)
        try:
            self.hooks = HookRegistry(self._load_plugins(), metrics_registry=self.registry)
            await self.hooks.start(NodePluginContext(self))
            for follower in self.messaging.followers:
                await follower.start()
        except BaseException:
            await self._stop_followers(drain=False)
            await self.messaging.close()
            raise
        # a worker listens on its own port (where redirects send) and joins its siblings
        # before it takes a share of the common port: until it knows them it would place
        # every room on itself
        own_port = self.worker.port if self.worker is not None else self.config.port
        self.port = await self.server.start(self.config.host, own_port, ssl=tls)
        if self.config.redis:
            from .cluster import Cluster

            self.cluster = Cluster(self)
            try:
                await self.cluster.start(self.port)
            except (SfuError, OSError) as exc:  # the directory or the trunk port
                await self.server.close()
                raise ConfigError(f"cluster: cannot join: {exc}") from exc
        if self.worker is not None and self.cluster is not None:
            missing = await self.cluster.wait_for_nodes(self.worker.sibling_ids, SIBLINGS_WAIT_S)
            if missing:
                logger.warning("workers: %s not in the directory after %.0f s; serving without them "
                               "(their rooms are placed here meanwhile)", ", ".join(missing),
                               SIBLINGS_WAIT_S)
            await self.server.listen_also(self.config.host, self.config.port, ssl=tls, reuse_port=True)
        self._spawn(self._prune_periodically())
        self.serving = True
        logger.info("node %s serving on %s://%s:%d/ws%s", self.node_id, "wss" if tls else "ws",
                    self.config.host, self.port,
                    f" and on the workers' port {self.config.port}" if self.worker is not None else "",
                    extra={"node": self.node_id, "region": self.config.region,
                           "plugins": [p.name or type(p).__name__ for p in self.hooks.plugins]})
        return self.port

    def follow_messages(self, name: str, handler: Any) -> LogFollower:
        """A plugin's follower of the room log (see `PluginContext.follow_messages`)."""
        if self.messaging is None:
            raise RuntimeError("the room log is not open yet")
        if any(f.name == name for f in self.messaging.followers):
            raise ValueError(f"a message follower named {name!r} exists already")
        follower = LogFollower(self.messaging.log, name, handler,
                               shipment_of=self.membership.shipment_of)
        self.messaging.add_follower(follower)
        return follower

    async def stop(self) -> None:
        """Drain: refuse new requests, close every room (peers, producers), stop
        serving, hand the queued events to the plugins, then stop the followers and the
        plugins and close the room log."""
        self.server.draining = True
        self.loop_lag.stop()
        await self.rooms.close_all("node_stopping")
        if self.cluster is not None:
            await self.cluster.stop()
        await self.server.close()
        await self.media.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.bus.drain()
        await self._stop_followers(drain=True)
        await self.hooks.stop()
        if self.messaging is not None:
            await self.messaging.close()
        logger.info("node %s stopped", self.node_id)

    async def _stop_followers(self, drain: bool) -> None:
        for follower in self.messaging.followers if self.messaging is not None else ():
            if drain:
                try:
                    async with asyncio.timeout(FOLLOWER_DRAIN_S):
                        await follower.wait_idle()
                except TimeoutError:
                    logger.warning("%s had not caught up at stop; it resumes at the next start",
                                   follower.name)
            await follower.stop()

    def _retention(self) -> RetentionPolicy:
        c = self.config
        return RetentionPolicy(max_age_s=c.message_max_age_s or None,
                               max_messages=c.message_max_count or None,
                               max_bytes=c.message_max_bytes or None,
                               drop_unacked=c.message_drop_unacked,
                               member_idle_s=c.message_member_idle_s or None)

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

