"""Plain HTTP beside the websocket: routes (``/healthz``, ``/metrics``) and static files.

`HttpRoutes` answers a request with an `HttpReply` (status, content type, body and
extra headers), knowing nothing of websockets; `signalling.server` turns that into the
upgrade handshake's HTTP response. The websocket library reads no request body (it
refuses one), so a handler gets the method, the path, the query string and the headers
(`HttpRequest`) and nothing else: a ``POST`` carries its fields in the query string.

Routes added with `HttpRoutes.add` answer ``GET`` (and ``HEAD``) with a handler that
takes no argument; `HttpRoutes.add_request` routes other methods to a handler that
takes the `HttpRequest`. A route asked with a method it does not take is 405.
Static files (the browser SDK, the console, the playback page) are served from
directories under a prefix, with `STATIC_HEADERS` (no caching without a check: the
files have no hashed names, there is no build step) plus the headers given for that
directory (a Content-Security-Policy); paths that leave the directory (``..``, links,
NUL or backslash) are refused with 403, and a directory serves its ``index.html``.
"""

from __future__ import annotations

import asyncio
import mimetypes
import pathlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["HttpRoutes", "HttpHandler", "HttpRequest", "HttpReply", "RequestHandler", "Response",
           "NOT_FOUND", "FORBIDDEN", "STATIC_HEADERS", "content_type"]

Response = tuple[int, str, bytes]
"""``(status, content_type, body)``."""
HttpHandler = Callable[[], Awaitable[Response]]

_TEXT = "text/plain; charset=utf-8"
NOT_FOUND: Response = (404, _TEXT, b"not found\n")
FORBIDDEN: Response = (403, _TEXT, b"forbidden\n")
_READ_METHODS = ("GET", "HEAD")

STATIC_HEADERS: tuple[tuple[str, str], ...] = (
    ("Cache-Control", "no-cache"),  # kept, but checked again before each use
    ("X-Content-Type-Options", "nosniff"),
)
"""Headers of every static file."""


@dataclass(frozen=True)
class HttpRequest:
    """What a handler may read of a plain HTTP request (there is never a body)."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    """Each query field's first value."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Header names in lower case; a repeated header's first value."""

    @classmethod
    def parse(cls, method: str, target: str, headers: Iterable[tuple[str, str]] = ()) -> HttpRequest:
        """The request for ``method target`` (``target``: path and query string)."""
        split = urlsplit(target)
        query: dict[str, str] = {}
        for name, value in parse_qsl(split.query, keep_blank_values=True):
            query.setdefault(name, value)
        lowered: dict[str, str] = {}
        for name, value in headers:
            lowered.setdefault(name.lower(), value)
        return cls(method.upper(), split.path or "/", MappingProxyType(query), MappingProxyType(lowered))


@dataclass(frozen=True)
class HttpReply:
    """An answer: status, content type, body, and headers beside ``Content-Type``."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, answer: HttpReply | Response) -> HttpReply:
        """``answer`` as a reply (handlers may return a plain `Response`)."""
        return answer if isinstance(answer, HttpReply) else cls(*answer)

    @property
    def response(self) -> Response:
        """The ``(status, content_type, body)`` of this reply, headers left out."""
        return self.status, self.content_type, self.body


RequestHandler = Callable[[HttpRequest], Awaitable["HttpReply | Response"]]


class HttpRoutes:
    """Exact paths answered by handlers, then prefixes served from directories."""

    def __init__(self) -> None:
        self._routes: dict[str, tuple[tuple[str, ...], RequestHandler]] = {}
        self._static: list[tuple[str, pathlib.Path, tuple[tuple[str, str], ...]]] = []

    def add(self, path: str, handler: HttpHandler) -> None:
        """Answer ``GET path`` (and ``HEAD``) with ``await handler()``."""

        async def call(request: HttpRequest) -> Response:
            return await handler()

        self._routes[path] = (_READ_METHODS, call)

    def add_request(self, path: str, handler: RequestHandler, methods: Iterable[str] = _READ_METHODS) -> None:
        """Answer ``path`` asked with one of ``methods`` with ``await handler(request)``."""
        self._routes[path] = (tuple(m.upper() for m in methods), handler)

    def add_static(self, prefix: str, directory: str | pathlib.Path,
                   headers: Iterable[tuple[str, str]] = ()) -> None:
        """Serve the files below ``directory`` at ``prefix``, with `STATIC_HEADERS` and
        ``headers`` (a Content-Security-Policy for pages, say)."""
        self._static.append((prefix.rstrip("/") + "/", pathlib.Path(directory).resolve(),
                             STATIC_HEADERS + tuple(headers)))

    async def respond(self, path: str) -> Response:
        """The answer to ``GET path`` (already split from its query string), headers
        left out (`reply` has them)."""
        return (await self.reply(HttpRequest("GET", path))).response

    async def reply(self, request: HttpRequest) -> HttpReply:
        """The answer to ``request``: its route's, a static file, 404 or 405."""
        route = self._routes.get(request.path)
        if route is not None:
            methods, handler = route
            if request.method not in methods:
                return HttpReply(405, _TEXT, b"method not allowed\n", (("Allow", ", ".join(methods)),))
            return HttpReply.of(await handler(request))
        for prefix, directory, headers in self._static:
            if request.path.startswith(prefix) or request.path == prefix.rstrip("/"):
                if request.method not in _READ_METHODS:
                    return HttpReply(405, _TEXT, b"method not allowed\n", (("Allow", "GET, HEAD"),))
                status, kind, body = await static_file(directory, request.path[len(prefix):])
                return HttpReply(status, kind, body, headers if status == 200 else ())
        return HttpReply(*NOT_FOUND)


async def static_file(directory: pathlib.Path, relative: str) -> Response:
    """The file at ``relative`` below ``directory``, if it stays below it."""
    relative = unquote(relative)
    if "\x00" in relative or "\\" in relative:
        return FORBIDDEN
    target = (directory / relative.lstrip("/")).resolve()
    if target != directory and directory not in target.parents:
        return FORBIDDEN
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return NOT_FOUND
    body = await asyncio.to_thread(target.read_bytes)
    return 200, content_type(target), body


def content_type(path: pathlib.Path) -> str:
    """The ``Content-Type`` of the file at ``path`` (text in UTF-8)."""
    if path.suffix in (".js", ".mjs"):
        return "text/javascript; charset=utf-8"
    if path.suffix == ".json":
        return "application/json"
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed is None:
        return "application/octet-stream"
    return guessed + ("; charset=utf-8" if guessed.startswith("text/") else "")
