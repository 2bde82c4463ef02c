"""signalling.http: requests parsed from the request line, routes by method, static
files with their headers."""

from __future__ import annotations

from hypothesis import given, strategies as st

from signalling.http import STATIC_HEADERS, HttpReply, HttpRequest, HttpRoutes, content_type


def test_request_parse_splits_path_query_and_headers():
    request = HttpRequest.parse("post", "/dev/token?identity=a&room=&grants=x&identity=b",
                                [("Host", "h:1"), ("ORIGIN", "http://h:1"), ("host", "other")])
    assert (request.method, request.path) == ("POST", "/dev/token")
    assert dict(request.query) == {"identity": "a", "room": "", "grants": "x"}
    assert dict(request.headers) == {"host": "h:1", "origin": "http://h:1"}
    assert HttpRequest.parse("GET", "").path == "/"


@given(st.text(max_size=300), st.text(max_size=10))
def test_request_parse_takes_any_target(target, method):
    request = HttpRequest.parse(method, target)
    assert isinstance(request.path, str) and all(isinstance(v, str) for v in request.query.values())


async def test_methods_routes_and_static_headers(tmp_path):
    (tmp_path / "app.js").write_text("export {};")
    (tmp_path / "data.json").write_text("{}")
    http = HttpRoutes()
    seen = []

    async def health():
        return 200, "text/plain", b"ok\n"

    async def mint(request: HttpRequest):
        seen.append(request)
        return HttpReply(200, "application/json", b"{}", (("Cache-Control", "no-store"),))

    http.add("/healthz", health)
    http.add_request("/mint", mint, methods=("POST",))
    http.add_static("/app/", tmp_path, (("Content-Security-Policy", "default-src 'self'"),))
    assert (await http.reply(HttpRequest.parse("HEAD", "/healthz"))).status == 200
    refused = await http.reply(HttpRequest.parse("POST", "/healthz"))
    assert refused.status == 405 and dict(refused.headers)["Allow"] == "GET, HEAD"
    minted = await http.reply(HttpRequest.parse("POST", "/mint?x=1"))
    assert minted.headers == (("Cache-Control", "no-store"),) and seen[0].query["x"] == "1"
    assert (await http.reply(HttpRequest.parse("GET", "/mint"))).status == 405
    script = await http.reply(HttpRequest.parse("GET", "/app/app.js"))
    assert script.content_type == "text/javascript; charset=utf-8"
    assert script.headers == STATIC_HEADERS + (("Content-Security-Policy", "default-src 'self'"),)
    assert (await http.reply(HttpRequest.parse("PUT", "/app/app.js"))).status == 405
    missing = await http.reply(HttpRequest.parse("GET", "/app/none.js"))
    assert missing.status == 404 and missing.headers == ()
    assert await http.respond("/healthz") == (200, "text/plain", b"ok\n")
    assert content_type(tmp_path / "data.json") == "application/json"
