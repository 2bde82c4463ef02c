"""The plugin registry: plugins see the node through a context; the core imports none.

A plugin subclasses `Plugin`. In `Plugin.start` it registers what it handles through
the `PluginContext`: request types (`PluginContext.route`), the typed events it wants
(``ctx.events.subscribe(RoomClosed, self.on_room_closed, name=self.name)``: see
`signalling.events`; `signalling.bus` runs them in the room's lane, isolated and timed), and the room
messages it must see every one of, even across a crash (`PluginContext.follow_messages`:
from a durable cursor of its own, never delaying ``sent``). It sends room messages of its
own with `PluginContext.send_message` and publishes events with
``ctx.events.publish(ShipmentStatus(...))``: the members of the event's room, the
watchers and the other plugins get them.

Two hooks are calls rather than events, because the node waits for their answer; the
`HookRegistry` calls the plugins that override them, in registration order:
`Plugin.join_info` (extra ``joined`` fields; a failure is logged and skipped) and
`Plugin.room_create_check` (its error refuses ``room.create``, e.g. ``conflict``).
`Plugin.start` errors stop the node from starting (a plugin that cannot start is a
configuration error, better seen at once than as missing routes later).

    PluginError (also ValueError)   a plugin cannot be loaded, registered or started
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import logging
import pathlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from .errors import FixedCodeError
from .bus import EventBus
from .events import MessageStored
from .http import RequestHandler

__all__ = [
    "Plugin",
    "PluginContext",
    "HookRegistry",
    "PluginError",
    "RouteHandler",
    "MessageHandler",
    "TrackTap",
    "LocalPublication",
    "load_plugins",
    "plugin_name",
    "ENTRY_POINT_GROUP",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dockcast.plugins"

RouteHandler = Callable[[Any, Any], Awaitable[dict]]
"""``async def handler(conn, request) -> reply``: ``request.fields`` holds the validated
fields; ``conn.identity`` and ``conn.grants`` say who asks. Errors from
``signalling.errors`` become the wire ``error`` reply."""

MessageHandler = Callable[[MessageStored], Awaitable[None]]
"""``async def handler(event)``, once per stored room message, in ``seq`` order per
room; it is retried (with backoff) until it returns, so it must be idempotent."""


class PluginError(FixedCodeError, ValueError):
    """A plugin cannot be loaded, registered or started; the message names it."""

    code = "internal"


class TrackTap(Protocol):
    """A plugin's tap on one published track (`PluginContext.tap_track`)."""

    info: Mapping[str, Any]
    """The track: ``track_id``, ``participant_id``, ``identity``, ``kind``, ``source``,
    ``codec`` (mime type), ``clock_rate``, ``payload_type``, ``channels``."""

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (throttled with the subscribers' requests)."""

    def remove(self) -> None:
        """Stop tapping (idempotent; a closed track stops by itself)."""


class LocalPublication(Protocol):
    """A participant a plugin publishes tracks as, fed from inside the node
    (`PluginContext.publish_local`)."""

    participant_id: str

    def add_track(self, kind: str, codec: str, clock_rate: int, payload_type: int, *,
                  channels: int | None = None, name: str | None = None) -> Any:
        """Publish a track of source ``playback`` (``track_published`` goes out); returns
        it: ``.id``, ``.closed``, and ``.send(rtp: bytes) -> bool`` to forward one packet."""

    async def close(self) -> None:
        """Unpublish every track and leave the room."""


@runtime_checkable
class PluginContext(Protocol):
    """What the node offers plugins (`Plugin.start` receives it)."""

    data_dir: pathlib.Path
    """Where plugins keep their files (the node's ``--data-dir``)."""
    metrics_registry: Any
    """The node's ``prometheus_client.CollectorRegistry``."""
    events: EventBus
    """The node's event registry: subscribe by type, publish typed events."""

    def route(self, type: str, handler: RouteHandler) -> None:
        """Answer requests of ``type`` (a message type of the schema) with ``handler``."""

    def http_route(self, path: str, handler: RequestHandler,
                   methods: Iterable[str] = ("GET", "HEAD")) -> None:
        """Answer plain HTTP requests for the exact ``path`` (``/recordings/media``) asked
        with one of ``methods`` with ``await handler(request)``: the handler gets a
        `signalling.http.HttpRequest` (method, path, query, headers; never a body) and
        returns a `signalling.http.HttpReply`. The path is the plugin's to choose; it
        should not be one of the node's (``/``, ``/healthz``, ``/metrics``, ``/web/``...)."""

    def follow_messages(self, name: str, handler: MessageHandler) -> None:
        """Call ``handler`` for every room message stored from now on, in order per room,
        from a durable cursor named ``name`` (the messages it has not finished when the
        node stops are handed to it again at the next start)."""

    async def send_message(self, room: str, topic: str, payload: Any, *, sender: str,
                           msg_id: str) -> int:
        """Store a room message from ``sender`` (a name of the plugin's choosing, the
        message's ``from``) and deliver it like a member's ``send``: to every member, the
        watchers, the other plugins and the followers. Returns its ``seq``; the same
        ``sender`` and ``msg_id`` again is stored once and answered the first ``seq``
        (so a handler that is retried may send again). Raises the room log's errors
        (``bad_request`` for a name or payload it refuses, ``unavailable``)."""

    def room_names(self) -> list[str]:
        """The open rooms."""

    def room_info(self, room: str) -> dict | None:
        """The ``room`` reply fields of an open room; ``None`` when it is not open."""

    def room_tracks(self, room: str) -> list[dict]:
        """The tracks published in an open room (as ``joined.tracks``); ``[]`` when it
        is not open."""

    def publish_local(self, room: str, identity: str, name: str | None = None) -> LocalPublication:
        """Join an open room as ``identity`` with no peer connection, to publish tracks
        the plugin feeds (a recording played back). Raises ``NotFound``."""

    def tap_track(self, room: str, track_id: str, sink: Any) -> TrackTap:
        """Give ``sink`` every packet of a published track from now on, as it arrived:
        ``sink`` has the methods of ``sfu.ProducerTap`` (``rtp`` runs on the packet path
        and must only queue). Raises ``NotFound`` for a room or track that is not open."""


class Plugin:
    """Base class of plugins. Every method is optional; the defaults do nothing.

    ``name`` identifies the plugin in logs and metrics (default: the class name).
    """

    name: str = ""

    async def start(self, ctx: PluginContext) -> None:
        """The node starts (before it serves): open stores, register routes, subscribe."""

    async def stop(self) -> None:
        """The node stops (after it stopped serving and its events were handled)."""

    async def join_info(self, room: str) -> dict:
        """Extra fields for the ``joined`` reply of ``room`` (e.g. ``shipment``)."""
        return {}

    async def room_create_check(self, room: str, fields: Mapping[str, Any]) -> None:
        """``room.create`` is about to open ``room`` with the request's ``fields``.

        Raise a ``signalling.errors`` error to refuse it. A plugin may claim resources
        here (the shipments plugin binds the room); if the node then fails to open the
        room, or a plugin checked after this one refuses it, a `RoomClosed` event with
        reason ``"create_failed"`` follows.
        """


def plugin_name(plugin: Plugin) -> str:
    return plugin.name or type(plugin).__name__


_HOOKS = ("join_info", "room_create_check")


class HookRegistry:
    """The node's plugins: started and stopped in order, asked in order, failures isolated."""

    def __init__(
        self,
        plugins: Iterable[Plugin] = (),
        *,
        hook_timeout_s: float | None = 10.0,
        metrics_registry: Any = None,
    ) -> None:
        self.hook_timeout_s = hook_timeout_s
        self._plugins: list[Plugin] = []
        self._started: list[Plugin] = []
        # Per hook, only the plugins that override it: a hook nobody wants costs nothing.
        self._wanting: dict[str, list[Plugin]] = {hook: [] for hook in _HOOKS}
        self.errors = None
        if metrics_registry is not None:
            from prometheus_client import Counter

            self.errors = Counter(
                "dockcast_plugin_hook_errors",
                "Plugin hooks and event handlers that raised or timed out",
                ["plugin", "hook"],
                registry=metrics_registry,
            )
        for plugin in plugins:
            self.register(plugin)

    @property
    def plugins(self) -> tuple[Plugin, ...]:
        return tuple(self._plugins)

    def get(self, name: str) -> Plugin | None:
        """The registered plugin called ``name``, if any."""
        return next((p for p in self._plugins if plugin_name(p) == name), None)

    def register(self, plugin: Plugin) -> Plugin:
        """Add a plugin (before `start`); its name must be unique."""
        if not isinstance(plugin, Plugin):
            raise PluginError(f"{plugin!r} is not a signalling.hooks.Plugin")
        if self._started:
            raise PluginError(f"cannot register {plugin_name(plugin)}: plugins already started")
        if self.get(plugin_name(plugin)) is not None:
            raise PluginError(f"a plugin named {plugin_name(plugin)!r} is already registered")
        self._plugins.append(plugin)
        for hook in _HOOKS:
            if getattr(type(plugin), hook) is not getattr(Plugin, hook):
                self._wanting[hook].append(plugin)
        return plugin

    def wants(self, hook: str) -> bool:
        """Whether any plugin overrides ``hook``."""
        return bool(self._wanting[hook])

    async def start(self, ctx: PluginContext) -> None:
        """Start every plugin in order. If one fails, stop those started and raise."""
        for plugin in self._plugins:
            try:
                await plugin.start(ctx)
            except Exception as exc:
                log.error("plugin %s failed to start: %s", plugin_name(plugin), exc,
                          extra={"plugin": plugin_name(plugin)})
                await self.stop()
                raise PluginError(f"plugin {plugin_name(plugin)} failed to start: {exc}") from exc
            self._started.append(plugin)

    async def stop(self) -> None:
        """Stop the started plugins in reverse order; failures are logged."""
        while self._started:
            plugin = self._started.pop()
            await self._guarded(plugin, "stop", plugin.stop())

    async def join_info(self, room: str) -> dict:
        """The plugins' extra ``joined`` fields, merged (a later plugin wins a clash).

        The node should merge them under its own fields: ``{**extras, **core}``.
        """
        extras: dict = {}
        for plugin in self._wanting["join_info"]:
            ok, value = await self._guarded(plugin, "join_info", plugin.join_info(room))
            if not ok:
                continue
            if not isinstance(value, Mapping):
                self.failed(plugin_name(plugin), "join_info", TypeError(f"returned {type(value).__name__}"))
                continue
            extras.update(value)
        return extras

    async def room_create_check(self, room: str, fields: Mapping[str, Any]) -> None:
        """Let every plugin refuse ``room.create``; the first error propagates."""
        for plugin in self._wanting["room_create_check"]:
            await self._timed(plugin.room_create_check(room, fields))

    async def _timed(self, coro: Awaitable[Any]) -> Any:
        if self.hook_timeout_s is None:
            return await coro
        async with asyncio.timeout(self.hook_timeout_s):
            return await coro

    async def _guarded(self, plugin: Plugin, hook: str, coro: Awaitable[Any]) -> tuple[bool, Any]:
        try:
            return True, await self._timed(coro)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plugin must not break the core
            self.failed(plugin_name(plugin), hook, exc)
            return False, None

    def failed(self, name: str, hook: str, exc: BaseException | None = None) -> None:
        """Log a plugin's failure in ``hook`` and count it (``exc`` None: already logged)."""
        if isinstance(exc, TimeoutError):
            log.error("plugin %s timed out in %s", name, hook, extra={"plugin": name, "hook": hook})
        elif exc is not None:
            log.error("plugin %s failed in %s", name, hook, exc_info=exc,
                      extra={"plugin": name, "hook": hook})
        if self.errors is not None:
            self.errors.labels(name, hook).inc()


def load_plugins(
    names: Iterable[str], options: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Plugin]:
    """Instantiate plugins by name, in order.

    A name is either ``"package.module:Class"`` or the name of an entry point in the
    ``dockcast.plugins`` group. ``options[name]`` holds keyword arguments for the
    plugin's constructor. Raises `PluginError` naming the plugin that cannot load.
    """
    options = options or {}
    plugins = []
    for name in names:
        cls = _resolve(name)
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            raise PluginError(f"plugin {name!r}: {cls!r} is not a signalling.hooks.Plugin subclass")
        kwargs = options.get(name, {})
        try:
            plugins.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:
            raise PluginError(f"plugin {name!r}: bad options: {exc}") from exc
    return plugins


def _resolve(name: str) -> Any:
    if not isinstance(name, str) or not name.strip():
        raise PluginError(f"plugin name must be a non-empty string, not {name!r}")
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PluginError(f"plugin {name!r}: cannot import {module_name}: {exc}") from exc
        try:
            target: Any = module
            for part in attr.split("."):
                target = getattr(target, part)
        except AttributeError:
            raise PluginError(f"plugin {name!r}: {module_name} has no {attr}") from None
        return target
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        raise PluginError(
            f"plugin {name!r}: not 'module:Class' and no {ENTRY_POINT_GROUP} entry point of that name"
        )
    entry_point = next(iter(found))
    try:
        return entry_point.load()
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"plugin {name!r}: entry point {entry_point.value} fails: {exc}") from exc
