"""What plugins see of a node: the `signalling.hooks.PluginContext` it implements."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Any

from signalling.bus import EventBus
from signalling.hooks import MessageHandler, RouteHandler

if TYPE_CHECKING:
    from .node import Node

__all__ = ["NodePluginContext"]


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

    def follow_messages(self, name: str, handler: MessageHandler) -> None:
        self._node.follow_messages(name, handler)

    def room_names(self) -> list[str]:
        return self._node.rooms.room_names()

    def room_info(self, room: str) -> dict | None:
        return self._node.rooms.room_info(room)
