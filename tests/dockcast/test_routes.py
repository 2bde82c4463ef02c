"""dockcast.routes: /healthz follows draining, /metrics is Prometheus text, /web/ serves,
the console at / with its policy, and /dev only with a development key."""

from __future__ import annotations

import json

import jwt
from prometheus_client import CollectorRegistry, Counter

from dockcast.routes import (CONSOLE_CSP, CONSOLE_DIR, PLAYBACK_DIR, WEB_DIR, development_key,
                             install_routes, mint_dev_token)
from signalling.http import HttpRequest, HttpRoutes

KEY, SECRET = "devkey", "ab" * 32


async def test_health_metrics_and_web_pages():
    registry = CollectorRegistry()
    Counter("dockcast_test_things", "things", registry=registry).inc(3)
    draining, starting = [False], [True]
    http = HttpRoutes()
    install_routes(http, registry, lambda: draining[0], starting=lambda: starting[0])
    assert await http.respond("/healthz") == (503, "text/plain", b"starting\n")
    starting[0] = False
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


async def test_the_console_is_served_with_its_policy():
    http = HttpRoutes()
    install_routes(http, CollectorRegistry(), lambda: False)
    page = await http.reply(HttpRequest.parse("GET", "/?room=dock-7&token=x"))
    headers = dict(page.headers)
    assert (page.status, page.content_type) == (200, "text/html; charset=utf-8")
    assert page.body == (CONSOLE_DIR / "index.html").read_bytes()
    assert headers["Content-Security-Policy"] == CONSOLE_CSP
    assert headers["Cache-Control"] == "no-cache" and headers["Referrer-Policy"] == "no-referrer"
    for path, kind in (("/console/console.js", "text/javascript; charset=utf-8"), ("/console/console.css", "text/css; charset=utf-8")):
        reply = await http.reply(HttpRequest.parse("GET", path))
        assert (reply.status, reply.content_type) == (200, kind)
        assert dict(reply.headers)["Content-Security-Policy"] == CONSOLE_CSP
    # the page's policy allows no inline script or style: the page has none
    html = page.body.decode()
    assert "<script>" not in html and "style=" not in html and "<style" not in html
    assert "'unsafe-inline'" not in CONSOLE_CSP and "'unsafe-eval'" not in CONSOLE_CSP
    # no development key: no /dev
    assert (await http.reply(HttpRequest.parse("GET", "/dev"))).status == 404
    assert (await http.reply(HttpRequest.parse("POST", "/dev/token?identity=a&room=b"))).status == 404


async def test_the_playback_page_is_served_with_the_same_policy():
    http = HttpRoutes()
    install_routes(http, CollectorRegistry(), lambda: False)
    for target in ("/playback/", "/playback", "/playback/?recording=RC_1&token=x"):
        page = await http.reply(HttpRequest.parse("GET", target))
        assert (page.status, page.content_type) == (200, "text/html; charset=utf-8"), target
        assert page.body == (PLAYBACK_DIR / "index.html").read_bytes()
        assert dict(page.headers)["Content-Security-Policy"] == CONSOLE_CSP
        assert dict(page.headers)["Referrer-Policy"] == "no-referrer"
    for name in ("playback.js", "playback.css", "timeline.js", "i18n.js", "strings.js", "params.js"):
        reply = await http.reply(HttpRequest.parse("GET", f"/playback/{name}"))
        assert reply.status == 200 and dict(reply.headers)["Content-Security-Policy"] == CONSOLE_CSP, name
    html = page.body.decode()  # no inline script or style, which the policy would refuse
    assert "<script>" not in html and "style=" not in html and "<style" not in html
    assert (await http.reply(HttpRequest.parse("POST", "/playback/"))).status == 405


async def test_dev_routes_mint_tokens_with_the_development_key():
    http = HttpRoutes()
    install_routes(http, CollectorRegistry(), lambda: False, dev_key=(KEY, SECRET))
    page = await http.reply(HttpRequest.parse("GET", "/dev"))
    assert page.status == 200 and b"/web/dev.js" in page.body
    reply = await http.reply(HttpRequest.parse(
        "POST", "/dev/token?identity=seller-1&room=dock-7&grants=subscribe,record&name=Li",
        [("Host", "127.0.0.1:8765"), ("Origin", "http://127.0.0.1:8765")]))
    assert (reply.status, reply.content_type) == (200, "application/json")
    assert dict(reply.headers)["Cache-Control"] == "no-store"
    minted = json.loads(reply.body)
    claims = jwt.decode(minted["token"], SECRET, algorithms=["HS256"])
    assert (claims["iss"], claims["sub"], claims["room"], claims["name"]) == (KEY, "seller-1", "dock-7", "Li")
    assert claims["grants"] == {"publish": False, "subscribe": True, "message": False, "record": True, "admin": False}
    assert minted["url"] == "/?room=dock-7&token=" + minted["token"]
    assert (await http.reply(HttpRequest.parse("GET", "/dev/token?identity=a&room=b"))).status == 405
    cross = await http.reply(HttpRequest.parse("POST", "/dev/token?identity=a&room=b",
                                               [("Host", "127.0.0.1:8765"), ("Origin", "http://evil.example")]))
    assert cross.status == 403
    bad = await http.reply(HttpRequest.parse("POST", "/dev/token?identity=a&room=b&grants=root"))
    assert bad.status == 400 and b"grants: unknown root" in bad.body


def test_mint_dev_token_names_the_bad_field():
    for fields, named in (({"room": "r"}, "identity"), ({"identity": "a"}, "room"),
                          ({"identity": "-a", "room": "r"}, "identity"), ({"identity": "a", "room": "r/1"}, "room"),
                          ({"identity": "a", "room": "r", "name": "x\n"}, "name"),
                          ({"identity": "a", "room": "r", "grants": "publish,fly"}, "grants")):
        try:
            mint_dev_token(KEY, SECRET, fields)
        except ValueError as exc:
            assert str(exc).startswith(named)
        else:
            raise AssertionError(f"{fields} was accepted")


def test_development_key_only_for_the_kept_pair(tmp_path):
    assert development_key(tmp_path, KEY, SECRET) is None  # no file: real credentials
    (tmp_path / "dev-credentials.json").write_text(json.dumps({"api_key": KEY, "api_secret": SECRET}))
    assert development_key(tmp_path, KEY, SECRET) == (KEY, SECRET)
    assert development_key(tmp_path, "prod", "other-secret") is None  # the operator's own
    assert development_key(tmp_path, None, None) is None
    (tmp_path / "dev-credentials.json").write_text("[1, 2]")
    assert development_key(tmp_path, KEY, SECRET) is None
