"""Errors of the signalling package: one tree, every error with its wire code.

    SignallingError(code, message)          base; ``code`` is the wire error code
    ├── BadRequest       bad_request        undecodable frame, not a map, unknown type, bad field
    ├── Unauthorized     unauthorized       no, bad or expired token
    ├── Forbidden        forbidden          the token's grants or room do not allow this
    ├── NotFound         not_found          unknown room, track, shipment, recording, session
    ├── Conflict         conflict           e.g. a shipment bound to another open room
    ├── TooLarge         too_large          frame or payload over the configured limit
    ├── RateLimited      rate_limited       too many requests; the connection stays open (retry_after_ms)
    ├── Unavailable      unavailable        draining, or a dependency is down
    ├── Internal         internal           a bug; logged with the request id
    ├── client.ServerError        (the server's code)   an ``error`` the server answered
    ├── messages.log.RoomLogError              internal
    │   ├── InvalidMessage (also ValueError)   bad_request   an argument the log refuses
    │   └── AckBeyondEnd (also ValueError)     bad_request   an ack past the room's last seq
    ├── durable.DurableDbError                 unavailable
    │   ├── StoreUnavailable                   unavailable   the disk or database failed
    │   └── StoreClosed                        unavailable   the store was closed
    ├── hooks.PluginError (also ValueError)    internal      a plugin cannot load or start
    └── membership.MembershipError             internal      a caller contradicts the state

    websockets.ConnectionClosed
    └── client.SessionClosed       the client's connection ended (close code, no wire code)

Each error carries the wire code of ``PROTOCOL.md`` in ``code`` and a human ``message``.
Other packages need not import this one: any exception with a ``code`` attribute naming
a wire code (``sfu.errors.SfuError`` and its subclasses do) maps the same way through
:func:`error_message`. The client raises ``client.ServerError``, also a subclass.

Close codes this layer uses are listed here so that server and client share them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ERROR_CODES",
    "CLOSE_UNAUTHORIZED",
    "CLOSE_ABUSE",
    "CLOSE_SLOW_CONSUMER",
    "SignallingError",
    "FixedCodeError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "TooLarge",
    "RateLimited",
    "Unavailable",
    "Internal",
    "error_code",
    "error_message",
]

#: Every wire error code of ``PROTOCOL.md``.
ERROR_CODES = frozenset(
    {
        "bad_request",
        "unauthorized",
        "forbidden",
        "not_found",
        "conflict",
        "too_large",
        "rate_limited",
        "unavailable",
        "internal",
    }
)

#: The first message was not ``hello``, the token was refused, or it expired.
CLOSE_UNAUTHORIZED = 4001
#: Sustained abuse: too many bad messages within the configured window.
CLOSE_ABUSE = 4008
#: The connection did not read its events fast enough (its send queue overflowed).
CLOSE_SLOW_CONSUMER = 4013

# What a client sees for an internal error: the details stay in the server log.
_INTERNAL_TEXT = "internal error; the server logged it"


class SignallingError(Exception):
    """An error that the server answers with ``{"type": "error", "code": code, ...}``.

    ``request_id`` is the ``id`` of the request it answers, when the layer that raises
    it already knows it (the codec does, for a map whose ``type`` is bad).
    """

    code: str = "internal"

    def __init__(self, code: str, message: str = "", *, request_id: int | str | None = None):
        super().__init__(message or code)
        self.code = code
        self.message = message or code
        self.request_id = request_id


class FixedCodeError(SignallingError):
    """A `SignallingError` whose subclass fixes ``code`` in a class attribute; it takes
    only the message."""

    def __init__(self, message: str = "", *, request_id: int | str | None = None):
        super().__init__(type(self).code, message, request_id=request_id)


class BadRequest(FixedCodeError):
    code = "bad_request"


class Unauthorized(FixedCodeError):
    code = "unauthorized"


class Forbidden(FixedCodeError):
    code = "forbidden"


class NotFound(FixedCodeError):
    code = "not_found"


class Conflict(FixedCodeError):
    code = "conflict"


class TooLarge(FixedCodeError):
    code = "too_large"


class RateLimited(FixedCodeError):
    """``retry_after_ms``: how long the client should wait before its next request (an
    integer, at least 1; ``None``: not known). The wire error carries it."""

    code = "rate_limited"

    def __init__(self, message: str = "", *, request_id: int | str | None = None,
                 retry_after_ms: int | None = None):
        super().__init__(message, request_id=request_id)
        self.retry_after_ms = None if retry_after_ms is None else max(1, int(retry_after_ms))


class Unavailable(FixedCodeError):
    code = "unavailable"


class Internal(FixedCodeError):
    code = "internal"


def error_code(exc: BaseException) -> str:
    """The wire code for ``exc``: its ``code`` attribute if that is a wire code, else
    ``internal``."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) and code in ERROR_CODES else "internal"


def error_message(exc: BaseException, request_id: int | str | None = None) -> dict[str, Any]:
    """The ``error`` message answering ``exc``.

    ``request_id`` defaults to the error's own ``request_id`` (if any); without one the
    message carries no ``id``. An ``internal`` error never shows the exception's text,
    which may hold details meant for the log only. A ``rate_limited`` error carries the
    exception's ``retry_after_ms`` when it has one.
    """
    code = error_code(exc)
    if request_id is None:
        request_id = getattr(exc, "request_id", None)
    if code == "internal":
        text = _INTERNAL_TEXT if request_id is None else f"{_INTERNAL_TEXT} with request id {request_id!r}"
    else:
        text = getattr(exc, "message", None) or str(exc) or code
    msg: dict[str, Any] = {"type": "error", "code": code, "message": text}
    if request_id is not None:
        msg["id"] = request_id
    retry_after_ms = getattr(exc, "retry_after_ms", None)
    if code == "rate_limited" and isinstance(retry_after_ms, int) and not isinstance(retry_after_ms, bool):
        msg["retry_after_ms"] = max(1, retry_after_ms)
    return msg
