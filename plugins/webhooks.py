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

    WebhookError (also ValueError)     a bad endpoint or retry configuration
    InvalidSignature (also ValueError) a request that `verify_signature` refuses
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import logging
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signalling.codec import wire_ts
from signalling.durable import DurableDb
from signalling.errors import FixedCodeError
from signalling.events import Audience, Event, MessageStored
from signalling.hooks import Plugin, PluginContext

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
    "SIGNATURE_HEADER",
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Dockcast-Signature"
EVENT_ID_HEADER = "Dockcast-Event-Id"
EVENT_TYPE_HEADER = "Dockcast-Event-Type"
MIN_SECRET_CHARS = 16


class WebhookError(FixedCodeError, ValueError):
    """A bad endpoint or retry configuration; the message names the field."""

    code = "internal"


class InvalidSignature(FixedCodeError, ValueError):
    """`verify_signature` refused a request; the message says why."""

    code = "unauthorized"


# -- signatures -------------------------------------------------------------------------


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``Dockcast-Signature`` header value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: bytes | str,
    tolerance_s: float = 300,
    now: float | None = None,
) -> int:
    """Check a ``Dockcast-Signature`` header against the raw request body.

    Return the signed timestamp; raise `InvalidSignature` when the header is missing or
    malformed, no ``v1`` matches (tampered body, wrong secret) or the timestamp is more
    than ``tolerance_s`` away from ``now`` (a replay). Several ``v1`` values are allowed
    (any may match), for secret rotation. Comparison is constant-time.
    """
    if not header or not isinstance(header, str):
        raise InvalidSignature(f"missing {SIGNATURE_HEADER} header")
    timestamp = None
    candidates = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header")
        if key == "t":
            if not value.isdigit():
                raise InvalidSignature(f"malformed timestamp in {SIGNATURE_HEADER}")
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise InvalidSignature(f"{SIGNATURE_HEADER} needs t= and v1=")
    raw = body.encode() if isinstance(body, str) else bytes(body)
    expected = _digest(secret, timestamp, raw)
    # Check every candidate, so the time taken does not say which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise InvalidSignature("signature does not match the body")
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise InvalidSignature(f"timestamp is more than {tolerance_s:g}s away from now")
    return timestamp


# -- configuration ----------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` without credentials, query or fragment: safe to log."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _names(value: Any, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise WebhookError(f"{what} must be a list of strings")
    names = frozenset(value)
    if not all(isinstance(n, str) and n for n in names):
        raise WebhookError(f"{what} must be a list of non-empty strings")
    return names


@dataclass(frozen=True)
class WebhookEndpoint:
    """Where to POST, the shared secret, and which events (``None``: no filter).

    ``events`` filters by event type; ``rooms`` and ``shipment_ids`` select the events
    of those rooms or shipments (either matches, as in ``events.subscribe``).
    ``name`` identifies the endpoint in the delivery log and in logs (default: the URL
    without query and credentials); keep it stable across restarts.
    """

    url: str
    secret: str = field(repr=False)
    name: str = ""
    events: frozenset[str] | None = None
    rooms: frozenset[str] | None = None
    shipment_ids: frozenset[str] | None = None

    def __post_init__(self) -> None:
        try:
            parts = urllib.parse.urlsplit(self.url)
            parts.port  # noqa: B018 - raises on a bad port
        except (TypeError, ValueError, AttributeError):
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookError("webhook url must be an http:// or https:// URL with a host")
        if not isinstance(self.secret, str) or len(self.secret) < MIN_SECRET_CHARS:
            raise WebhookError(
                f"webhook {redact_url(self.url)}: secret must be at least {MIN_SECRET_CHARS} characters"
            )
        if not self.name:
            object.__setattr__(self, "name", redact_url(self.url))
        for what in ("events", "rooms", "shipment_ids"):
            object.__setattr__(self, what, _names(getattr(self, what), what))

    @classmethod
    def from_config(cls, data: Mapping[str, Any], environ: Mapping[str, str] | None = None):
        """From a config map: ``url``, ``secret`` or ``secret_env`` (the name of an
        environment variable holding it), optional ``name``, ``events``, ``rooms``,
        ``shipment_ids``."""
        if not isinstance(data, Mapping):
            raise WebhookError("a webhook endpoint must be a map")
        allowed = {"url", "secret", "secret_env", "name", "events", "rooms", "shipment_ids"}
        unknown = set(data) - allowed
        if unknown:
            raise WebhookError(f"unknown webhook settings: {sorted(unknown)}")
        values = {k: v for k, v in data.items() if k != "secret_env"}
        if "secret_env" in data:
            environ = os.environ if environ is None else environ
            if data["secret_env"] not in environ:
                raise WebhookError(f"environment variable {data['secret_env']} (webhook secret) is not set")
            values["secret"] = environ[data["secret_env"]]
        if "url" not in values or "secret" not in values:
            raise WebhookError("a webhook endpoint needs url and secret (or secret_env)")
        return cls(**values)

    def matches(self, event_type: str, room: str | None, shipment_id: str | None) -> bool:
        if self.events is not None and event_type not in self.events:
            return False
        if self.rooms is None and self.shipment_ids is None:
            return True
        return (self.rooms is not None and room in self.rooms) or (
            self.shipment_ids is not None and shipment_id in self.shipment_ids
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Attempt ``n`` (from 1) failed: wait ``min(max_delay_s, initial_delay_s *
    multiplier ** (n - 1))``, less a random part of up to ``jitter`` of it, then retry;
    give up after ``max_attempts``. The defaults retry for about two and a half hours."""

    initial_delay_s: float = 1.0
    max_delay_s: float = 600.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int = 20
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        checks = {
            "initial_delay_s": self.initial_delay_s >= 0,
            "max_delay_s": self.max_delay_s >= self.initial_delay_s,
            "multiplier": self.multiplier >= 1,
            "jitter": 0 <= self.jitter <= 1,
            "max_attempts": isinstance(self.max_attempts, int) and self.max_attempts >= 1,
            "timeout_s": self.timeout_s > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise WebhookError(f"bad retry settings: {', '.join(bad)}")

    def delay(self, attempts: int, rng: random.Random) -> float:
        base = min(self.max_delay_s, self.initial_delay_s * self.multiplier ** (attempts - 1))
        return base * (1 - self.jitter * rng.random())


# -- delivery log -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    event_id: str
    endpoint: str
    event_type: str
    body: bytes
    state: str  # pending, delivered, failed
    attempts: int
    last_error: str | None
    next_attempt_at: float
    created_at: float
    delivered_at: float | None


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS deliveries (
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        event_type TEXT NOT NULL,
        body BLOB NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        next_attempt_at REAL NOT NULL,
        created_at REAL NOT NULL,
        delivered_at REAL,
        UNIQUE (event_id, endpoint)
    )""",
    "CREATE INDEX IF NOT EXISTS due ON deliveries (next_attempt_at) WHERE state = 'pending'",
)
_COLUMNS = (
    "id, event_id, endpoint, event_type, body, state, attempts, last_error,"
    " next_attempt_at, created_at, delivered_at"
)


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-able")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A webhook that redirects is misconfigured: report it, do not follow it.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(65536)
            return response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = f"{type(exc).__name__}: {reason if reason is not None else exc}"
    return text[:300]


class WebhookDispatcher:
    """The delivery log and the worker that POSTs from it."""

    def __init__(
        self,
        path: str | Path,
        endpoints: Iterable[WebhookEndpoint],
        retry: RetryPolicy | None = None,
        *,
        max_concurrency: int = 4,
        keep_done_s: float = 7 * 24 * 3600.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.endpoints: dict[str, WebhookEndpoint] = {}
        for endpoint in endpoints:
            if endpoint.name in self.endpoints:
                raise WebhookError(f"two webhook endpoints are named {endpoint.name!r}")
            self.endpoints[endpoint.name] = endpoint
        self.retry = retry or RetryPolicy()
        self.keep_done_s = keep_done_s
        self.clock = clock
        self._rng = rng or random.Random()
        self._max_concurrency = max_concurrency
        self._db = DurableDb(path, _SCHEMA, version=1, name="webhooks")
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="webhook-post")
        self._wake = asyncio.Event()
        self._inflight: dict[int, asyncio.Task] = {}
        self._worker: asyncio.Task | None = None
        self._last_cleanup = 0.0

    async def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def close(self) -> None:
        """Stop the worker; attempts cut short stay pending for the next start."""
        tasks = [t for t in (self._worker, *self._inflight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._worker = None
        self._pool.shutdown(wait=False, cancel_futures=True)
        await self._db.close()

    async def enqueue(
        self, msg: Mapping[str, Any], room: str | None = None, shipment_id: str | None = None,
        *, event_id: str | None = None,
    ) -> list[Delivery]:
        """Log one delivery per matching endpoint (durably), wake the worker, return them.

        ``event_id`` (default: a new random one) names the event to receivers; an
        event already logged under the same id is not logged again (a message handed
        over twice after a crash).
        """
        event_type = msg.get("type")
        if not isinstance(event_type, str):
            raise WebhookError("an event needs a string type")
        targets = [e.name for e in self.endpoints.values() if e.matches(event_type, room, shipment_id)]
        if not targets:
            return []
        now = self.clock()
        event_id = event_id or uuid.uuid4().hex
        envelope = {
            "id": event_id,
            "type": event_type,
            "ts": wire_ts(now),
            "room": room,
            "shipment_id": shipment_id,
            "event": dict(msg),
        }
        try:
            body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False, default=_json_default)
        except (TypeError, ValueError) as exc:
            raise WebhookError(f"{event_type} event is not JSON-able: {exc}") from None
        body_bytes = body.encode()

        def job(conn):
            rows = []
            for name in targets:
                cursor = conn.execute(
                    "INSERT INTO deliveries (event_id, endpoint, event_type, body, state,"
                    " next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)"
                    " ON CONFLICT (event_id, endpoint) DO NOTHING",
                    (event_id, name, event_type, body_bytes, now, now),
                )
                if not cursor.rowcount:
                    continue
                rows.append(
                    Delivery(cursor.lastrowid, event_id, name, event_type, body_bytes, "pending",
                             0, None, now, now, None)
                )
            return rows

        deliveries = await self._db.write(job)
        self._wake.set()
        return deliveries

    async def deliveries(self, state: str | None = None) -> list[Delivery]:
        """The logged deliveries (optionally in one state), oldest first."""

        def job(conn):
            where, args = ("WHERE state = ?", (state,)) if state else ("", ())
            rows = conn.execute(f"SELECT {_COLUMNS} FROM deliveries {where} ORDER BY id", args)
            return [Delivery(*row) for row in rows]

        return await self._db.read(job)

    # -- worker ---------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep delivering once the store is back
                log.exception("webhook dispatcher failed; retrying in 1s")
                await asyncio.sleep(1.0)

    async def _step(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock()
            free = self._max_concurrency - len(self._inflight)
            wait: float | None = None
            if free > 0:
                due, wait = await self._db.read(lambda conn: self._due(conn, now, free))
                for delivery in due:
                    task = asyncio.create_task(self._guarded_attempt(delivery))
                    self._inflight[delivery.id] = task
                    task.add_done_callback(lambda _, i=delivery.id: self._finished(i))
                if due:
                    continue
            if now - self._last_cleanup > 3600:
                self._last_cleanup = now
                await self._cleanup(now)
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _due(self, conn, now: float, limit: int) -> tuple[list[Delivery], float | None]:
        busy = list(self._inflight)
        skip = f"AND id NOT IN ({','.join('?' * len(busy))})" if busy else ""
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM deliveries WHERE state = 'pending' {skip}"
            " AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            (*busy, now, limit),
        ).fetchall()
        if rows:
            return [Delivery(*row) for row in rows], 0.0
        row = conn.execute(
            f"SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'pending' {skip}", busy
        ).fetchone()
        return [], None if row[0] is None else max(row[0] - now, 0.0)

    def _finished(self, delivery_id: int) -> None:
        self._inflight.pop(delivery_id, None)
        self._wake.set()

    async def _guarded_attempt(self, delivery: Delivery) -> None:
        try:
            await self._attempt(delivery)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the delivery stays pending and is retried
            log.exception("webhook %s: attempt for event %s could not be recorded",
                          delivery.endpoint, delivery.event_id)

    async def _attempt(self, delivery: Delivery) -> None:
        endpoint = self.endpoints.get(delivery.endpoint)
        attempts = delivery.attempts + 1
        if endpoint is None:
            await self._record(delivery.id, "failed", attempts, "endpoint no longer configured", None)
            log.warning("webhook %s is no longer configured: delivery %s dropped",
                        delivery.endpoint, delivery.event_id)
            return
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "dockcast-webhooks",
            SIGNATURE_HEADER: sign(endpoint.secret, delivery.body, timestamp),
            EVENT_ID_HEADER: delivery.event_id,
            EVENT_TYPE_HEADER: delivery.event_type,
        }
        loop = asyncio.get_running_loop()
        try:
            status = await loop.run_in_executor(
                self._pool, _post, endpoint.url, delivery.body, headers, self.retry.timeout_s
            )
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            error = _describe(exc)
        now = self.clock()
        if error is None:
            await self._record(delivery.id, "delivered", attempts, None, None, delivered_at=now)
            return
        if attempts >= self.retry.max_attempts:
            await self._record(delivery.id, "failed", attempts, error, None)
            log.error("webhook %s: giving up on event %s after %d attempts: %s",
                      endpoint.name, delivery.event_id, attempts, error)
            return
        delay = self.retry.delay(attempts, self._rng)
        await self._record(delivery.id, "pending", attempts, error, now + delay)
        log.warning("webhook %s: attempt %d for event %s failed (%s); retry in %.1fs",
                    endpoint.name, attempts, delivery.event_id, error, delay)

    async def _record(self, delivery_id, state, attempts, error, next_at, delivered_at=None):
        def job(conn):
            conn.execute(
                "UPDATE deliveries SET state = ?, attempts = ?, last_error = ?,"
                " next_attempt_at = COALESCE(?, next_attempt_at), delivered_at = ? WHERE id = ?",
                (state, attempts, error, next_at, delivered_at, delivery_id),
            )

        await self._db.write(job)

    async def _cleanup(self, now: float) -> None:
        def job(conn):
            conn.execute(
                "DELETE FROM deliveries WHERE state != 'pending' AND created_at < ?",
                (now - self.keep_done_s,),
            )

        await self._db.write(job)


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
            path, self.endpoints, self.retry, max_concurrency=self.max_concurrency
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
