"""The plugin registry: order, isolation, room_create_check, loading by name."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pathlib
import sys
import textwrap

import pytest
from prometheus_client import CollectorRegistry

from dockcast.hooks import HookRegistry, Plugin, PluginContext, PluginError, load_plugins
from signalling.errors import Conflict
from signalling.roomlog import StoredMessage


class Recorder(Plugin):
    """Writes every hook call into a shared journal."""

    def __init__(self, name: str, journal: list) -> None:
        self.name = name
        self.journal = journal

    async def start(self, ctx):
        self.journal.append((self.name, "start"))

    async def stop(self):
        self.journal.append((self.name, "stop"))

    async def room_created(self, room):
        self.journal.append((self.name, "room_created", room))

    async def room_closed(self, room, reason):
        self.journal.append((self.name, "room_closed", room, reason))

    async def participant_joined(self, room, participant):
        self.journal.append((self.name, "participant_joined", room, participant["participant_id"]))

    async def participant_left(self, room, participant_id):
        self.journal.append((self.name, "participant_left", room, participant_id))

    async def track_published(self, room, track):
        self.journal.append((self.name, "track_published", room, track["track_id"]))

    async def track_unpublished(self, room, track_id):
        self.journal.append((self.name, "track_unpublished", room, track_id))

    async def message(self, room, message):
        self.journal.append((self.name, "message", room, message.seq))

    async def event_published(self, msg, room, shipment_id):
        self.journal.append((self.name, "event_published", msg["type"], room, shipment_id))

    async def join_info(self, room):
        return {self.name: room}


class Broken(Plugin):
    name = "broken"

    async def room_created(self, room):
        raise RuntimeError("boom")

    async def message(self, room, message):
        await asyncio.sleep(3600)

    async def join_info(self, room):
        return ["not", "a", "dict"]


class Minimal(Plugin):
    pass


class Context:
    """The smallest PluginContext: enough for the registry, which never calls it."""

    data_dir = pathlib.Path(".")
    metrics_registry = None

    def route(self, type, handler):
        pass

    async def broadcast(self, room, msg):
        pass

    async def publish_event(self, msg, room=None, shipment_id=None):
        pass

    def room_names(self):
        return []

    def room_info(self, room):
        return None


def test_context_protocol_is_checkable():
    assert isinstance(Context(), PluginContext)


async def test_hooks_run_in_registration_order():
    journal: list = []
    hooks = HookRegistry([Recorder("a", journal), Minimal(), Recorder("b", journal)])
    await hooks.start(Context())
    message = StoredMessage("dock", 7, "m", "alice", "t", None, 0.0)
    await hooks.room_created("dock")
    await hooks.participant_joined("dock", {"participant_id": "p1"})
    await hooks.track_published("dock", {"track_id": "t1"})
    await hooks.message("dock", message)
    await hooks.track_unpublished("dock", "t1")
    await hooks.participant_left("dock", "p1")
    await hooks.event_published({"type": "alert"}, room="dock", shipment_id="S1")
    await hooks.room_closed("dock", "closed_by_admin")
    await hooks.stop()
    calls = [
        ("start",), ("room_created", "dock"), ("participant_joined", "dock", "p1"),
        ("track_published", "dock", "t1"), ("message", "dock", 7),
        ("track_unpublished", "dock", "t1"), ("participant_left", "dock", "p1"),
        ("event_published", "alert", "dock", "S1"), ("room_closed", "dock", "closed_by_admin"),
    ]
    expected = [(name, *call) for call in calls for name in "ab"] + [("b", "stop"), ("a", "stop")]
    assert journal == expected


async def test_only_overriding_plugins_are_called():
    hooks = HookRegistry([Minimal()])
    assert not hooks.wants("message")
    hooks.register(Recorder("r", []))
    assert hooks.wants("message")


async def test_a_failing_plugin_is_logged_and_skipped(caplog):
    journal: list = []
    registry = CollectorRegistry()
    hooks = HookRegistry([Broken(), Recorder("after", journal)], hook_timeout_s=0.05,
                         metrics_registry=registry)
    with caplog.at_level(logging.ERROR, logger="dockcast.hooks"):
        await hooks.room_created("dock")
        await hooks.message("dock", StoredMessage("dock", 1, "m", "s", "t", None, 0.0))
        extras = await hooks.join_info("dock")
    assert journal == [("after", "room_created", "dock"), ("after", "message", "dock", 1)]
    assert extras == {"after": "dock"}
    records = [(r.plugin, r.hook) for r in caplog.records]
    assert records == [("broken", "room_created"), ("broken", "message"), ("broken", "join_info")]
    assert "boom" in caplog.text and "timed out" in caplog.text
    errors = registry.get_sample_value(
        "dockcast_plugin_hook_errors_total", {"plugin": "broken", "hook": "room_created"})
    assert errors == 1


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
    with caplog.at_level(logging.ERROR, logger="dockcast.hooks"):
        await hooks.stop()
    assert journal == [("a", "start"), ("a", "stop")]
    assert "badstop failed in stop" in caplog.text


def test_register_refuses_bad_plugins():
    hooks = HookRegistry([Recorder("a", [])])
    with pytest.raises(PluginError, match="already registered"):
        hooks.register(Recorder("a", []))
    with pytest.raises(PluginError, match="not a dockcast.hooks.Plugin"):
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
    from dockcast.hooks import Plugin

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
        ("dc_test_plugin:NotAPlugin", None, "is not a dockcast.hooks.Plugin subclass"),
        ("dc_test_plugin:Greeter", {"dc_test_plugin:Greeter": {"colour": "red"}}, "bad options"),
        ("unknown-entry", None, "no dockcast.plugins entry point"),
        ("broken", None, "entry point dc_test_plugin:Missing fails"),
        ("", None, "non-empty string"),
    ],
)
def test_load_errors_name_the_plugin(plugin_dir, name, options, match):
    with pytest.raises(PluginError, match=match):
        load_plugins([name], options)
