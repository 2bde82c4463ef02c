"""The plugin registry: start/stop order, the two asking hooks, loading by name."""

from __future__ import annotations

import importlib
import logging
import pathlib
import sys
import textwrap

import pytest
from prometheus_client import CollectorRegistry

from signalling.errors import Conflict
from signalling.bus import EventBus
from signalling.events import RoomClosed
from signalling.hooks import HookRegistry, Plugin, PluginContext, PluginError, load_plugins


class Recorder(Plugin):
    """Writes its start, stop and the events it subscribed to into a shared journal."""

    def __init__(self, name: str, journal: list) -> None:
        self.name = name
        self.journal = journal

    async def start(self, ctx):
        self.journal.append((self.name, "start"))
        ctx.events.subscribe(RoomClosed, self.on_room_closed, name=self.name)

    async def stop(self):
        self.journal.append((self.name, "stop"))

    async def on_room_closed(self, event):
        self.journal.append((self.name, "room_closed", event.room, event.reason))

    async def join_info(self, room):
        return {self.name: room}


class Broken(Plugin):
    name = "broken"

    async def join_info(self, room):
        return ["not", "a", "dict"]


class Slow(Plugin):
    name = "slow"

    async def join_info(self, room):
        import asyncio

        await asyncio.sleep(3600)


class Minimal(Plugin):
    pass


class Context:
    """The smallest PluginContext."""

    data_dir = pathlib.Path(".")
    metrics_registry = None

    def __init__(self) -> None:
        self.events = EventBus()
        self.followers: list = []

    def route(self, type, handler):
        pass

    def http_route(self, path, handler, methods=("GET", "HEAD")):
        pass

    def follow_messages(self, name, handler):
        self.followers.append((name, handler))

    async def send_message(self, room, topic, payload, *, sender, msg_id):
        raise NotImplementedError

    def room_names(self):
        return []

    def room_info(self, room):
        return None

    def room_tracks(self, room):
        return []

    def tap_track(self, room, track_id, sink):
        raise NotImplementedError

    def publish_local(self, room, identity, name=None):
        raise NotImplementedError


def test_context_protocol_is_checkable():
    assert isinstance(Context(), PluginContext)


async def test_plugins_start_in_order_subscribe_and_stop_in_reverse():
    journal: list = []
    ctx = Context()
    hooks = HookRegistry([Recorder("a", journal), Minimal(), Recorder("b", journal)])
    await hooks.start(ctx)
    await ctx.events.publish(RoomClosed(room="dock", reason="closed"))
    await hooks.stop()
    assert journal == [("a", "start"), ("b", "start"), ("a", "room_closed", "dock", "closed"),
                       ("b", "room_closed", "dock", "closed"), ("b", "stop"), ("a", "stop")]


async def test_only_overriding_plugins_are_asked():
    hooks = HookRegistry([Minimal()])
    assert not hooks.wants("join_info")
    hooks.register(Recorder("r", []))
    assert hooks.wants("join_info") and not hooks.wants("room_create_check")


async def test_a_failing_or_slow_plugin_is_logged_counted_and_skipped(caplog):
    registry = CollectorRegistry()
    hooks = HookRegistry([Broken(), Slow(), Recorder("after", [])], hook_timeout_s=0.05,
                         metrics_registry=registry)
    with caplog.at_level(logging.ERROR, logger="signalling.hooks"):
        extras = await hooks.join_info("dock")
    assert extras == {"after": "dock"}
    assert [(r.plugin, r.hook) for r in caplog.records] == [("broken", "join_info"), ("slow", "join_info")]
    assert "timed out" in caplog.text
    for plugin in ("broken", "slow"):
        assert registry.get_sample_value(
            "dockcast_plugin_hook_errors_total", {"plugin": plugin, "hook": "join_info"}) == 1


async def test_join_info_merges_in_order():
    class Shipment(Plugin):
        name = "shipment"

        async def join_info(self, room):
            return {"shipment": {"shipment_id": "S1"}, "shared": 1}

    class Later(Plugin):
        async def join_info(self, room):
            return {"shared": 2}

    assert await HookRegistry([Shipment(), Later()]).join_info("dock") == {
        "shipment": {"shipment_id": "S1"}, "shared": 2}
    assert await HookRegistry().join_info("dock") == {}


async def test_room_create_check_errors_propagate():
    seen = []

    class Refuses(Plugin):
        async def room_create_check(self, room, fields):
            seen.append("refuses")
            raise Conflict(f"shipment {fields['shipment_id']} is bound to another room")

    class Next(Plugin):
        async def room_create_check(self, room, fields):
            seen.append("next")

    hooks = HookRegistry([Refuses(), Next()])
    with pytest.raises(Conflict, match="bound to another room"):
        await hooks.room_create_check("dock", {"shipment_id": "S1"})
    assert seen == ["refuses"]


async def test_start_failure_stops_the_started_and_raises():
    journal: list = []

    class NoStart(Plugin):
        name = "nostart"

        async def start(self, ctx):
            raise OSError("data dir not writable")

    hooks = HookRegistry([Recorder("a", journal), NoStart(), Recorder("b", journal)])
    with pytest.raises(PluginError, match="nostart failed to start: data dir not writable"):
        await hooks.start(Context())
    assert journal == [("a", "start"), ("a", "stop")]


async def test_stop_failures_are_isolated(caplog):
    journal: list = []

    class BadStop(Plugin):
        name = "badstop"

        async def stop(self):
            raise RuntimeError("flush failed")

    hooks = HookRegistry([Recorder("a", journal), BadStop()])
    await hooks.start(Context())
    with caplog.at_level(logging.ERROR, logger="signalling.hooks"):
        await hooks.stop()
    assert journal == [("a", "start"), ("a", "stop")]
    assert "badstop failed in stop" in caplog.text


def test_register_refuses_bad_plugins():
    hooks = HookRegistry([Recorder("a", [])])
    with pytest.raises(PluginError, match="already registered"):
        hooks.register(Recorder("a", []))
    with pytest.raises(PluginError, match="not a signalling.hooks.Plugin"):
        hooks.register(object())  # type: ignore[arg-type]
    assert hooks.get("a") is hooks.plugins[0]
    assert hooks.get("Minimal") is None


async def test_register_after_start_is_refused():
    hooks = HookRegistry([Minimal()])
    await hooks.start(Context())
    with pytest.raises(PluginError, match="already started"):
        hooks.register(Recorder("late", []))


# -- loading ----------------------------------------------------------------------------

PLUGIN_MODULE = textwrap.dedent(
    """
    from signalling.hooks import Plugin

    class Greeter(Plugin):
        name = "greeter"

        def __init__(self, greeting="hello"):
            self.greeting = greeting

    class NotAPlugin:
        pass
    """
)


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    (tmp_path / "dc_test_plugin.py").write_text(PLUGIN_MODULE)
    dist = tmp_path / "dc_test_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dc-test-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[dockcast.plugins]\ngreeter = dc_test_plugin:Greeter\nbroken = dc_test_plugin:Missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    sys.modules.pop("dc_test_plugin", None)


def test_load_by_module_path_with_options(plugin_dir):
    [default, custom] = load_plugins(
        ["dc_test_plugin:Greeter", "dc_test_plugin:Greeter"],
        {"dc_test_plugin:Greeter": {"greeting": "ni hao"}},
    )
    assert default.greeting == custom.greeting == "ni hao"
    [plain] = load_plugins(["dc_test_plugin:Greeter"])
    assert plain.greeting == "hello"


def test_load_by_entry_point(plugin_dir):
    [plugin] = load_plugins(["greeter"], {"greeter": {"greeting": "hola"}})
    assert (plugin.name, plugin.greeting) == ("greeter", "hola")


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("no_such_module_xyz:Thing", None, "cannot import no_such_module_xyz"),
        ("dc_test_plugin:Missing", None, "dc_test_plugin has no Missing"),
        ("dc_test_plugin:NotAPlugin", None, "is not a signalling.hooks.Plugin subclass"),
        ("dc_test_plugin:Greeter", {"dc_test_plugin:Greeter": {"colour": "red"}}, "bad options"),
        ("unknown-entry", None, "no dockcast.plugins entry point"),
        ("broken", None, "entry point dc_test_plugin:Missing fails"),
        ("", None, "non-empty string"),
    ],
)
def test_load_errors_name_the_plugin(plugin_dir, name, options, match):
    with pytest.raises(PluginError, match=match):
        load_plugins([name], options)
