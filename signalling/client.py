"""The Python client of the signalling API, for embedding apps and tests.

    client = await DockcastClient.connect("ws://127.0.0.1:8765/ws", token)
    joined = await client.join("dock-7")
    sent = await client.send("status", {"ok": True})
    event = await client.next_event("message")
    await client.close()

:meth:`DockcastClient.request` sends a request with a fresh ``id`` and returns the
reply with that ``id``, or raises :class:`ServerError` (with the wire ``code``). Messages
without a waiting request are events: a callback registered with :meth:`on` gets the
events of its type, every other event is queued for :meth:`next_event` and
:meth:`events` (so is an ``error`` answering a :meth:`notify`; a reply arriving after its
request timed out is dropped). When the connection closes, pending and later calls raise
:class:`SessionClosed` (a ``websockets`` ``ConnectionClosed``) naming the close code:
4001 (token refused or expired), 4008 (abuse), 4013 (slow consumer), 1001 (server
going away)...

Rate limits: a ``rate_limited`` answer carrying ``retry_after_ms`` is advice, and the
client follows it. It sends nothing more (requests, :meth:`notify`) until that time
has passed, then sends the same request again (same ``id``, same fields: a rejected
request changed nothing), at most ``rate_limit_retries`` times (default 5) before
raising the ``rate_limited`` :class:`ServerError`. From the first such answer until no
request is waiting any more, the client sends one request at a time (the next only
once the previous one is answered), so that pipelined requests do not run into the
empty bucket together. A client that follows the advice is never closed with 4008.
``rate_limited_seen`` counts the ``rate_limited`` answers received. A rate-limited
:meth:`notify` is not sent again: its ``error`` arrives as an event (``ack`` is
cumulative; the next one covers it).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .codec import JSON, MSGPACK, Codec, valid_id
from .errors import CLOSE_ABUSE, CLOSE_SLOW_CONSUMER, CLOSE_UNAUTHORIZED, SignallingError

__all__ = ["DockcastClient", "ServerError", "SessionClosed", "DEFAULT_RATE_LIMIT_RETRIES"]

#: How many times :meth:`DockcastClient.request` sends a rate-limited request again.
DEFAULT_RATE_LIMIT_RETRIES = 5

logger = logging.getLogger("dockcast.signalling.client")

_SUBPROTOCOLS = {"json": JSON, "msgpack": MSGPACK, JSON: JSON, MSGPACK: MSGPACK}
_CLOSE_MEANINGS = {
    1000: "normal closure",
    1001: "server going away",
    1006: "connection lost",
    1009: "frame over the hard size limit",
    CLOSE_UNAUTHORIZED: "unauthorized",
    CLOSE_ABUSE: "too many bad messages",
    CLOSE_SLOW_CONSUMER: "slow consumer",
}


def _retry_after_ms(msg: dict[str, Any]) -> int | None:
    value = msg.get("retry_after_ms") if msg.get("code") == "rate_limited" else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        return None
    return int(value)


class ServerError(SignallingError):
    """The server answered ``error``: ``code`` is the wire code, ``message`` its text,
    ``reply`` the whole message."""

    def __init__(self, code: str, message: str, reply: dict[str, Any] | None = None):
        super().__init__(code, message, request_id=(reply or {}).get("id"))
        self.reply = reply or {}

    @property
    def retry_after_ms(self) -> int | None:
        """A ``rate_limited`` error's advice: milliseconds to wait (``None``: none)."""
        return _retry_after_ms(self.reply)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class SessionClosed(ConnectionClosed):
    """The connection is closed; ``close_code`` and ``close_reason`` say how (the
    server's close frame, or 1006 when none came)."""

    @property
    def close_code(self) -> int:
        return self.rcvd.code if self.rcvd is not None else 1006

    @property
    def close_reason(self) -> str:
        return self.rcvd.reason if self.rcvd is not None else ""

    def __str__(self) -> str:
        meaning = _CLOSE_MEANINGS.get(self.close_code, "closed")
        reason = f": {self.close_reason}" if self.close_reason else ""
        return f"connection closed with {self.close_code} ({meaning}{reason})"


class DockcastClient:
    """A connected, authenticated session; make one with :meth:`connect`."""

    def __init__(
        self, ws: ClientConnection, timeout: float = 10.0, rate_limit_retries: int = DEFAULT_RATE_LIMIT_RETRIES
    ):
        self.ws = ws
        self.timeout = timeout
        self.rate_limit_retries = rate_limit_retries
        #: ``rate_limited`` answers received (to requests and notifications).
        self.rate_limited_seen = 0
        # The server's last advice: nothing is sent before this (loop time).
        self._not_before = 0.0
        # From an advice until nobody waits in _paced: one request at a time.
        self._throttled = False
        self._paced = asyncio.Lock()
        self._paced_waiting = 0
        # Replies may nest an app's payload a few levels deeper than requests may.
        self.codec = Codec(ws.subprotocol or JSON, max_frame_bytes=1 << 30, max_depth=128)
        self.welcome: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: deque[dict[str, Any]] = deque()
        self._arrived = asyncio.Event()
        self._callbacks: dict[str, list[Callable[[dict[str, Any]], Any]]] = {}
        # How the connection closed (rcvd, sent, rcvd_then_sent), once it did.
        self._closed: tuple[Any, Any, Any] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._abandoned: set[Any] = set()
        self._reader = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(
        cls,
        url: str | Sequence[str],
        token: str,
        *,
        subprotocol: str | None = "json",
        resume: dict[str, Any] | None = None,
        timeout: float = 10.0,
        rate_limit_retries: int = DEFAULT_RATE_LIMIT_RETRIES,
        region: str | None = None,
        follow_redirect: bool = True,
        **ws_kwargs: Any,
    ) -> DockcastClient:
        """Open ``url``, send ``hello`` and wait for ``welcome`` (in ``.welcome``).

        ``url`` may be a list: the nodes of a cluster, tried in order until one answers
        (a node that cannot be reached or closes before its ``welcome`` is skipped; the
        last one's error is raised). Coming back after a node died: the old client's
        ``[old.url, *old.alternate_urls]`` and ``resume`` reach a surviving node, which
        replays the room's messages from the shared log.
        ``subprotocol``: ``"json"``, ``"msgpack"`` or ``None`` (offer none: JSON).
        ``resume``: ``{"session_id", "last_seq"}`` of an earlier session.
        ``rate_limit_retries``: how often a request answered ``rate_limited`` with
        ``retry_after_ms`` is sent again after that wait (0: never). ``region``: the
        region this client would rather be served in (a cluster's hint). When the
        ``welcome`` names another node (``redirect``), the client connects there with
        the same token (once; ``follow_redirect=False`` keeps the first connection and
        leaves ``welcome["redirect"]`` to the caller). ``.url`` is where it ended up.
        Raises :class:`ServerError` or :class:`SessionClosed` if the server refuses.
        """
        urls = [url] if isinstance(url, str) else list(dict.fromkeys(url))
        if not urls:
            raise ValueError("connect needs at least one URL")
        for i, candidate in enumerate(urls):
            try:
                return await cls._connect_one(candidate, token, subprotocol, resume, timeout,
                                              rate_limit_retries, region, follow_redirect, ws_kwargs)
            except (OSError, asyncio.TimeoutError, ConnectionClosed, InvalidHandshake):
                if i == len(urls) - 1:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    async def _connect_one(cls, url: str, token: str, subprotocol: str | None,
                           resume: dict[str, Any] | None, timeout: float, rate_limit_retries: int,
                           region: str | None, follow_redirect: bool,
                           ws_kwargs: dict[str, Any]) -> DockcastClient:
        offered = [_SUBPROTOCOLS[subprotocol]] if subprotocol is not None else None
        ws_kwargs = {"max_size": None, "open_timeout": timeout, **ws_kwargs}
        for attempt in range(2):
            ws = await ws_connect(url, subprotocols=offered, **ws_kwargs)
            client = cls(ws, timeout, rate_limit_retries)
            client.url = url
            try:
                client.welcome = await client.request("hello", token=token, resume=resume,
                                                      region=region)
            except BaseException:
                await client.close()
                raise
            redirect = client.welcome.get("redirect")
            if not follow_redirect or not redirect or attempt == 1 or redirect == url:
                return client
            await client.close()
            url = redirect
        return client

    async def __aenter__(self) -> DockcastClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    # -- properties of the session

    @property
    def session_id(self) -> str | None:
        return self.welcome.get("session_id")

    @property
    def identity(self) -> str | None:
        return self.welcome.get("identity")

    @property
    def alternate_urls(self) -> list[str]:
        """The cluster's other nodes this node named in its ``welcome`` (``nodes``),
        nearest first: where to go, with ``resume``, if this node stops answering."""
        return [n["url"] for n in self.welcome.get("nodes", ()) if isinstance(n, dict) and n.get("url")]

    @property
    def closed(self) -> bool:
        return self._closed is not None

    # -- requests and events

    async def request(self, msg_type: str, /, *, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send a request and return its reply; fields that are ``None`` are left out.

        A ``rate_limited`` answer with ``retry_after_ms`` is waited out and the request
        sent again, up to ``rate_limit_retries`` times (module docstring). ``timeout``
        (default: the client's) bounds each wait for an answer; waiting out the advice
        or behind other requests is not counted."""
        request_id, frame = self._prepare(msg_type, fields)
        retries = self.rate_limit_retries
        if not self._throttled:
            reply = await self._advised_attempt(request_id, frame, timeout, retries)
            if reply is not None:
                return reply
            retries -= 1
        self._paced_waiting += 1
        try:
            async with self._paced:  # one at a time while the server advises waiting
                while True:
                    reply = await self._advised_attempt(request_id, frame, timeout, retries)
                    if reply is not None:
                        return reply
                    retries -= 1
        finally:
            self._paced_waiting -= 1
            if not self._paced_waiting:
                self._throttled = False

    async def _advised_attempt(self, request_id: int, frame: bytes | str, timeout: float | None,
                               retries: int) -> dict[str, Any] | None:
        """One attempt once any advice ran out: the reply, or ``None`` when it was
        ``rate_limited`` with advice and ``retries`` allow another one."""
        await self._wait_advice()
        try:
            return await self._attempt(request_id, frame, timeout)
        except ServerError as exc:
            if exc.retry_after_ms is None or retries <= 0:
                raise
            return None

    async def notify(self, msg_type: str, /, **fields: Any) -> int:
        """Send a request whose reply nobody waits for (``trickle``, ``ack``); an error
        answering it arrives as an ``error`` event. Returns the id used. It waits out
        the server's ``retry_after_ms`` advice first, but is not sent again."""
        request_id, frame = self._prepare(msg_type, fields)
        if self._throttled:
            async with self._paced:
                await self._wait_advice()
                await self._send(frame)
        else:
            await self._wait_advice()
            await self._send(frame)
        return request_id

    async def send_raw(self, frame: bytes | str) -> None:
        """Send one frame as is (tests use it to send malformed frames)."""
        self._raise_if_closed()
        await self._send(frame)

    def on(self, msg_type: str, callback: Callable[[dict[str, Any]], Any]) -> None:
        """Call ``callback(event)`` for every event of ``msg_type`` (a coroutine function
        runs as a task); such events are not queued for :meth:`next_event`."""
        self._callbacks.setdefault(msg_type, []).append(callback)

    async def next_event(self, msg_type: str | None = None, timeout: float | None = 5.0) -> dict[str, Any]:
        """The oldest queued event (of ``msg_type``, if given; others stay queued)."""
        async with asyncio.timeout(timeout):
            while True:
                for i, event in enumerate(self._events):
                    if msg_type is None or event.get("type") == msg_type:
                        del self._events[i]
                        return event
                self._raise_if_closed()
                await self._arrived.wait()

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every queued event, in order, until the connection closes."""
        while True:
            try:
                yield await self.next_event(timeout=None)
            except SessionClosed:
                return

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    # -- one helper per operation of PROTOCOL.md

    async def refresh(self, token: str) -> dict[str, Any]:
        """Replace the session's token (a second ``hello``; same identity)."""
        self.welcome = await self.request("hello", token=token)
        return self.welcome

    async def join(self, room: str, name: str | None = None, metadata: dict | None = None, *,
                   subscribe: bool = False) -> dict[str, Any]:
        """Join ``room``; with ``subscribe`` also subscribe to every track it has
        (``joined.subscribed``; the ``offer`` follows at once: one round trip fewer)."""
        return await self.request("join", room=room, name=name, metadata=metadata,
                                  subscribe=subscribe or None)

    async def leave(self) -> dict[str, Any]:
        return await self.request("leave")

    async def ping(self) -> dict[str, Any]:
        return await self.request("ping")

    async def publish(self, sdp: str, tracks: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.request("publish", sdp=sdp, tracks=tracks)

    async def unpublish(self, track_ids: list[str]) -> dict[str, Any]:
        return await self.request("unpublish", track_ids=track_ids)

    async def subscribe(self, track_ids: list[str], *, max_height: int | None = None,
                        max_fps: float | None = None) -> dict[str, Any]:
        """Subscribe (again: new limits) to ``track_ids``; ``max_height``/``max_fps``
        limit a simulcast track's layer (`docs/protocol.md`, "Simulcast layers")."""
        return await self.request("subscribe", track_ids=track_ids, max_height=max_height,
                                  max_fps=max_fps)

    async def answer(self, sdp: str, pc: str = "sub") -> dict[str, Any]:
        return await self.request("answer", pc=pc, sdp=sdp)

    async def unsubscribe(self, track_ids: list[str]) -> dict[str, Any]:
        return await self.request("unsubscribe", track_ids=track_ids)

    async def trickle(self, pc: str, candidate: dict[str, Any]) -> int:
        return await self.notify("trickle", pc=pc, candidate=candidate)

    async def send(self, topic: str, payload: Any, msg_id: str | None = None) -> dict[str, Any]:
        """Send a room message; ``msg_id`` defaults to a fresh UUID (reuse it to retry)."""
        return await self.request("send", topic=topic, payload=payload, msg_id=msg_id or uuid.uuid4().hex)

    async def ack(self, seq: int) -> int:
        return await self.notify("ack", seq=seq)

    async def room_create(
        self,
        room: str,
        shipment_id: str | None = None,
        metadata: dict | None = None,
        record: bool | None = None,
    ) -> dict[str, Any]:
        return await self.request("room.create", room=room, shipment_id=shipment_id, metadata=metadata, record=record)

    async def room_list(self) -> dict[str, Any]:
        return await self.request("room.list")

    async def room_close(self, room: str) -> dict[str, Any]:
        return await self.request("room.close", room=room)

    async def participant_remove(self, room: str, participant_id: str) -> dict[str, Any]:
        return await self.request("participant.remove", room=room, participant_id=participant_id)

    async def shipment_upsert(self, shipment_id: str, **details: Any) -> dict[str, Any]:
        """``details``: ``tracking_no``, ``carrier``, ``origin``, ``destination``,
        ``stage``, ``eta``."""
        return await self.request("shipment.upsert", shipment_id=shipment_id, **details)

    async def shipment_event(
        self, shipment_id: str, status: str, detail: Any = None, severity: str | None = None
    ) -> dict[str, Any]:
        return await self.request(
            "shipment.event", shipment_id=shipment_id, status=status, detail=detail, severity=severity
        )

    async def shipment_get(self, shipment_id: str) -> dict[str, Any]:
        return await self.request("shipment.get", shipment_id=shipment_id)

    async def recording_start(self, room: str) -> dict[str, Any]:
        return await self.request("recording.start", room=room)

    async def recording_stop(self, room: str) -> dict[str, Any]:
        return await self.request("recording.stop", room=room)

    async def recording_list(self, room: str | None = None, shipment_id: str | None = None) -> dict[str, Any]:
        return await self.request("recording.list", room=room, shipment_id=shipment_id)

    async def recording_playback(self, recording_id: str, room: str) -> dict[str, Any]:
        return await self.request("recording.playback", recording_id=recording_id, room=room)

    async def recording_delete(self, recording_id: str) -> dict[str, Any]:
        return await self.request("recording.delete", recording_id=recording_id)

    async def recording_media(self, recording_id: str) -> dict[str, Any]:
        return await self.request("recording.media", recording_id=recording_id)

    async def inspection_verdict(
        self, room: str, verdict: str, refund: Any = None, note: str | None = None
    ) -> dict[str, Any]:
        return await self.request("inspection.verdict", room=room, verdict=verdict, refund=refund, note=note)

    async def audit_get(self, session_id: str) -> dict[str, Any]:
        return await self.request("audit.get", session_id=session_id)

    async def assistant_captions(self, room: str, participant_id: str, on: bool,
                                 lang: str | None = None) -> dict[str, Any]:
        """Live captions of a participant's audio on or off (``assistant.caption`` messages)."""
        return await self.request("assistant.captions", room=room, participant_id=participant_id,
                                  on=on, lang=lang)

    async def assistant_triage(self, room: str, *, shipment_id: str | None = None,
                               track_id: str | None = None, participant_id: str | None = None,
                               photo: str | None = None) -> dict[str, Any]:
        """A return-triage suggestion from a live still (``track_id``/``participant_id``)
        or a base64 ``photo``, compared with the shipment's dispatch photos."""
        return await self.request("assistant.triage", room=room, shipment_id=shipment_id,
                                  track_id=track_id, participant_id=participant_id, photo=photo)

    async def events_subscribe(
        self, rooms: list[str] | None = None, shipment_ids: list[str] | None = None
    ) -> dict[str, Any]:
        return await self.request("events.subscribe", rooms=rooms, shipment_ids=shipment_ids)

    # -- inside

    def _prepare(self, msg_type: str, fields: dict[str, Any]) -> tuple[int, bytes | str]:
        self._raise_if_closed()
        request_id = next(self._ids)
        msg = {"type": msg_type, "id": request_id}
        msg.update((k, v) for k, v in fields.items() if v is not None)
        return request_id, self.codec.encode(msg)

    async def _attempt(self, request_id: int, frame: bytes | str, timeout: float | None) -> dict[str, Any]:
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._send(frame)
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                return await future
        finally:
            self._pending.pop(request_id, None)
            if future.done() and not future.cancelled():
                future.exception()  # mark it retrieved: raised above, or superseded
            else:
                future.cancel()
                self._abandoned.add(request_id)  # its late reply is dropped

    async def _wait_advice(self) -> None:
        loop = asyncio.get_running_loop()
        while (wait := self._not_before - loop.time()) > 0:
            await asyncio.sleep(wait)

    def _advised(self, msg: dict[str, Any]) -> None:
        # Any rate_limited answer: counted; with retry_after_ms: nothing is sent before
        # it has passed (measured from now, after the server sent it: never too early).
        self.rate_limited_seen += 1
        retry_after_ms = _retry_after_ms(msg)
        if retry_after_ms is not None:
            not_before = asyncio.get_running_loop().time() + retry_after_ms / 1000.0
            self._not_before = max(self._not_before, not_before)
            self._throttled = True

    async def _send(self, frame: bytes | str) -> None:
        try:
            await self.ws.send(frame)
        except ConnectionClosed:
            # Report the close as the reader saw it (with the server's code).
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._raise_if_closed()
            raise

    def _raise_if_closed(self) -> None:
        if self._closed is not None:
            # A fresh exception each time: one raised many times grows its traceback.
            raise SessionClosed(*self._closed) from None

    async def _read_loop(self) -> None:
        try:
            async for frame in self.ws:
                try:
                    msg = self.codec.decode(frame)
                except SignallingError as exc:
                    logger.warning("undecodable message from the server: %s", exc)
                    continue
                self._deliver(msg)
        except ConnectionClosed:
            pass
        finally:
            protocol = self.ws.protocol
            self._closed = (protocol.close_rcvd, protocol.close_sent, protocol.close_rcvd_then_sent)
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(SessionClosed(*self._closed))
            self._wake()

    def _deliver(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "error" and msg.get("code") == "rate_limited":
            self._advised(msg)
        request_id = msg.get("id")
        future = self._pending.get(request_id) if valid_id(request_id) else None
        if valid_id(request_id) and request_id in self._abandoned:
            self._abandoned.discard(request_id)
            return
        if future is not None:
            if future.done():
                return
            if msg["type"] == "error":
                future.set_exception(ServerError(str(msg.get("code")), str(msg.get("message", "")), msg))
            else:
                future.set_result(msg)
            return
        callbacks = self._callbacks.get(msg["type"])
        if not callbacks:
            self._events.append(msg)
            self._wake()
            return
        for callback in callbacks:
            try:
                result = callback(msg)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception:
                logger.exception("event callback for %s failed", msg["type"])

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = asyncio.Event()
