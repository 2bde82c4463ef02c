"""The plugin registry: plugins see the node's lifecycle; the core never imports one.

A plugin subclasses `Plugin` and overrides the hooks it needs (all optional, all
coroutines). The node holds a `HookRegistry` and calls it at each lifecycle point; the
registry calls the plugins that override that hook, in registration order. A plugin
that raises (or overruns ``hook_timeout_s``) is logged with its name and skipped: the
core and the other plugins carry on. Two hooks differ: `Plugin.room_create_check`
errors propagate (it is how a plugin refuses a room, e.g. ``conflict``), and
`Plugin.start` errors stop the node from starting (a plugin that cannot start is a
configuration error, better seen at once than as missing routes later).

Plugins reach the node through `PluginContext`, which the node implements: register
request handlers, send events to rooms and watchers, read room state, metrics.

    PluginError (also ValueError)   a plugin cannot be loaded, registered or started
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import logging
import pathlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from signalling.roomlog import StoredMessage

__all__ = [
    "Plugin",
    "PluginContext",
    "HookRegistry",
    "PluginError",
    "RouteHandler",
    "load_plugins",
    "ENTRY_POINT_GROUP",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dockcast.plugins"

RouteHandler = Callable[[Any, Any], Awaitable[dict]]
"""``async def handler(conn, request) -> reply``: ``request.fields`` holds the validated
fields; ``conn.identity`` and ``conn.grants`` say who asks. Errors from
``signalling.errors`` become the wire ``error`` reply."""


class PluginError(ValueError):
    """A plugin cannot be loaded, registered or started; the message names it."""


@runtime_checkable
class PluginContext(Protocol):
    """What the node offers plugins (`Plugin.start` receives it)."""

    data_dir: pathlib.Path
    """Where plugins keep their files (the node's ``--data-dir``)."""
    metrics_registry: Any
    """The node's ``prometheus_client.CollectorRegistry``."""

    def route(self, type: str, handler: RouteHandler) -> None:
        """Answer requests of ``type`` (a message type of the schema) with ``handler``."""

    async def broadcast(self, room: str, msg: dict) -> None:
        """Send the event ``msg`` to every member of ``room`` (none: nothing happens)."""

    async def publish_event(
        self, msg: dict, room: str | None = None, shipment_id: str | None = None
    ) -> None:
        """Send ``msg`` to the ``events.subscribe`` watchers of ``room``/``shipment_id``
        and to `Plugin.event_published` (webhooks)."""

    def room_names(self) -> list[str]:
        """The open rooms."""

    def room_info(self, room: str) -> dict | None:
        """The ``room`` reply fields of an open room; ``None`` when it is not open."""


class Plugin:
    """Base class of plugins. Every hook is optional; the defaults do nothing.

    ``name`` identifies the plugin in logs and metrics (default: the class name).
    """

    name: str = ""

    async def start(self, ctx: PluginContext) -> None:
        """The node starts (before it serves): open stores, register routes."""

    async def stop(self) -> None:
        """The node stops (after it stopped serving): flush and close."""

    async def room_created(self, room: str) -> None:
        """A room opened (by ``room.create`` or by a first ``join``)."""

    async def room_closed(self, room: str, reason: str) -> None:
        """A room closed; ``reason`` as in the ``room_closed`` event."""

    async def participant_joined(self, room: str, participant: dict) -> None:
        """A participant joined; ``participant`` as in ``participant_joined``."""

    async def participant_left(self, room: str, participant_id: str) -> None:
        """A participant left or was removed."""

    async def track_published(self, room: str, track: dict) -> None:
        """A track was published; ``track`` as in ``track_published``."""

    async def track_unpublished(self, room: str, track_id: str) -> None:
        """A track was unpublished."""

    async def message(self, room: str, message: StoredMessage) -> None:
        """A room message was durably stored (called once per ``seq``)."""

    async def event_published(
        self, msg: dict, room: str | None, shipment_id: str | None
    ) -> None:
        """An event went to watchers through `PluginContext.publish_event`."""

    async def join_info(self, room: str) -> dict:
        """Extra fields for the ``joined`` reply of ``room`` (e.g. ``shipment``)."""
        return {}

    async def room_create_check(self, room: str, fields: Mapping[str, Any]) -> None:
        """``room.create`` is about to open ``room`` with the request's ``fields``.

        Raise a ``signalling.errors`` error to refuse it. A plugin may claim resources
        here (the shipments plugin binds the room); if the node then fails to open the
        room, or a plugin checked after this one refuses it, it calls `room_closed` with
        reason ``"create_failed"``.
        """


def plugin_name(plugin: Plugin) -> str:
    return plugin.name or type(plugin).__name__


_HOOKS = (
    "room_created",
    "room_closed",
    "participant_joined",
    "participant_left",
    "track_published",
    "track_unpublished",
    "message",
    "event_published",
    "join_info",
    "room_create_check",
)


class HookRegistry:
    """The node's plugins, called in registration order with failures isolated."""

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
        self._errors = None
        if metrics_registry is not None:
            from prometheus_client import Counter

            self._errors = Counter(
                "dockcast_plugin_hook_errors",
                "Plugin hooks that raised or timed out",
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
            raise PluginError(f"{plugin!r} is not a dockcast.hooks.Plugin")
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
        """Whether any plugin overrides ``hook`` (the node may skip building arguments)."""
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

    async def room_created(self, room: str) -> None:
        await self._call("room_created", room)

    async def room_closed(self, room: str, reason: str) -> None:
        await self._call("room_closed", room, reason)

    async def participant_joined(self, room: str, participant: dict) -> None:
        await self._call("participant_joined", room, participant)

    async def participant_left(self, room: str, participant_id: str) -> None:
        await self._call("participant_left", room, participant_id)

    async def track_published(self, room: str, track: dict) -> None:
        await self._call("track_published", room, track)

    async def track_unpublished(self, room: str, track_id: str) -> None:
        await self._call("track_unpublished", room, track_id)

    async def message(self, room: str, message: StoredMessage) -> None:
        await self._call("message", room, message)

    async def event_published(
        self, msg: dict, room: str | None = None, shipment_id: str | None = None
    ) -> None:
        await self._call("event_published", msg, room, shipment_id)

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
                self._failed(plugin, "join_info", TypeError(f"returned {type(value).__name__}"))
                continue
            extras.update(value)
        return extras

    async def room_create_check(self, room: str, fields: Mapping[str, Any]) -> None:
        """Let every plugin refuse ``room.create``; the first error propagates."""
        for plugin in self._wanting["room_create_check"]:
            await self._timed(plugin.room_create_check(room, fields))

    async def _call(self, hook: str, *args: Any) -> None:
        for plugin in self._wanting[hook]:
            await self._guarded(plugin, hook, getattr(plugin, hook)(*args))

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
            self._failed(plugin, hook, exc)
            return False, None

    def _failed(self, plugin: Plugin, hook: str, exc: BaseException) -> None:
        name = plugin_name(plugin)
        if isinstance(exc, TimeoutError):
            log.error("plugin %s timed out in %s", name, hook, extra={"plugin": name, "hook": hook})
        else:
            log.error("plugin %s failed in %s", name, hook, exc_info=exc,
                      extra={"plugin": name, "hook": hook})
        if self._errors is not None:
            self._errors.labels(name, hook).inc()


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
            raise PluginError(f"plugin {name!r}: {cls!r} is not a dockcast.hooks.Plugin subclass")
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
