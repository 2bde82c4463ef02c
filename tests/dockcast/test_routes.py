"""dockcast.routes: /healthz follows draining, /metrics is Prometheus text, /web/ serves."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from dockcast.routes import WEB_DIR, install_routes
from signalling.http import HttpRoutes


async def test_health_metrics_and_web_pages():
    registry = CollectorRegistry()
    Counter("dockcast_test_things", "things", registry=registry).inc(3)
    draining = [False]
    http = HttpRoutes()
    install_routes(http, registry, lambda: draining[0])
    assert await http.respond("/healthz") == (200, "text/plain", b"ok\n")
    draining[0] = True
    assert (await http.respond("/healthz"))[0] == 503
    status, content_type, body = await http.respond("/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert b"dockcast_test_things_total 3.0" in body
    status, content_type, body = await http.respond("/web/dockcast.js")
    assert status == 200 and content_type.startswith("text/javascript")
    assert body == (WEB_DIR / "dockcast.js").read_bytes()
    assert (await http.respond("/web/../dockcast/node.py"))[0] in (403, 404)
    assert (await http.respond("/nothing"))[0] == 404
    status, content_type, body = await http.respond("/favicon.ico")
    assert (status, content_type) == (200, "image/x-icon") and body[:4] == b"\x00\x00\x01\x00"
