"""The durable delivery log and the worker that POSTs it, with retries."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signalling.codec import wire_ts
from signalling.durable import DurableDb

from .config import RetryPolicy, WebhookEndpoint, WebhookError
from .signing import EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, sign

__all__ = ["WebhookDispatcher", "Delivery"]

log = logging.getLogger("plugins.webhooks")


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


def with_basic_auth(url: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """An endpoint URL with ``user:password@`` sends them as HTTP basic authentication
    (urllib would take them for part of the host name); the URL loses them."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, headers
    credentials = f"{urllib.parse.unquote(parts.username or '')}:{urllib.parse.unquote(parts.password or '')}"
    netloc = parts.hostname if ":" not in (parts.hostname or "") else f"[{parts.hostname}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    token = base64.b64encode(credentials.encode()).decode()
    return (urllib.parse.urlunsplit(parts._replace(netloc=netloc)),
            {**headers, "Authorization": f"Basic {token}"})


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    url, headers = with_basic_auth(url, headers)
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
        metrics_registry: Any = None,
    ) -> None:
        """``metrics_registry`` (a ``prometheus_client.CollectorRegistry``) gets
        ``dockcast_webhook_attempts_total{endpoint,outcome}`` (delivered, retry, failed)
        and ``dockcast_webhook_delivery_seconds{endpoint}`` (event logged to 2xx)."""
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
        self._attempts = self._latency = None
        if metrics_registry is not None:
            from prometheus_client import Counter, Histogram

            self._attempts = Counter("dockcast_webhook_attempts", "Webhook POSTs, by outcome",
                                     ["endpoint", "outcome"], registry=metrics_registry)
            self._latency = Histogram(
                "dockcast_webhook_delivery_seconds", "From an event logged to its 2xx answer",
                ["endpoint"], registry=metrics_registry,
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200))

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
            self._count(endpoint.name, "delivered", now - delivery.created_at)
            return
        if attempts >= self.retry.max_attempts:
            await self._record(delivery.id, "failed", attempts, error, None)
            self._count(endpoint.name, "failed")
            log.error("webhook %s: giving up on event %s after %d attempts: %s",
                      endpoint.name, delivery.event_id, attempts, error)
            return
        delay = self.retry.delay(attempts, self._rng)
        await self._record(delivery.id, "pending", attempts, error, now + delay)
        self._count(endpoint.name, "retry")
        log.warning("webhook %s: attempt %d for event %s failed (%s); retry in %.1fs",
                    endpoint.name, attempts, delivery.event_id, error, delay)

    def _count(self, endpoint: str, outcome: str, latency: float | None = None) -> None:
        if self._attempts is not None:
            self._attempts.labels(endpoint, outcome).inc()
        if self._latency is not None and latency is not None:
            self._latency.labels(endpoint).observe(max(latency, 0.0))

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
