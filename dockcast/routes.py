"""The node's plain HTTP routes: ``/healthz``, ``/metrics`` and the browser pages.

- ``/``: the inspection console (``signalling/web/console/index.html``; its scripts and
  styles under ``/console/``), with `PAGE_HEADERS` (a strict Content-Security-Policy:
  the console has no inline script or style and loads nothing from elsewhere);
- ``/web/``: the browser SDK and the test page, as before;
- ``/playback/``: the playback page (``signalling/web/playback/``: a recording beside its
  audit timeline, ``docs/playback.md``), with the same `PAGE_HEADERS`;
- ``/dev`` and ``POST /dev/token``: the developer's page, which mints demo tokens with
  the node's development key, only on a node that runs on development credentials
  (`development_key`); on any other node they are 404 like any unknown path.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from prometheus_client import CollectorRegistry, generate_latest

from signalling.http import HttpReply, HttpRequest, HttpRoutes, RequestHandler, Response
from signalling.tokens import Grants, mint_token

__all__ = ["install_routes", "development_key", "mint_dev_token", "WEB_DIR", "CONSOLE_DIR",
           "PLAYBACK_DIR", "CONSOLE_CSP", "PAGE_HEADERS", "DEV_TOKEN_TTL_S"]

WEB_DIR = pathlib.Path(__file__).resolve().parent.parent / "signalling" / "web"
"""The browser SDK and pages, served at ``/web/``."""
CONSOLE_DIR = WEB_DIR / "console"
"""The inspection console: ``index.html`` at ``/``, the rest at ``/console/``."""
PLAYBACK_DIR = WEB_DIR / "playback"
"""The playback page, at ``/playback/``."""

CONSOLE_CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; "
               "media-src 'self' blob: mediastream:; style-src 'self'; script-src 'self'; "
               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
"""The console's policy: its own scripts and styles only, websockets to any node."""
PAGE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CONSOLE_CSP),
    # the console's URL may carry a token: never send it on as a Referer
    ("Referrer-Policy", "no-referrer"),
    ("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)"),
)
DEV_TOKEN_TTL_S = 12 * 3600.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
_TEXT = "text/plain; charset=utf-8"
_NO_STORE = (("Cache-Control", "no-store"),)


def install_routes(http: HttpRoutes, registry: CollectorRegistry, draining: Callable[[], bool],
                   *, dev_key: tuple[str, str] | None = None,
                   starting: Callable[[], bool] = lambda: False) -> None:
    """``/healthz`` (503 while starting or draining), ``/metrics`` (Prometheus text), ``/favicon.ico``,
    ``/web/``, the console at ``/`` and ``/console/``, the playback page at ``/playback/``;
    with ``dev_key`` (the development API key and secret) also ``/dev`` and ``POST /dev/token``."""

    async def healthz() -> Response:
        if draining():
            return 503, "text/plain", b"draining\n"
        if starting():
            return 503, "text/plain", b"starting\n"
        return 200, "text/plain", b"ok\n"

    async def metrics() -> Response:
        return 200, "text/plain; version=0.0.4", generate_latest(registry)

    async def favicon() -> Response:
        icon = WEB_DIR / "favicon.ico"
        if not icon.is_file():
            return 404, _TEXT, b"not found\n"
        return 200, "image/x-icon", icon.read_bytes()

    http.add("/healthz", healthz)
    http.add("/metrics", metrics)
    http.add("/favicon.ico", favicon)  # what browsers ask for first, beside every page
    if WEB_DIR.is_dir():
        http.add_static("/web/", WEB_DIR)
    if CONSOLE_DIR.is_dir():
        http.add_static("/console/", CONSOLE_DIR, PAGE_HEADERS)
        http.add_request("/", _page(CONSOLE_DIR / "index.html"))
    if PLAYBACK_DIR.is_dir():
        http.add_static("/playback/", PLAYBACK_DIR, PAGE_HEADERS)
    if dev_key is not None:
        _install_dev(http, *dev_key)


def _page(path: pathlib.Path) -> RequestHandler:
    """A handler answering the HTML page at ``path`` with `PAGE_HEADERS`."""

    async def page(request: HttpRequest) -> HttpReply:
        if not path.is_file():
            return HttpReply(404, _TEXT, b"not found\n")
        return HttpReply(200, "text/html; charset=utf-8", path.read_bytes(),
                         (("Cache-Control", "no-cache"), ("X-Content-Type-Options", "nosniff"), *PAGE_HEADERS))

    return page


def _install_dev(http: HttpRoutes, api_key: str, api_secret: str) -> None:
    async def token(request: HttpRequest) -> HttpReply:
        origin = request.headers.get("origin")
        host = request.headers.get("host")
        # another site's page may post here but not read the answer; refuse it anyway
        if origin is not None and (host is None or origin.split("://", 1)[-1] != host):
            return HttpReply(403, _TEXT, b"forbidden: another origin\n")
        try:
            minted = mint_dev_token(api_key, api_secret, request.query)
        except ValueError as exc:
            return HttpReply(400, _TEXT, f"bad request: {exc}\n".encode())
        return HttpReply(200, "application/json", json.dumps(minted).encode(), _NO_STORE)

    http.add_request("/dev", _page(WEB_DIR / "dev.html"))
    http.add_request("/dev/token", token, methods=("POST",))


def mint_dev_token(api_key: str, api_secret: str, fields: Mapping[str, str]) -> dict[str, str]:
    """``{token, url}`` for the query fields ``identity``, ``room``, ``grants`` (comma
    separated names of `signalling.tokens.Grants`) and optional ``name``: a token valid
    `DEV_TOKEN_TTL_S` and the console's URL (relative to the node) that joins with it.
    Raises ValueError naming the field that is missing or wrong."""
    get = fields.get
    identity, room, name = get("identity", ""), get("room", ""), get("name") or None
    if not _NAME.match(identity):
        raise ValueError("identity: 1-64 letters, digits or . _ : @ -, starting with a letter or digit")
    if not _NAME.match(room):
        raise ValueError("room: 1-64 letters, digits or . _ : @ -, starting with a letter or digit")
    if name is not None and (len(name) > 64 or any(ord(c) < 32 for c in name)):
        raise ValueError("name: at most 64 characters, no control characters")
    grants = [g.strip() for g in get("grants", "").split(",") if g.strip()]
    known = Grants.names_all()
    unknown = sorted(set(grants) - set(known))
    if unknown:
        raise ValueError(f"grants: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    token = mint_token(api_key, api_secret, identity, room=room, grants=grants,
                       ttl=DEV_TOKEN_TTL_S, name=name)
    return {"token": token, "url": "/?" + urlencode({"room": room, "token": token})}


def development_key(data_path: pathlib.Path, api_key: str | None, api_secret: str | None) -> tuple[str, str] | None:
    """``(api_key, api_secret)`` when they are the development pair kept in
    ``<data_path>/dev-credentials.json`` (`dockcast.config.dev_credentials`), else None:
    the node then serves no ``/dev`` page."""
    if api_key is None or api_secret is None:
        return None
    try:
        kept = json.loads((data_path / "dev-credentials.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or (kept.get("api_key"), kept.get("api_secret")) != (api_key, api_secret):
        return None
    return api_key, api_secret
