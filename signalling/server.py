"""The asyncio adapter: websockets (``websockets.asyncio.server``) around :class:`SessionCore`.

    server = SignallingServer(verifier, NodeInfo("node-1", "local", "0.1.0"))

    @server.route("join")
    async def join(conn: Connection, request: Request) -> dict:
        require_room(conn, request["room"])
        conn.room = request["room"]
        return {"type": "joined", "room": conn.room, ...}

    server.on_disconnect(leave_everything)
    port = await server.start("127.0.0.1", 8765)

Per connection, one task reads frames and feeds the core (so ``ping``, limits and rate
limiting keep working while a handler is slow), one task runs the app's handlers in
arrival order, and one writes queued messages. A handler returns the success message (a
``dict`` with ``type``; the server adds the request's ``id``), or ``None`` for requests
without a reply (``trickle``, ``ack``); it raises a :class:`SignallingError`, or any
exception with a wire ``code``, to answer ``error`` with that code. Any other exception
is answered ``internal`` and logged with its traceback and the request id (never the
request's fields, which may hold tokens).

Frames over ``Limits.max_frame_bytes`` are answered ``too_large``; websockets itself
reads frames up to ``Limits.hard_frame_bytes`` and closes the connection with 1009 on
anything larger. A request finding ``Limits.max_pending_requests`` already waiting is
answered ``rate_limited`` with ``retry_after_ms``, the connection's average handler time
(when a place is likely free). With ``Limits.max_connections`` open (or in their
handshake), a new websocket handshake is answered HTTP 503 with ``Retry-After: 1`` and
counted in ``dockcast_signalling_refused_total{reason="connections"}``.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import math
import pathlib
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, NegotiationError
from websockets.protocol import State as WsState
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response as HttpResponse

from .codec import SUBPROTOCOLS
from .errors import CLOSE_SLOW_CONSUMER, BadRequest, Internal, RateLimited, error_code, error_message
from .http import HttpHandler, HttpRoutes
from .http import HttpRequest as PlainRequest
from .membership import LocalMembership, Membership
from .schema import SPECS, Request
from .session import (
    Authenticated,
    Close,
    Dispatch,
    Limits,
    NodeInfo,
    SessionCore,
    Send,
    require_room,
)
from .tokens import Claims, Grants, TokenVerifier

__all__ = [
    "Connection",
    "Handler",
    "HttpHandler",
    "Hook",
    "SignallingMetrics",
    "SignallingServer",
    "require_room",
]

logger = logging.getLogger("dockcast.signalling")

Handler = Callable[["Connection", Request], Awaitable[dict[str, Any] | None]]
Hook = Callable[["Connection"], Awaitable[None]]

# Marks in a connection's request queue.
_CONNECTED = object()
_STOP = object()

# Types the core answers itself; the app cannot route them.
_CORE_TYPES = frozenset({"hello", "ping"})

# A connection's average handler time before it has run one, and the weight of each
# new one in the average.
_FIRST_HANDLER_S = 0.01
_HANDLER_WEIGHT = 0.2


class SignallingMetrics:
    """Prometheus counters of the signalling layer, in ``registry`` (default: a private
    one, so that several servers in one process do not collide)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        self.connections = Counter(
            "dockcast_signalling_connections", "Websocket connections accepted", registry=self.registry
        )
        self.connections_open = Gauge(
            "dockcast_signalling_connections_open", "Websocket connections open", registry=self.registry
        )
        self.requests = Counter(
            "dockcast_signalling_requests", "Requests dispatched to handlers", ["type"], registry=self.registry
        )
        self.errors = Counter(
            "dockcast_signalling_errors", "Error messages sent, by code", ["code"], registry=self.registry
        )
        self.refused = Counter(
            "dockcast_signalling_refused",
            "Websocket connections refused at the handshake, by the cap that refused them",
            ["reason"],
            registry=self.registry,
        )


class Connection:
    """One client connection, as the app's handlers and hooks see it.

    Read-only: ``connection_id``, ``session_id``, ``claims`` (``None`` before ``hello``),
    ``grants``, ``identity``, ``resume`` (``hello.resume`` or ``None``),
    ``remote_address``, ``subprotocol`` (``None`` = JSON), ``closed``,
    ``queued_messages``, and from the server's `Membership`: ``room`` (the joined
    room; requests that need a room are refused while it is ``None``) and
    ``participant_id``. The app may keep anything in ``data``.
    """

    def __init__(self, server: SignallingServer, ws: ServerConnection, core: SessionCore):
        self.connection_id = secrets.token_hex(6)
        self.data: dict[str, Any] = {}
        self._server = server
        self._ws = ws
        self._core = core
        self._outgoing: asyncio.Queue[Any] = asyncio.Queue()
        self._requests: asyncio.Queue[Any] = asyncio.Queue()
        self._connected = False  # on_connect hooks ran
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._writer: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        # Seconds a handler takes, on average (for the retry_after_ms of a full queue).
        self._handler_s = _FIRST_HANDLER_S

    def __repr__(self) -> str:
        return f"<Connection {self.connection_id} identity={self.identity!r} room={self.room!r}>"

    # -- what the app reads

    @property
    def session_id(self) -> str:
        return self._core.session_id

    @property
    def claims(self) -> Claims | None:
        return self._core.claims

    @property
    def grants(self) -> Grants:
        claims = self._core.claims
        return claims.grants if claims is not None else Grants()

    @property
    def identity(self) -> str | None:
        claims = self._core.claims
        return claims.identity if claims is not None else None

    @property
    def resume(self) -> dict[str, Any] | None:
        return self._core.resume

    @property
    def remote_address(self) -> Any:
        return self._ws.remote_address

    @property
    def lost(self) -> bool:
        """The connection ended without a close frame from the client: its network
        dropped (or stopped answering pings), it did not choose to go."""
        return self._ws.protocol.close_rcvd is None

    @property
    def subprotocol(self) -> str | None:
        return self._ws.subprotocol

    @property
    def room(self) -> str | None:
        return self._server.membership.room_of(self)

    @property
    def participant_id(self) -> str | None:
        member = self._server.membership.member(self)
        return member.participant_id if member is not None else None

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def queued_messages(self) -> int:
        """Messages waiting to be written: a sender of many events (a replay) paces
        itself on it, below ``Limits.max_queued_messages``."""
        return self._outgoing.qsize()

    # -- what the app does

    def send_event(self, msg: dict[str, Any]) -> bool:
        """Queue a server event (a ``dict`` with ``type``, no ``id``) without waiting.

        Returns ``False`` if the connection is closing. Encoding errors raise here, in
        the caller. A client that lets ``Limits.max_queued_messages`` pile up is
        disconnected (close 4013) and the reason logged.
        """
        if self._closing:
            return False
        self._enqueue(self._core.codec.encode(msg))
        return not self._closing

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close after the messages already queued; returns at once."""
        if self._closing:
            return
        self._enqueue(Close(code, reason))
        self._closing = True

    async def wait_closed(self) -> None:
        await self._ws.wait_closed()

    # -- inside the adapter

    def _enqueue(self, item: Any) -> None:
        if self._outgoing.qsize() >= self._server.limits.max_queued_messages:
            logger.warning(
                "disconnecting slow consumer %s (identity %r): %d messages queued",
                self.connection_id,
                self.identity,
                self._outgoing.qsize(),
            )
            self._abort(CLOSE_SLOW_CONSUMER, "slow consumer")
            return
        self._outgoing.put_nowait(item)

    def _abort(self, code: int, reason: str) -> None:
        # The writer may be stuck in a send that the client does not read: stop it and
        # close now, dropping the backlog (websockets' close_timeout bounds the close).
        self._closing = True
        while not self._outgoing.empty():
            self._outgoing.get_nowait()
        if self._writer is not None:
            self._writer.cancel()
        self._closer = asyncio.create_task(self._ws.close(code, reason))

    def _send_msg(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "error":
            self._server.metrics.errors.labels(msg.get("code", "internal")).inc()
            # one line per refusal, for whoever reads the log at 3 a.m. (never the token)
            logger.info("refused: %s", msg.get("message", ""), extra={
                "connection": self.connection_id, "code": msg.get("code"),
                "request_id": msg.get("id"), "identity": self.identity, "room": self.room,
                "remote": _address(self._ws.remote_address)})
        if not self._closing:
            self._enqueue(self._core.codec.encode(msg))

    async def _write_loop(self) -> None:
        try:
            while True:
                item = await self._outgoing.get()
                if isinstance(item, Close):
                    await self._ws.close(item.code, item.reason)
                    return
                await self._ws.send(item)
        except ConnectionClosed:
            pass


def _stay(claims: Any, region: str | None) -> str | None:
    return None


class SignallingServer:
    """The websocket endpoint (``/ws``) plus plain HTTP (`signalling.http`)."""

    def __init__(
        self,
        verifier: TokenVerifier,
        node_info: NodeInfo,
        limits: Limits = Limits(),
        *,
        registry: CollectorRegistry | None = None,
        ws_path: str = "/ws",
        clock: Callable[[], float] = time.time,
        membership: Membership | None = None,
        http_routes: HttpRoutes | None = None,
    ):
        """``clock`` gives the Unix time that tokens and limits are checked against
        (tests move it). ``membership`` says which room each connection is in (the
        node's; a private one by default); ``http_routes`` answers plain HTTP requests."""
        self.membership = membership if membership is not None else LocalMembership()
        self.http = http_routes if http_routes is not None else HttpRoutes()
        self.verifier = verifier
        self.clock = clock
        self.node_info = node_info
        self.limits = limits
        self.ws_path = ws_path
        self.metrics = SignallingMetrics(registry)
        self.connections: set[Connection] = set()
        # Handshakes admitted under max_connections that have not reached _serve yet.
        self._admitting: set[ServerConnection] = set()
        self._routes: dict[str, Handler] = {}
        self._on_connect: list[Hook] = []
        self._on_disconnect: list[Hook] = []
        self.placement: Callable[[Any, str | None], str | None] = _stay
        """Which node should serve a client (``welcome.redirect``): the cluster sets it."""
        self.region_of: Callable[[str], str | None] = lambda address: None
        """The region of a client by its source address, for ``placement`` when its
        ``hello`` names none (a cluster's ``region_map``)."""
        self.alternates: Callable[[], list[dict[str, Any]]] = list
        """The cluster's other live nodes, nearest first (``welcome.nodes``: ``[{node_id,
        region, url}]``), where a client goes when this node stops answering."""
        self._draining = False
        self._server: Server | None = None
        self._more: list[Server] = []  # listen_also's

    # -- configuration

    def route(self, msg_type: str, handler: Handler | None = None) -> Any:
        """Handle requests of ``msg_type`` with ``handler``; usable as a decorator."""
        if msg_type not in SPECS or msg_type in _CORE_TYPES:
            raise ValueError(f"cannot route {msg_type!r}: not a routable message type")
        if handler is None:
            return lambda fn: self.route(msg_type, fn)
        self._routes[msg_type] = handler
        return handler

    def on_connect(self, callback: Hook) -> Hook:
        """Call ``await callback(conn)`` once per connection, after its first accepted
        ``hello`` and before any of its requests reaches a handler."""
        self._on_connect.append(callback)
        return callback

    def on_disconnect(self, callback: Hook) -> Hook:
        """Call ``await callback(conn)`` once when a connection whose ``on_connect`` ran
        closes, whatever the reason (after its running handler finished)."""
        self._on_disconnect.append(callback)
        return callback

    def add_http_route(self, path: str, handler: HttpHandler) -> None:
        """Answer ``GET path`` with ``status, content_type, body = await handler()``."""
        self.http.add(path, handler)

    def add_static(self, prefix: str, directory: str | pathlib.Path) -> None:
        """Serve the files below ``directory`` at ``prefix`` (`HttpRoutes.add_static`)."""
        self.http.add_static(prefix, directory)

    @property
    def draining(self) -> bool:
        """While set, requests other than ``leave`` and ``ping`` get ``unavailable``."""
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._draining = value
        for conn in self.connections:
            conn._core.draining = value

    # -- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 8765, **kwargs: Any) -> int:
        """Listen on ``host:port`` (0: any free port) and return the bound port. Extra
        keyword arguments (``ssl``, ``reuse_port``...) go to
        ``websockets.asyncio.server.serve``."""
        self._server = await self._listen(host, port, **kwargs)
        return self._server.sockets[0].getsockname()[1]

    async def listen_also(self, host: str, port: int, **kwargs: Any) -> int:
        """Serve the same endpoint on another ``host:port`` too (a worker's own port
        beside the shared one); closed with the first. Returns the bound port."""
        server = await self._listen(host, port, **kwargs)
        self._more.append(server)
        return server.sockets[0].getsockname()[1]

    async def _listen(self, host: str, port: int, **kwargs: Any) -> Server:
        return await serve(
            self._serve,
            host,
            port,
            subprotocols=list(SUBPROTOCOLS),
            select_subprotocol=_select_subprotocol,
            process_request=self._process_request,
            max_size=self.limits.hard_frame_bytes,
            logger=logging.getLogger("dockcast.signalling.websockets"),
            **kwargs,
        )

    async def close(self) -> None:
        """Close every connection with 1001 and wait for the disconnect hooks."""
        for server in [self._server, *self._more]:
            if server is not None:
                server.close(close_connections=True)
        for server in [self._server, *self._more]:
            if server is not None:
                await server.wait_closed()

    # -- per connection

    async def _serve(self, ws: ServerConnection) -> None:
        core = SessionCore(self.verifier, self.node_info, self.limits, self.clock, subprotocol=ws.subprotocol)
        core.draining = self._draining
        conn = Connection(self, ws, core)
        self._admitting.discard(ws)
        core.room_of = lambda: self.membership.room_of(conn)
        address = (ws.remote_address or ("",))[0] if isinstance(ws.remote_address, tuple) else ""
        core.placement = lambda claims, region: self.placement(claims, region or self.region_of(address))
        core.alternates = self.alternates
        self.connections.add(conn)
        self.metrics.connections.inc()
        self.metrics.connections_open.inc()
        conn._writer = asyncio.create_task(conn._write_loop())
        conn._worker = asyncio.create_task(self._work_loop(conn))
        self._arm_timer(conn)
        request = getattr(ws, "request", None)
        logger.info("connection open", extra={
            "connection": conn.connection_id, "remote": _address(ws.remote_address),
            # the path without its query string, which a browser client may put a token in
            "path": urlsplit(request.path).path if request is not None else None,
            "subprotocol": ws.subprotocol or "json"})
        try:
            async for frame in ws:
                try:
                    self._apply(conn, core.receive_frame(frame, self.clock()))
                except Exception:  # a bug: keep serving the connection
                    logger.error("internal error on a frame of %s", conn.connection_id, exc_info=True)
                    conn._send_msg(error_message(Internal()))
        except ConnectionClosed:
            pass
        finally:
            core.connection_lost()
            await self._disconnect(conn)
            logger.info("connection closed", extra={
                "connection": conn.connection_id, "identity": conn.identity,
                "code": ws.close_code, "remote": _address(ws.remote_address)})

    def _apply(self, conn: Connection, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, Send):
                conn._send_msg(action.msg)
            elif isinstance(action, Dispatch):
                self._submit(conn, action.request)
            elif isinstance(action, Authenticated):
                if not action.refreshed:
                    conn._requests.put_nowait(_CONNECTED)
            elif isinstance(action, Close):
                conn.close(action.code, action.reason)
        self._arm_timer(conn)

    def _submit(self, conn: Connection, request: Request) -> None:
        if conn._requests.qsize() >= self.limits.max_pending_requests:
            busy = RateLimited(
                "too many requests in flight",
                request_id=request.id,
                retry_after_ms=max(1, math.ceil(conn._handler_s * 1000)),
            )
            self._apply(conn, conn._core.reject(busy, self.clock()))
            return
        conn._requests.put_nowait(request)

    def _arm_timer(self, conn: Connection) -> None:
        deadline = conn._core.get_timer()
        if deadline == conn._timer_at:
            return
        if conn._timer is not None:
            conn._timer.cancel()
            conn._timer = None
        conn._timer_at = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self.clock())
            conn._timer = asyncio.get_running_loop().call_later(delay, self._on_timer, conn)

    def _on_timer(self, conn: Connection) -> None:
        conn._timer = conn._timer_at = None
        self._apply(conn, conn._core.handle_timer(self.clock()))

    async def _work_loop(self, conn: Connection) -> None:
        while True:
            item = await conn._requests.get()
            if item is _STOP:
                return
            if item is _CONNECTED:
                conn._connected = True
                await self._run_hooks(self._on_connect, conn, "on_connect")
            else:
                started = time.monotonic()
                await self._handle(conn, item)
                took = time.monotonic() - started
                conn._handler_s += _HANDLER_WEIGHT * (took - conn._handler_s)

    async def _handle(self, conn: Connection, request: Request) -> None:
        self.metrics.requests.labels(request.type).inc()
        handler = self._routes.get(request.type)
        try:
            if handler is None:
                raise BadRequest(f"{request.type} is not supported by this server")
            result = await handler(conn, request)
            if result is None:
                if request.spec.reply is not None:
                    raise Internal(f"the handler of {request.type} returned no reply")
                return
            if not isinstance(result.get("type"), str):
                raise Internal(f"the handler of {request.type} returned a reply without type")
            reply = dict(result)
            if request.id is not None:
                reply["id"] = request.id
            conn._send_msg(reply)  # encoding errors land below, as internal
        except Exception as exc:
            if error_code(exc) == "internal":
                logger.error(
                    "internal error in %s (request id %r, connection %s)",
                    request.type,
                    request.id,
                    conn.connection_id,
                    exc_info=True,
                )
            conn._send_msg(error_message(exc, request.id))

    async def _disconnect(self, conn: Connection) -> None:
        writer, worker = conn._writer, conn._worker
        assert writer is not None and worker is not None
        conn._closing = True
        if conn._timer is not None:
            conn._timer.cancel()
        # Queued requests die with the socket; the one running may finish.
        while not conn._requests.empty():
            conn._requests.get_nowait()
        conn._requests.put_nowait(_STOP)
        done, _ = await asyncio.wait({worker}, timeout=self.limits.close_grace)
        for task in (worker, writer):
            task.cancel()
        await asyncio.gather(worker, writer, *filter(None, [conn._closer]), return_exceptions=True)
        if not done:
            logger.warning("cancelled a handler of %s still running at disconnect", conn.connection_id)
        try:
            if conn._connected:
                await self._run_hooks(self._on_disconnect, conn, "on_disconnect")
        finally:
            self.connections.discard(conn)
            self.metrics.connections_open.dec()

    @staticmethod
    async def _run_hooks(hooks: list[Hook], conn: Connection, what: str) -> None:
        for hook in hooks:
            try:
                await hook(conn)
            except Exception:
                logger.error("%s hook failed for connection %s", what, conn.connection_id, exc_info=True)

    # -- plain HTTP

    async def _process_request(self, ws: ServerConnection, request: HttpRequest) -> HttpResponse | None:
        path = urlsplit(request.path).path
        if path == self.ws_path:
            return self._admit(ws)
        reply = await self.http.reply(PlainRequest.parse(request.method, request.path, request.headers.raw_items()))
        response = _http_response(reply.status, reply.content_type, reply.body)
        for name, value in reply.headers:
            response.headers[name] = value
        return response

    def _admit(self, ws: ServerConnection) -> HttpResponse | None:
        """``None`` (go on with the handshake) under ``max_connections``, else 503."""
        self._admitting = {w for w in self._admitting if w.state is WsState.CONNECTING}
        cap = self.limits.max_connections
        if cap and len(self.connections) + len(self._admitting) >= cap:
            self.metrics.refused.labels("connections").inc()
            response = _http_response(503, "text/plain; charset=utf-8", b"too many connections; retry later\n")
            response.headers["Retry-After"] = "1"
            return response
        self._admitting.add(ws)
        return None


def _select_subprotocol(ws: ServerConnection, offered: Any) -> str | None:
    # No subprotocol offered: JSON. Otherwise the client's first choice that we speak.
    if not offered:
        return None
    for subprotocol in offered:
        if subprotocol in SUBPROTOCOLS:
            return subprotocol
    raise NegotiationError("unsupported subprotocol; expected one of " + ", ".join(SUBPROTOCOLS))


def _http_response(status: int, content_type: str, body: bytes) -> HttpResponse:
    status = http.HTTPStatus(status)
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
        ]
    )
    return HttpResponse(status.value, status.phrase, headers, body)


def _address(address: Any) -> str | None:
    """``host:port`` of a peer address tuple (IPv6 in brackets)."""
    if not address:
        return None
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"

