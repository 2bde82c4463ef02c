"""A plugin context with real media rooms: ``sfu.Room`` objects whose tracks are fed by
``sfu.local.LocalPublisher`` with real VP8/Opus RTP (no network), tapped the way the
node taps them (``dockcast.plugin_context.tap_producer``)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from dockcast.plugin_context import tap_producer
from dockcast.rooms import MEDIA_EVENTS
from plugins.inspection import InspectionPlugin
from sfu.local import LocalPublisher
from sfu.producer import CodecInfo
from sfu.room import Room
from signalling.events import RoomClosed, RoomCreated
from signalling.hooks import HookRegistry
from signalling.tokens import Claims, Grants

from plugin_support import RecordingContext

VP8 = CodecInfo("video/VP8", 90000, 96)
OPUS = CodecInfo("audio/opus", 48000, 111, 2)


class Publication:
    """What `PluginContext.publish_local` returns, on an ``sfu`` room."""

    def __init__(self, room: Room, identity: str) -> None:
        self.publisher = LocalPublisher(room, identity)
        self.participant_id = self.publisher.participant.id

    def add_track(self, kind, codec, clock_rate, payload_type, *, channels=None, name=None):
        return self.publisher.publish(kind, CodecInfo(codec, clock_rate, payload_type, channels),
                                      name=name)

    async def close(self) -> None:
        await self.publisher.close()


class Conn:
    """A connection whose token has ``grants`` (admin by default) and maybe a ``room``
    claim, as the session core makes them."""

    def __init__(self, identity: str = "wms", room: str | None = None, **grants: bool) -> None:
        self.identity = identity
        self.grants = Grants(**(grants or {"admin": True}))
        self.claims = Claims(identity=identity, name=None, room=room, grants=self.grants,
                             shipment=None, exp=2e9, nbf=None, issuer="test")


ADMIN = Conn()


class MediaContext(RecordingContext):
    def __init__(self, data_dir: pathlib.Path) -> None:
        super().__init__(data_dir)
        self.media: dict[str, Room] = {}

    async def open_room(self, name: str, shipment_id: str | None = None, record: bool = False) -> Room:
        room = Room(name)
        room.on_event = self._media_event  # as the node does: sfu events -> typed events
        self.media[name] = room
        self.rooms[name] = {"room": name, "shipment_id": shipment_id, "record": record,
                            "created_at": room.created_at, "participants": []}
        await self.events.publish(RoomCreated(room=name, shipment_id=shipment_id))
        return room

    def _media_event(self, event: Any) -> None:
        typed = MEDIA_EVENTS[type(event)](event)
        if typed is not None:
            self.events.publish(typed)

    async def close_room(self, name: str) -> None:
        room = self.media.pop(name)
        self.rooms.pop(name)
        await room.close()
        await self.events.publish(RoomClosed(room=name, reason="closed"))

    async def request(self, msg_type: str, conn: Any = ADMIN, **fields: Any) -> dict:
        return await super().request(msg_type, conn, **fields)

    def room_tracks(self, room: str) -> list[dict]:
        media = self.media.get(room)
        return media.tracks() if media is not None else []

    def tap_track(self, room: str, track_id: str, sink: Any):
        return tap_producer(self.media.get(room), room, track_id, sink)

    def publish_local(self, room: str, identity: str, name: str | None = None) -> Publication:
        return Publication(self.media[room], identity)


@pytest.fixture
def ctx(tmp_path) -> MediaContext:
    return MediaContext(tmp_path / "data")


@pytest.fixture
async def start_plugin(ctx):
    """``await start_plugin(**options)``: an InspectionPlugin started on ``ctx``."""
    registries = []

    async def start(**options) -> InspectionPlugin:
        plugin = InspectionPlugin(**{"checkpoint_interval_s": 3600.0, **options})
        registry = HookRegistry([plugin])
        await registry.start(ctx)
        registries.append(registry)
        return plugin

    yield start
    for registry in registries:
        await registry.stop()
