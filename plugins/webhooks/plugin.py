"""`WebhooksPlugin`: the node's watcher events and room messages, to the endpoints."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from signalling.events import Audience, Event, MessageStored
from signalling.hooks import Plugin, PluginContext

from .config import RetryPolicy, WebhookEndpoint, WebhookError
from .dispatcher import WebhookDispatcher

__all__ = ["WebhooksPlugin", "message_event_id"]


def message_event_id(event: MessageStored) -> str:
    """The same id every time a room message is handed over (room, seq and msg_id)."""
    m = event.message
    return hashlib.sha256(f"{m.room}\x00{m.seq}\x00{m.msg_id}".encode()).hexdigest()[:32]


class WebhooksPlugin(Plugin):
    """Delivers every event that watchers see to the configured endpoints.

    ``endpoints``: `WebhookEndpoint` objects or config maps (`WebhookEndpoint.from_config`);
    ``retry``: a `RetryPolicy` or a map of its fields; ``db_path`` defaults to
    ``<data_dir>/webhooks.db``. With no endpoint, the plugin does nothing.
    """

    name = "webhooks"

    def __init__(
        self,
        endpoints: Iterable[WebhookEndpoint | Mapping[str, Any]] = (),
        retry: RetryPolicy | Mapping[str, Any] | None = None,
        db_path: str | Path | None = None,
        max_concurrency: int = 4,
    ) -> None:
        self.endpoints = [
            e if isinstance(e, WebhookEndpoint) else WebhookEndpoint.from_config(e) for e in endpoints
        ]
        if isinstance(retry, Mapping):
            try:
                retry = RetryPolicy(**retry)
            except TypeError as exc:
                raise WebhookError(f"bad retry settings: {exc}") from None
        self.retry = retry
        self.db_path = Path(db_path) if db_path is not None else None
        self.max_concurrency = max_concurrency
        self.dispatcher: WebhookDispatcher | None = None

    async def start(self, ctx: PluginContext) -> None:
        if not self.endpoints:
            return
        path = self.db_path or Path(ctx.data_dir) / "webhooks.db"
        self.dispatcher = WebhookDispatcher(
            path, self.endpoints, self.retry, max_concurrency=self.max_concurrency,
            metrics_registry=getattr(ctx, "metrics_registry", None),
        )
        await self.dispatcher.start()
        ctx.events.subscribe(Event, self.on_event, name=self.name, exclude=(MessageStored,))
        ctx.follow_messages(self.name, self.on_message)

    async def stop(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.close()
            self.dispatcher = None

    async def on_event(self, event: Event) -> None:
        if self.dispatcher is not None and Audience.WATCHERS in event.audience:
            await self.dispatcher.enqueue(event.to_wire(), event.room, event.shipment_id)

    async def on_message(self, event: MessageStored) -> None:
        if self.dispatcher is None:
            raise WebhookError("webhooks stopped; the message waits for the next start")
        await self.dispatcher.enqueue(event.to_wire(), event.room, event.shipment_id,
                                      event_id=message_event_id(event))
