"""The node's plain HTTP routes: ``/healthz``, ``/metrics`` and the browser pages."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest

from signalling.http import HttpRoutes, Response

__all__ = ["install_routes", "WEB_DIR"]

WEB_DIR = pathlib.Path(__file__).resolve().parent.parent / "signalling" / "web"
"""The browser SDK and pages, served at ``/web/``."""


def install_routes(http: HttpRoutes, registry: CollectorRegistry, draining: Callable[[], bool]) -> None:
    """``/healthz`` (503 while draining), ``/metrics`` (Prometheus text), ``/favicon.ico``,
    ``/web/``."""

    async def healthz() -> Response:
        if draining():
            return 503, "text/plain", b"draining\n"
        return 200, "text/plain", b"ok\n"

    async def metrics() -> Response:
        return 200, "text/plain; version=0.0.4", generate_latest(registry)

    async def favicon() -> Response:
        icon = WEB_DIR / "favicon.ico"
        if not icon.is_file():
            return 404, "text/plain; charset=utf-8", b"not found\n"
        return 200, "image/x-icon", icon.read_bytes()

    http.add("/healthz", healthz)
    http.add("/metrics", metrics)
    http.add("/favicon.ico", favicon)  # what browsers ask for first, beside every page
    if WEB_DIR.is_dir():
        http.add_static("/web/", WEB_DIR)
