"""What plugins see of a node: the `signalling.hooks.PluginContext` it implements."""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sfu.local import LocalPublisher, LocalTrack
from sfu.producer import CodecInfo, Producer, ProducerTap
from sfu.room import Room
from signalling.bus import EventBus
from signalling.errors import NotFound
from signalling.hooks import MessageHandler, RouteHandler
from signalling.http import RequestHandler

if TYPE_CHECKING:
    from .node import Node

__all__ = ["NodePluginContext", "ProducerTapHandle", "LocalPublicationHandle", "tap_producer"]


@dataclass
class ProducerTapHandle:
    """A `signalling.hooks.TrackTap` on an `sfu.Producer`."""

    producer: Producer
    sink: ProducerTap
    info: Mapping[str, Any] = field(default_factory=dict)

    def request_keyframe(self) -> None:
        self.producer.request_keyframe()

    def remove(self) -> None:
        self.producer.remove_tap(self.sink)


def tap_producer(media_room: Room | None, room: str, track_id: str, sink: Any) -> ProducerTapHandle:
    """`PluginContext.tap_track` on a media room (``None``: the room is not open)."""
    producer = media_room.producers.get(track_id) if media_room is not None else None
    if producer is None or producer.closed:
        raise NotFound(f"track {track_id!r} is not published in room {room!r}")
    participant = media_room.participants.get(producer.participant_id)
    codec = producer.codec
    info = {**producer.describe(), "identity": participant.identity if participant else None,
            "clock_rate": codec.clock_rate, "payload_type": codec.payload_type,
            "channels": codec.channels}
    producer.add_tap(sink)
    return ProducerTapHandle(producer, sink, info)


class LocalPublicationHandle:
    """A `signalling.hooks.LocalPublication` over an `sfu.local.LocalPublisher`."""

    def __init__(self, node: Node, room: str, publisher: LocalPublisher) -> None:
        self._node = node
        self._room = room
        self.publisher = publisher
        self.participant_id = publisher.participant.id

    def add_track(self, kind: str, codec: str, clock_rate: int, payload_type: int, *,
                  channels: int | None = None, name: str | None = None) -> LocalTrack:
        return self.publisher.publish(kind, CodecInfo(codec, clock_rate, payload_type, channels),
                                      source="playback", name=name)

    async def close(self) -> None:
        await self.publisher.close()
        media_room = self._node.rooms.media.get(self._room)
        if media_room is self.publisher.room:  # the last one out starts the room's wait
            await self._node.rooms.close_if_empty(media_room)


class NodePluginContext:
    """The node's `PluginContext`: its data directory, metrics, event bus, routes,
    message followers and open rooms."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.data_dir: pathlib.Path = node.config.data_path
        self.metrics_registry: Any = node.registry
        self.events: EventBus = node.bus

    def route(self, type: str, handler: RouteHandler) -> None:
        self._node.server.route(type, handler)

    def http_route(self, path: str, handler: RequestHandler,
                   methods: Iterable[str] = ("GET", "HEAD")) -> None:
        self._node.server.http.add_request(path, handler, methods)

    def follow_messages(self, name: str, handler: MessageHandler) -> None:
        self._node.follow_messages(name, handler)

    async def send_message(self, room: str, topic: str, payload: Any, *, sender: str,
                           msg_id: str) -> int:
        if self._node.messaging is None:
            raise RuntimeError("the room log is not open yet")
        message = await self._node.messaging.send(room, sender, topic, payload, msg_id)
        return message.seq

    def room_names(self) -> list[str]:
        return self._node.rooms.room_names()

    def room_info(self, room: str) -> dict | None:
        return self._node.rooms.room_info(room)

    def room_tracks(self, room: str) -> list[dict]:
        media_room = self._node.rooms.media.get(room)
        return media_room.tracks() if media_room is not None else []

    def publish_local(self, room: str, identity: str, name: str | None = None) -> LocalPublicationHandle:
        media_room = self._node.rooms.media.get(room)
        if media_room is None or media_room.closed:
            raise NotFound(f"room {room!r} is not open")
        return LocalPublicationHandle(self._node, room, LocalPublisher(media_room, identity, name))

    def tap_track(self, room: str, track_id: str, sink: Any) -> ProducerTapHandle:
        return tap_producer(self._node.rooms.media.get(room), room, track_id, sink)
