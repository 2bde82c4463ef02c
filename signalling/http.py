"""Plain HTTP beside the websocket: routes (``/healthz``, ``/metrics``) and static files.

`HttpRoutes` answers a ``GET`` path with ``(status, content_type, body)``, knowing
nothing of websockets; `signalling.server` turns that into the upgrade handshake's
HTTP response. Static files (the browser SDK, the console, the playback page) are
served from directories under a prefix; paths that leave the directory (``..``, links,
NUL or backslash) are refused with 403, and a directory serves its ``index.html``.
"""

from __future__ import annotations

import asyncio
import mimetypes
import pathlib
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

__all__ = ["HttpRoutes", "HttpHandler", "Response", "NOT_FOUND", "FORBIDDEN"]

Response = tuple[int, str, bytes]
"""``(status, content_type, body)``."""
HttpHandler = Callable[[], Awaitable[Response]]

_TEXT = "text/plain; charset=utf-8"
NOT_FOUND: Response = (404, _TEXT, b"not found\n")
FORBIDDEN: Response = (403, _TEXT, b"forbidden\n")


class HttpRoutes:
    """Exact paths answered by handlers, then prefixes served from directories."""

    def __init__(self) -> None:
        self._routes: dict[str, HttpHandler] = {}
        self._static: list[tuple[str, pathlib.Path]] = []

    def add(self, path: str, handler: HttpHandler) -> None:
        """Answer ``GET path`` with ``await handler()``."""
        self._routes[path] = handler

    def add_static(self, prefix: str, directory: str | pathlib.Path) -> None:
        """Serve the files below ``directory`` at ``prefix``."""
        self._static.append((prefix.rstrip("/") + "/", pathlib.Path(directory).resolve()))

    async def respond(self, path: str) -> Response:
        """The answer to ``GET path`` (already split from its query string)."""
        route = self._routes.get(path)
        if route is not None:
            return await route()
        for prefix, directory in self._static:
            if path.startswith(prefix) or path == prefix.rstrip("/"):
                return await static_file(directory, path[len(prefix):])
        return NOT_FOUND


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
    if path.suffix in (".js", ".mjs"):
        return "text/javascript; charset=utf-8"
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed is None:
        return "application/octet-stream"
    return guessed + ("; charset=utf-8" if guessed.startswith("text/") else "")
