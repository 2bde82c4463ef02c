"""Signed webhooks: the node's events POSTed to HTTP endpoints, at least once.

For each event that goes to watchers (the typed events of `signalling.events` whose
audience includes the watchers: room, shipment and recording events from the event bus,
and every stored room message, which the plugin follows from the room log with a
durable cursor of its own, so that ``sent`` never waits for it), every configured
`WebhookEndpoint` whose filters match gets a delivery, written to a durable log
(SQLite, same rules as the room log) before `WebhookDispatcher.enqueue` returns. A
worker POSTs pending deliveries and retries failures (not 2xx, redirects, timeouts,
refused connections) with exponential backoff and jitter until ``max_attempts``; the
log survives restarts, so a pending delivery is retried by the next process.
Redelivery can happen (a crash after the POST, before the log update): receivers
dedupe by ``Dockcast-Event-Id``, which stays the same across attempts.

Request: ``POST`` with a JSON body ``{"id", "type", "ts", "room", "shipment_id",
"event"}`` (``event`` is the event as watchers see it; bytes become base64 text) and
the headers ``Dockcast-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>``,
``Dockcast-Event-Id``, ``Dockcast-Event-Type``. Each attempt is signed afresh.
Receivers check it with `verify_signature`. Secrets are never logged or stored in the
delivery log; URLs are logged without query string or credentials.

The parts: ``signing`` (the signature, for the node and for receivers), ``config``
(endpoints, retry policy), ``dispatcher`` (the durable delivery log and its worker) and
``plugin`` (what the node loads: events from the bus, messages from a log follower).

    WebhookError (also ValueError)     a bad endpoint or retry configuration
    InvalidSignature (also ValueError) a request that `verify_signature` refuses
"""

from .config import MIN_SECRET_CHARS, RetryPolicy, WebhookEndpoint, WebhookError, redact_url
from .dispatcher import Delivery, WebhookDispatcher
from .plugin import WebhooksPlugin, message_event_id
from .signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    InvalidSignature,
    sign,
    verify_signature,
)

__all__ = [
    "WebhooksPlugin",
    "WebhookDispatcher",
    "WebhookEndpoint",
    "RetryPolicy",
    "Delivery",
    "WebhookError",
    "InvalidSignature",
    "sign",
    "verify_signature",
    "message_event_id",
    "redact_url",
    "MIN_SECRET_CHARS",
    "SIGNATURE_HEADER",
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
]
