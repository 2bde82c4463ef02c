"""A PluginContext that records what plugins send, for the plugin tests (the fixtures
in ``conftest.py`` build it).

Requests go through the real schema (``signalling.schema.validate``) and connections
carry real ``Grants``, so a handler sees what it will see in the node.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from signalling.bus import EventBus
from signalling.events import Event
from signalling.http import HttpReply, HttpRequest, HttpRoutes
from signalling.messages import MemoryRoomLog, StoredMessage
from signalling.schema import validate
from signalling.tokens import Grants


@dataclass
class Conn:
    identity: str = "wms"
    grants: Grants = field(default_factory=lambda: Grants(admin=True))


ADMIN = Conn()


class RecordingContext:
    """What the node offers plugins: a real event bus, with every event published on it
    kept in ``published``, the message followers plugins register, and the room
    messages they send (``messages``)."""

    def __init__(self, data_dir: pathlib.Path) -> None:
        self.data_dir = data_dir
        self.metrics_registry = CollectorRegistry()
        self.routes: dict[str, Any] = {}
        self.events = EventBus()
        self.published: list[Event] = []
        self.events.subscribe(Event, self.published.append, inline=True, name="recorder")
        self.followers: dict[str, Any] = {}
        self.rooms: dict[str, dict] = {}
        self.http_routes = HttpRoutes()
        self.room_log = MemoryRoomLog()
        self.messages: list[StoredMessage] = []

    def route(self, type: str, handler) -> None:
        assert type not in self.routes, f"{type} routed twice"
        self.routes[type] = handler

    def http_route(self, path: str, handler, methods=("GET", "HEAD")) -> None:
        self.http_routes.add_request(path, handler, methods)

    async def http(self, method: str, target: str, headers: dict[str, str] | None = None) -> HttpReply:
        """A plain HTTP request (``target``: path and query) answered by the routes plugins
        registered, as the node's server would."""
        return await self.http_routes.reply(HttpRequest.parse(method, target, (headers or {}).items()))

    def follow_messages(self, name: str, handler) -> None:
        assert name not in self.followers, f"{name} follows twice"
        self.followers[name] = handler

    async def send_message(self, room: str, topic: str, payload: Any, *, sender: str,
                           msg_id: str) -> int:
        """Stored in a real `MemoryRoomLog` (seq per room, deduped per sender and
        msg_id); each new message is kept in ``messages``."""
        result = await self.room_log.append(room, msg_id, sender, topic, payload, 0.0)
        if not result.duplicate:
            self.messages.append(result.message)
        return result.seq

    def room_names(self) -> list[str]:
        return list(self.rooms)

    def room_info(self, room: str) -> dict | None:
        return self.rooms.get(room)

    async def request(self, msg_type: str, conn: Conn = ADMIN, **fields: Any) -> dict:
        """Validate like the server does, then call the plugin's handler."""
        request = validate({"type": msg_type, "id": 1, **fields})
        return await self.routes[msg_type](conn, request)
