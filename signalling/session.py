"""The sans-IO core of one signalling connection.

:class:`SessionCore` takes frames and the time, and returns :class:`Action` values for
the adapter to carry out; it never touches a socket or reads a clock by itself (``now``
is passed in; ``clock`` only supplies it when the caller passes ``None``). One core per
websocket connection:

    core = SessionCore(verifier, NodeInfo("node-1", "us-west", "0.1.0"), Limits())
    for action in core.receive_frame(frame, now):
        ...  # Send(msg): encode with core.codec and send; Dispatch(request): run the
             # app's handler; Authenticated(claims, refreshed); Close(code, reason)

What the core does by itself, in this order, for each frame: size limit and decoding
(``too_large``, ``bad_request``); first message must be ``hello`` (else ``unauthorized``
and close 4001); the per-connection token bucket (``rate_limited``); validation against
:mod:`signalling.schema` (``bad_request``); token expiry (``unauthorized``, close 4001);
``ping`` (answered ``pong`` here); draining (``unavailable`` except ``leave``/``ping``);
grants (``forbidden``); joined room (``bad_request``); ``send.payload`` size
(``too_large``); then :class:`Dispatch`. A rejected message changes no state; a
rejection counts towards the abuse window, and ``abuse_threshold`` of them within
``abuse_window`` seconds close the connection with 4008.

``rate_limited`` carries ``retry_after_ms``: when the bucket has a token again (an
integer, at least 1), and the core remembers that moment (the *advice*). A client that
waits that long is never closed for it: a ``rate_limited`` rejection counts towards the
abuse window only when its frame arrived before the advice it was last given had run
out, and then once per advice (the frames a client had already sent before it could
read the advice, pipelined requests, count once together). A client that ignores the
advice is closed after ``abuse_threshold`` ignored advices within ``abuse_window``.

States and their transitions are data (:data:`TRANSITIONS`): ``AWAIT_HELLO`` until a
``hello`` with a valid token, then ``READY`` (a later ``hello`` refreshes the token for
the same identity, and for a room that admits the one the connection is in), ``CLOSED``
after any :class:`Close` or :meth:`connection_lost`. :meth:`get_timer` says when the
adapter must call :meth:`handle_timer`: the ``hello`` timeout, then the token's expiry,
which closes even an idle connection (``unauthorized``, 4001).
"""

from __future__ import annotations

import enum
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .codec import DEFAULT_MAX_DEPTH, DEFAULT_MAX_FRAME_BYTES, Codec, codec_for, valid_id, wire_ts
from .errors import (
    CLOSE_ABUSE,
    CLOSE_UNAUTHORIZED,
    BadRequest,
    Forbidden,
    RateLimited,
    SignallingError,
    TooLarge,
    Unauthorized,
    Unavailable,
    error_message,
)
from .schema import Request, validate
from .tokens import Claims, TokenVerifier

__all__ = [
    "State",
    "Transition",
    "TRANSITIONS",
    "Limits",
    "NodeInfo",
    "Action",
    "Send",
    "Dispatch",
    "Authenticated",
    "Close",
    "TokenBucket",
    "AbuseWindow",
    "SessionCore",
    "require_room",
]

_EXPIRED = "token expired; reconnect or send hello with a fresh token"

# Float slack, in seconds (Unix times carry about 0.2 us of rounding): a token due at the
# advised moment is there at that moment.
_SLACK_S = 1e-6

#: Requests still served while the node drains.
DRAIN_ALLOWED = frozenset({"leave", "ping"})


class State(enum.Enum):
    AWAIT_HELLO = "await_hello"
    READY = "ready"
    CLOSED = "closed"


class Transition(enum.Enum):
    HELLO_ACCEPTED = "hello_accepted"
    CLOSE = "close"


#: state -> what happened -> next state. Anything else is a bug in the core.
TRANSITIONS: Mapping[State, Mapping[Transition, State]] = MappingProxyType(
    {
        State.AWAIT_HELLO: {Transition.HELLO_ACCEPTED: State.READY, Transition.CLOSE: State.CLOSED},
        State.READY: {Transition.HELLO_ACCEPTED: State.READY, Transition.CLOSE: State.CLOSED},
        State.CLOSED: {Transition.CLOSE: State.CLOSED},
    }
)


@dataclass(frozen=True)
class Limits:
    """Every limit of a signalling connection, with its default.

    - ``max_frame_bytes``: a larger frame is answered ``too_large`` (without an ``id``:
      it is not decoded). Frames over ``hard_frame_bytes`` (``hard_frame_factor`` times
      as large) are not even read: websockets closes the connection with 1009.
    - ``max_payload_bytes``: the encoded size of ``send.payload``; over it, ``too_large``.
    - ``max_depth``: maps and arrays nested deeper are ``bad_request``.
    - ``rate``, ``burst``: the token bucket of each connection, in frames per second and
      frames; a frame finding it empty is answered ``rate_limited`` with
      ``retry_after_ms``, the wait until the bucket has a token again.
    - ``abuse_threshold``, ``abuse_window``: that many rejected frames within that many
      seconds close the connection with 4008 (a ``rate_limited`` one counts only when the
      client did not wait as it was told: see the module docstring).
    - ``hello_timeout``: seconds a connection may stay without a valid ``hello``
      (then ``unauthorized`` and close 4001).
    - ``max_pending_requests``: requests waiting for the app's handlers, per connection;
      beyond it, ``rate_limited``.
    - ``max_queued_messages``: messages waiting to be written to a connection; a
      consumer that lets more pile up is disconnected with 4013.
    - ``close_grace``: seconds a disconnect waits for the connection's running handler
      before cancelling it and calling the disconnect hooks.
    - ``max_connections``: node-wide, websocket connections open at once (those still
      in their opening handshake included); one more is refused at the handshake with
      HTTP 503 (the adapter's job); ``0``: no limit.
    """

    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    hard_frame_factor: int = 4
    max_payload_bytes: int = 64 * 1024
    max_depth: int = DEFAULT_MAX_DEPTH
    rate: float = 50.0
    burst: int = 100
    abuse_threshold: int = 20
    abuse_window: float = 10.0
    hello_timeout: float = 10.0
    max_pending_requests: int = 256
    max_queued_messages: int = 1024
    close_grace: float = 5.0
    max_connections: int = 10_000

    @property
    def hard_frame_bytes(self) -> int:
        return self.max_frame_bytes * self.hard_frame_factor

    def to_wire(self) -> dict[str, int]:
        """The limits a client needs to know (sent in ``welcome.limits``)."""
        return {"max_frame_bytes": self.max_frame_bytes, "max_payload_bytes": self.max_payload_bytes}


@dataclass(frozen=True)
class NodeInfo:
    """Who answers: reported in every ``welcome``."""

    node: str
    region: str
    server_version: str


# ---- actions ---------------------------------------------------------------------------


class Action:
    """Something the adapter must do, in the order returned."""


@dataclass(frozen=True)
class Send(Action):
    """Send ``msg`` to the client (encode it with ``SessionCore.codec``)."""

    msg: dict[str, Any]


@dataclass(frozen=True)
class Dispatch(Action):
    """A valid, allowed request for the app: answer it with its success message or an
    error carrying ``request.id``."""

    request: Request


@dataclass(frozen=True)
class Authenticated(Action):
    """A ``hello`` was accepted; ``refreshed`` when it replaced the token of a session
    that was already authenticated."""

    claims: Claims
    refreshed: bool


@dataclass(frozen=True)
class Close(Action):
    """Close the websocket with ``code`` after sending what came before."""

    code: int
    reason: str


# ---- counters --------------------------------------------------------------------------


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full."""

    def __init__(self, rate: float, burst: int):
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self._tokens >= 1.0 - min(_SLACK_S * self.rate, 0.01):
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def retry_after(self, now: float) -> float:
        """Seconds from ``now`` until :meth:`take` succeeds again (0: it would now)."""
        self._refill(now)
        wait = (1.0 - self._tokens) / self.rate
        return 0.0 if wait <= _SLACK_S else wait


class AbuseWindow:
    """Counts events in a sliding window; :meth:`record` says when ``threshold`` of them
    fell within ``window`` seconds."""

    def __init__(self, threshold: int, window: float):
        self.threshold = threshold
        self.window = window
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        self._times.append(now)
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        return len(self._times) >= self.threshold


# ---- the core --------------------------------------------------------------------------


class SessionCore:
    """One connection's session: see the module docstring.

    Public attributes the adapter and app read: ``state``, ``session_id``, ``claims``
    (``None`` until ``hello``), ``resume`` (the ``hello.resume`` map, or ``None``),
    ``codec``, ``room`` (the joined room, or ``None``: the adapter sets ``room_of``,
    which asks the node's membership); the adapter sets ``draining`` and may set
    ``placement`` (a cluster's choice of node: ``welcome.redirect``), ``alternates``
    (the cluster's other nodes: ``welcome.nodes``).
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        node_info: NodeInfo,
        limits: Limits = Limits(),
        clock: Callable[[], float] = time.time,
        *,
        subprotocol: str | None = None,
        session_id: str | None = None,
    ):
        self.verifier = verifier
        self.node_info = node_info
        self.limits = limits
        self.clock = clock
        self.codec: Codec = codec_for(subprotocol, limits.max_frame_bytes, limits.max_depth)
        self.state = State.AWAIT_HELLO
        self.session_id = session_id or secrets.token_urlsafe(12)
        self.claims: Claims | None = None
        self.resume: dict[str, Any] | None = None
        self.room_of: Callable[[], str | None] = lambda: None
        # which node should serve this client instead (the cluster's placement): given
        # the token's claims and the hello's region hint, a URL, or None to stay
        self.placement: Callable[[Claims, str | None], str | None] = lambda claims, region: None
        # the cluster's other live nodes, nearest first (``welcome.nodes``): where a
        # client goes when this node stops answering
        self.alternates: Callable[[], list[dict[str, Any]]] = list
        self.draining = False
        self._opened_at = clock()
        self._bucket = TokenBucket(limits.rate, limits.burst)
        self._abuse = AbuseWindow(limits.abuse_threshold, limits.abuse_window)
        # The last rate_limited advice: when it runs out, and whether an early frame
        # under it was counted already.
        self._advice_until: float | None = None
        self._advice_counted = False

    @property
    def room(self) -> str | None:
        """The room this connection is in, as the membership says."""
        return self.room_of()

    # -- input

    def receive_frame(self, frame: bytes | str, now: float | None = None) -> list[Action]:
        """Process one websocket frame; return what the adapter must do."""
        if self.state is State.CLOSED:
            return []
        now = self.clock() if now is None else now
        try:
            msg = self.codec.decode(frame)
            request_id = msg.get("id") if valid_id(msg.get("id")) else None
            if self.state is State.AWAIT_HELLO and msg["type"] != "hello":
                return self._refuse(Unauthorized("the first message must be hello"), request_id)
            if not self._bucket.take(now):
                raise RateLimited(
                    "too many requests; slow down",
                    request_id=request_id,
                    retry_after_ms=_ceil_ms(self._bucket.retry_after(now)),
                )
            request = validate(msg)
            return self._handle(request, now)
        except SignallingError as exc:
            return self.reject(exc, now)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next (same clock as ``now``), if ever:
        the ``hello`` timeout, then the token's expiry (``exp`` plus the leeway)."""
        if self.state is State.AWAIT_HELLO:
            return self._opened_at + self.limits.hello_timeout
        if self.state is State.READY and self.claims is not None:
            return self.claims.exp + self.verifier.leeway
        return None

    def handle_timer(self, now: float | None = None) -> list[Action]:
        """Run when :meth:`get_timer` said (early or late is fine): no ``hello`` in time,
        or the token expired (even on an idle connection): ``unauthorized``, close 4001."""
        now = self.clock() if now is None else now
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return []
        if self.state is State.AWAIT_HELLO:
            return self._refuse(Unauthorized("no hello in time"), None)
        return self._refuse(Unauthorized(_EXPIRED), None)

    def reject(self, exc: BaseException, now: float | None = None) -> list[Action]:
        """Answer a bad message with an error, counting it towards the abuse window.

        A :class:`RateLimited` with ``retry_after_ms`` (the adapter's
        ``max_pending_requests`` overflow too) is advice: it counts only when the frame
        came before the last advice ran out, once per advice (module docstring)."""
        now = self.clock() if now is None else now
        actions: list[Action] = [Send(error_message(exc))]
        if self._counts_as_abuse(exc, now) and self._abuse.record(now):
            actions.append(self._close(CLOSE_ABUSE, "too many bad messages"))
        return actions

    def _counts_as_abuse(self, exc: BaseException, now: float) -> bool:
        retry_after_ms = getattr(exc, "retry_after_ms", None)
        if not isinstance(exc, RateLimited) or retry_after_ms is None:
            return True
        until = now + retry_after_ms / 1000.0
        if self._advice_until is None or now >= self._advice_until - _SLACK_S:
            # The client waited as told (or was never told): new advice, not abuse.
            self._advice_until, self._advice_counted = until, False
            return False
        # Early: the advice had not run out. It stands (extended if this one is later).
        self._advice_until = max(self._advice_until, until)
        if self._advice_counted:
            return False
        self._advice_counted = True
        return True

    def connection_lost(self) -> None:
        """The socket closed; nothing more will be processed."""
        self._transition(Transition.CLOSE)

    # -- steps

    def _handle(self, request: Request, now: float) -> list[Action]:
        if request.type == "hello":
            return self._hello(request, now)
        assert self.claims is not None
        if self.claims.expired(now, self.verifier.leeway):
            return self._refuse(Unauthorized(_EXPIRED), request.id)
        if request.type == "ping":
            return [Send(_without_none_id({"type": "pong", "id": request.id, "ts": wire_ts(now)}))]
        self._check_allowed(request)
        if request.type == "send":
            self._check_payload(request)
        return [Dispatch(request)]

    def _hello(self, request: Request, now: float) -> list[Action]:
        if self.draining:
            raise Unavailable("node is draining; connect to another node", request_id=request.id)
        try:
            claims = self.verifier.verify(request["token"], now)
        except Unauthorized as exc:
            if self.state is State.AWAIT_HELLO:
                return self._refuse(exc, request.id)
            exc.request_id = request.id
            raise  # a failed refresh keeps the session and its current token
        refreshed = self.state is State.READY
        if refreshed:
            assert self.claims is not None
            if claims.identity != self.claims.identity:
                raise Forbidden("a refreshed token must be for the same identity", request_id=request.id)
            room = self.room
            if room is not None and claims.room is not None and claims.room != room:
                # never keep a connection in a room its token no longer admits
                raise Forbidden(
                    f"the refreshed token does not admit room {room!r}, which this connection "
                    "is in; leave it first",
                    request_id=request.id,
                )
        else:
            resume = request.get("resume")
            self.resume = dict(resume) if resume is not None else None
        self.claims = claims
        self._transition(Transition.HELLO_ACCEPTED)
        welcome = {
            "type": "welcome",
            "id": request.id,
            "identity": claims.identity,
            "session_id": self.session_id,
            "grants": claims.grants.to_dict(),
            "node": self.node_info.node,
            "region": self.node_info.region,
            "server_version": self.node_info.server_version,
            "limits": self.limits.to_wire(),
        }
        if not refreshed:
            redirect = self.placement(claims, request.get("region"))
            if redirect is not None:
                welcome["redirect"] = redirect
            nodes = self.alternates()
            if nodes:
                welcome["nodes"] = nodes
        return [Send(_without_none_id(welcome)), Authenticated(claims, refreshed)]

    def _check_allowed(self, request: Request) -> None:
        assert self.claims is not None
        spec = request.spec
        if self.draining and request.type not in DRAIN_ALLOWED:
            raise Unavailable("node is draining; connect to another node", request_id=request.id)
        if spec.grants and not any(self.claims.grants.allows(g) for g in spec.grants):
            needed = " or ".join(sorted(spec.grants))
            raise Forbidden(f"{request.type} needs the {needed} grant", request_id=request.id)
        if spec.in_room and self.room is None:
            raise BadRequest(f"{request.type} needs a joined room; send join first", request_id=request.id)

    def _check_payload(self, request: Request) -> None:
        size = self.codec.encoded_size(request["payload"])
        if size > self.limits.max_payload_bytes:
            raise TooLarge(
                f"payload of {size} bytes is over the limit of {self.limits.max_payload_bytes}",
                request_id=request.id,
            )

    def _refuse(self, exc: SignallingError, request_id: Any) -> list[Action]:
        # Unauthorized before or instead of a session: say why, then close.
        return [Send(error_message(exc, request_id)), self._close(CLOSE_UNAUTHORIZED, exc.message)]

    def _close(self, code: int, reason: str) -> Close:
        self._transition(Transition.CLOSE)
        return Close(code, reason)

    def _transition(self, event: Transition) -> None:
        self.state = TRANSITIONS[self.state][event]


def require_room(conn: Any, room: str) -> None:
    """Raise ``Forbidden`` unless the token of ``conn`` (anything with ``claims``, or a
    :class:`Claims`) admits ``room``. A token without a room (an admin token) admits
    every room."""
    claims = conn if isinstance(conn, Claims) else getattr(conn, "claims", None)
    if claims is None:
        raise Unauthorized("no token")
    if claims.room is not None and claims.room != room:
        raise Forbidden(f"the token does not admit room {room!r}")



def _ceil_ms(seconds: float) -> int:
    """Whole milliseconds, rounded up, at least 1 (a ``retry_after_ms``)."""
    return max(1, math.ceil((seconds - _SLACK_S) * 1000.0))


def _without_none_id(msg: dict[str, Any]) -> dict[str, Any]:
    if msg.get("id") is None:
        msg.pop("id", None)
    return msg
