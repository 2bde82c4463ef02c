"""The websockets adapter, through real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import jwt
import msgpack
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from signalling import (
    CLOSE_ABUSE,
    CLOSE_SLOW_CONSUMER,
    CLOSE_UNAUTHORIZED,
    DockcastClient,
    Limits,
    ServerError,
    SessionClosed,
    SignallingServer,
    State,
)

MESSAGE = ["message"]
API_KEY = "test-key"  # as in conftest.py, checked by test_token_helpers_match_the_server
API_SECRET = "test-secret-" + "x" * 40


async def recv_msg(ws, timeout: float = 5.0) -> dict:
    async with asyncio.timeout(timeout):
        frame = await ws.recv()
    return msgpack.unpackb(frame, raw=False) if isinstance(frame, bytes) else json.loads(frame)


async def closed_with(ws, timeout: float = 5.0) -> int:
    """Read until the server closes; the close code it sent."""
    async with asyncio.timeout(timeout):
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
    return ws.protocol.close_rcvd.code


async def raw_hello(url, mint, subprotocols=None, **token_kwargs):
    ws = await ws_connect(url, subprotocols=subprotocols)
    msg = {"type": "hello", "id": 0, "token": mint(**token_kwargs)}
    await ws.send(msgpack.packb(msg) if ws.subprotocol == "dockcast.v1.msgpack" else json.dumps(msg))
    assert (await recv_msg(ws))["type"] == "welcome"
    return ws


def only_connection(server: SignallingServer):
    (conn,) = server.connections
    return conn


# ---- every error code ------------------------------------------------------------------


async def test_bad_request_for_an_ill_typed_field(served, connect):
    client = await connect(served[1])
    with pytest.raises(ServerError) as info:
        await client.request("join", room=5)
    assert info.value.code == "bad_request" and "field 'room'" in info.value.message


async def test_unauthorized_token_is_refused_and_closed_with_4001(served, connect):
    with pytest.raises(ServerError) as info:
        await connect(served[1], token="not-a-token")
    assert info.value.code == "unauthorized"


async def test_forbidden_by_grant_and_by_room(served, connect):
    client = await connect(served[1], room="dock-1")
    with pytest.raises(ServerError, match="forbidden: the token does not admit room 'dock-2'"):
        await client.join("dock-2")
    await client.join("dock-1")
    with pytest.raises(ServerError, match="forbidden: publish needs the publish grant"):
        await client.publish("v=0", [])


async def test_not_found_and_conflict_from_handlers(served, connect):
    client = await connect(served[1], grants=["subscribe"])
    await client.join("dock-1")
    with pytest.raises(ServerError) as info:
        await client.subscribe(["missing-track"])
    assert (info.value.code, info.value.message) == ("not_found", "unknown track 'missing-track'")
    with pytest.raises(ServerError) as info:
        await client.unsubscribe(["t"])  # the handler raises an exception with .code
    assert info.value.code == "conflict"


async def test_too_large_payload_and_frame(make_server, app, connect):
    _, url = await make_server(Limits(max_frame_bytes=4096, max_payload_bytes=1000), app)
    client = await connect(url, grants=MESSAGE)
    await client.join("dock-1")
    with pytest.raises(ServerError, match="too_large: payload of 1002 bytes"):
        await client.send("t", "x" * 1000)
    await client.send_raw(json.dumps({"type": "send", "id": 99, "pad": "x" * 5000}))
    error = await client.next_event("error")
    assert error["code"] == "too_large" and "id" not in error  # never decoded
    assert (await client.send("t", "small"))["type"] == "sent"


async def test_frames_over_the_hard_cap_close_with_1009(make_server, app, mint):
    _, url = await make_server(Limits(max_frame_bytes=1000), app)
    ws = await raw_hello(url, mint)
    await ws.send("x" * 4001)
    assert await closed_with(ws) == 1009


async def test_rate_limited_keeps_the_connection(make_server, app, connect):
    now = [time.time()]
    _, url = await make_server(Limits(rate=1, burst=5), app, clock=lambda: now[0])
    client = await connect(url, rate_limit_retries=0)
    results = await asyncio.gather(*(client.ping() for _ in range(8)), return_exceptions=True)
    limited = [r for r in results if isinstance(r, ServerError)]
    assert len(limited) == 4 and all(r.code == "rate_limited" for r in limited)  # hello took one
    assert {r.retry_after_ms for r in limited} == {1000}
    now[0] += 1.5
    assert (await client.ping())["type"] == "pong"


async def test_pipelined_requests_over_the_rate_are_advised_not_closed(make_server, app, mint):
    # Before: each rate_limited counted as abuse, and 20 of them closed with 4008.
    now = [time.time()]
    _, url = await make_server(Limits(rate=10, burst=5), app, clock=lambda: now[0])
    ws = await raw_hello(url, mint)
    for i in range(60):  # all sent before the first answer is read
        await ws.send(json.dumps({"type": "ping", "id": i}))
    answers = [await recv_msg(ws) for _ in range(60)]
    limited = [a for a in answers if a["type"] == "error"]
    assert [a["type"] for a in answers[:4]] == ["pong"] * 4  # hello took one token
    assert len(limited) == 56 and {a["code"] for a in limited} == {"rate_limited"}
    assert {a["retry_after_ms"] for a in limited} == {100}
    now[0] += 0.1  # waited as told
    await ws.send(json.dumps({"type": "ping", "id": 99}))
    assert (await recv_msg(ws))["type"] == "pong"
    assert ws.protocol.close_rcvd is None


async def test_requests_over_max_pending_are_rate_limited_with_retry_after(make_server, app, mint):
    _, url = await make_server(Limits(max_pending_requests=2, abuse_threshold=5), app)
    ws = await raw_hello(url, mint, grants=["publish"])
    await ws.send(json.dumps({"type": "join", "id": 1, "room": "dock-1"}))
    assert (await recv_msg(ws))["type"] == "joined"
    publish = {"type": "publish", "sdp": "v=0", "tracks": []}
    await ws.send(json.dumps({**publish, "id": 2}))  # its handler waits for the test
    await ws.send(json.dumps({"type": "ping", "id": 0}))  # answered once the handler runs
    assert (await recv_msg(ws))["type"] == "pong"
    for i in range(3, 12):  # two may wait behind the running one
        await ws.send(json.dumps({**publish, "id": i}))
    busy = [await recv_msg(ws) for _ in range(7)]
    assert {(m["code"], m["message"]) for m in busy} == {("rate_limited", "too many requests in flight")}
    assert all(isinstance(m["retry_after_ms"], int) and m["retry_after_ms"] >= 1 for m in busy)
    assert [m["id"] for m in busy] == list(range(5, 12))
    app.release_publish.set()
    assert [(await recv_msg(ws))["id"] for _ in range(3)] == [2, 3, 4]
    assert ws.protocol.close_rcvd is None  # 7 rejections, one advice ignored: not abuse


async def test_unavailable_while_draining(served, connect):
    server, url = served
    client = await connect(url)
    await client.join("dock-1")
    server.draining = True
    with pytest.raises(ServerError, match="unavailable"):
        await client.join("dock-1")
    assert (await client.ping())["type"] == "pong"
    assert (await client.leave())["type"] == "left"
    with pytest.raises(ServerError, match="unavailable"):
        await connect(url)
    server.draining = False
    await client.join("dock-1")


async def test_internal_is_logged_with_the_request_id_never_the_token(served, connect, mint, caplog):
    token = mint(grants=["publish"])
    client = await connect(served[1], token=token)
    await client.join("dock-1")
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ServerError) as info:
            await client.unpublish(["t"])
    assert info.value.code == "internal"
    assert "details only for the log" not in info.value.message
    request_id = info.value.reply["id"]
    record = next(r for r in caplog.records if r.name == "dockcast.signalling" and r.levelno == logging.ERROR)
    assert f"request id {request_id!r}" in record.getMessage() and record.exc_info
    assert token not in caplog.text and API_SECRET not in caplog.text


async def test_each_connection_and_each_refusal_is_one_log_line_without_the_token(
        served, connect, mint, caplog):
    token = mint(room="dock-1", grants=["message"])
    with caplog.at_level(logging.INFO, logger="dockcast.signalling"):
        client = await connect(served[1], token=token)
        with pytest.raises(ServerError) as refused:
            await client.join("dock-2")  # the token admits dock-1 only
        await client.close()
        for _ in range(500):
            if any(r.getMessage() == "connection closed" and r.name == "dockcast.signalling"
                   for r in caplog.records):
                break
            await asyncio.sleep(0.01)
    ours = [r for r in caplog.records if r.name == "dockcast.signalling"]
    [opened] = [r for r in ours if r.getMessage() == "connection open"]
    assert opened.remote.startswith("127.0.0.1:") and opened.path == "/ws"
    assert opened.subprotocol in ("json", "dockcast.v1.json", "dockcast.v1.msgpack")
    [line] = [r for r in ours if r.getMessage().startswith("refused")]
    assert (line.code, line.request_id, line.identity) == ("forbidden", refused.value.reply["id"], "alice")
    assert line.remote == opened.remote and line.connection == opened.connection
    [closed] = [r for r in ours if r.getMessage() == "connection closed"]
    assert closed.connection == opened.connection
    assert token not in caplog.text and API_SECRET not in caplog.text


async def test_a_handler_without_reply_is_internal(served, connect):
    client = await connect(served[1], grants=["subscribe"])
    await client.join("dock-1")
    with pytest.raises(ServerError, match="internal"):
        await client.answer("v=0")


async def test_an_unencodable_reply_is_internal_and_the_connection_goes_on(make_server, connect):
    server, url = await make_server()

    async def rooms(conn, request):
        return {"type": "rooms", "rooms": [object()]}

    server.route("room.list", rooms)
    client = await connect(url, grants=["admin"], room=None)
    with pytest.raises(ServerError, match="internal"):
        await client.room_list()
    with pytest.raises(ServerError, match="internal"):
        await client.room_list()  # the connection's worker survived
    assert (await client.ping())["type"] == "pong"


async def test_an_unrouted_type_is_bad_request(served, connect):
    client = await connect(served[1], grants=["admin"], room=None)
    with pytest.raises(ServerError, match="bad_request: audit.get is not supported"):
        await client.audit_get("s")


# ---- malformed frames ------------------------------------------------------------------

MALFORMED_JSON = [
    b"\x01\x02garbage bytes",
    "garbage text",
    "[1, 2]",
    '"just a string"',
    '{"id": 50}',
    '{"id": 51, "type": 7}',
    '{"id": 52, "type": "teleport"}',
    '{"id": 53, "type": "join", "room": ["x"]}',
    '{"id": 54, "type": "publish", "sdp": "v=0", "tracks": [{"mid": 1}]}',
]
MALFORMED_MSGPACK = [
    "a text frame",
    b"\xc1",
    msgpack.packb([1, 2]),
    msgpack.packb({"id": 50}),
    msgpack.packb({"id": 51, "type": 7}),
    msgpack.packb({"id": 52, "type": "teleport"}),
    msgpack.packb({"id": 53, "type": "join", "room": ["x"]}),
    msgpack.packb({1: 2, "type": "ping"}),
]


@pytest.mark.parametrize(
    "subprotocol, frames", [("json", MALFORMED_JSON), ("msgpack", MALFORMED_MSGPACK)], ids=["json", "msgpack"]
)
async def test_malformed_frames_neither_close_nor_change_state(served, connect, subprotocol, frames):
    server, url = served
    client = await connect(url, subprotocol=subprotocol)
    await client.join("dock-1")
    conn = only_connection(server)
    for bad in frames:
        await client.send_raw(bad)
        error = await client.next_event("error")
        assert error["code"] == "bad_request", (bad, error)
        assert conn._core.state is State.READY and conn.room == "dock-1"
    assert not client.closed
    assert (await client.ping())["type"] == "pong"
    assert (await client.join("dock-1"))["participant_id"] == "p-alice"


async def test_first_message_not_hello_closes_with_4001(served):
    ws = await ws_connect(served[1])
    await ws.send(json.dumps({"type": "join", "id": 1, "room": "dock-1"}))
    error = await recv_msg(ws)
    assert (error["code"], error["id"]) == ("unauthorized", 1)
    assert await closed_with(ws) == CLOSE_UNAUTHORIZED


async def test_connections_over_max_connections_are_refused_with_503(make_server, app, connect):
    registry = CollectorRegistry()
    server, url = await make_server(Limits(max_connections=2), app, registry=registry)
    first = await connect(url, identity="a")
    ws = await ws_connect(url)  # not authenticated yet: it holds a place all the same
    with pytest.raises(InvalidStatus) as info:
        await ws_connect(url)
    assert info.value.response.status_code == 503
    assert info.value.response.headers["Retry-After"] == "1"
    assert registry.get_sample_value("dockcast_signalling_refused_total", {"reason": "connections"}) == 1
    assert (await first.ping())["type"] == "pong"  # the others are served
    await ws.close()
    await ws.wait_closed()
    for _ in range(200):  # until the server let go of it
        if len(server.connections) < 2:
            break
        await asyncio.sleep(0.01)
    second = await connect(url, identity="b")
    assert (await second.ping())["type"] == "pong"
    assert registry.get_sample_value("dockcast_signalling_refused_total", {"reason": "connections"}) == 1


async def test_sustained_abuse_closes_with_4008(make_server, app, connect):
    _, url = await make_server(Limits(abuse_threshold=5, abuse_window=10), app)
    client = await connect(url)
    for _ in range(5):
        await client.send_raw("junk")
    with pytest.raises(SessionClosed) as info:
        await client.next_event("never")
    assert info.value.close_code == CLOSE_ABUSE
    assert "too many bad messages" in str(info.value)


async def test_no_hello_in_time_closes_with_4001(make_server, app):
    _, url = await make_server(Limits(hello_timeout=0.2), app)
    ws = await ws_connect(url)
    assert (await recv_msg(ws))["code"] == "unauthorized"
    assert await closed_with(ws) == CLOSE_UNAUTHORIZED


# ---- tokens ----------------------------------------------------------------------------


def _raw_token(secret=API_SECRET, algorithm="HS256", **claims) -> str:
    now = int(time.time())
    base = {"iss": API_KEY, "sub": "eve", "room": "dock-1", "nbf": now, "exp": now + 60, **claims}
    return jwt.encode(base, secret, algorithm=algorithm)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda now: _raw_token(secret="wrong-" + "w" * 40), "bad token signature"),
        (lambda now: _raw_token(exp=now - 10), "token expired"),
        (lambda now: _raw_token(nbf=now + 600, exp=now + 3600), "not valid yet"),
        (lambda now: _raw_token(secret=None, algorithm="none"), "algorithm must be HS256"),
    ],
    ids=["wrong secret", "expired", "not yet valid", "alg none"],
)
async def test_refused_tokens(served, make, reason):
    # minted when the test runs, not when it is collected: a long suite must not expire them
    token = make(int(time.time()))
    ws = await ws_connect(served[1])
    await ws.send(json.dumps({"type": "hello", "id": 1, "token": token}))
    error = await recv_msg(ws)
    assert error["code"] == "unauthorized" and reason in error["message"]
    assert await closed_with(ws) == CLOSE_UNAUTHORIZED


async def test_token_expiring_mid_session_closes_with_4001(make_server, app, connect):
    now = [time.time()]
    _, url = await make_server(app=app, clock=lambda: now[0])
    client = await connect(url)
    await client.join("dock-1")
    now[0] += 3601
    with pytest.raises(ServerError, match="unauthorized: token expired"):
        await client.ping()
    with pytest.raises(SessionClosed) as info:
        await client.ping()
    assert info.value.close_code == CLOSE_UNAUTHORIZED


async def test_token_refresh_with_a_second_hello(make_server, app, connect, mint):
    now = [time.time()]
    server, url = await make_server(app=app, clock=lambda: now[0])
    client = await connect(url, token=mint(ttl=60))
    session = client.session_id
    now[0] += 120
    welcome = await client.refresh(mint(grants=MESSAGE, now=now[0]))
    assert welcome["session_id"] == session and welcome["grants"]["message"]
    await client.join("dock-1")
    assert (await client.send("t", 1))["type"] == "sent"
    with pytest.raises(ServerError, match="forbidden"):
        await client.refresh(mint(identity="mallory", now=now[0]))


async def test_an_idle_connection_is_closed_when_its_token_expires(served):
    # no request after the welcome: the server's timer closes it (leeway 0 here)
    token = _raw_token(sub="idle", exp=time.time() + 1.0)
    ws = await ws_connect(served[1])
    await ws.send(json.dumps({"type": "hello", "id": 1, "token": token}))
    assert (await recv_msg(ws))["type"] == "welcome"
    error = await recv_msg(ws, timeout=30)
    assert error["code"] == "unauthorized" and "token expired" in error["message"] and "id" not in error
    assert await closed_with(ws, timeout=30) == CLOSE_UNAUTHORIZED


async def test_a_refresh_for_another_room_is_forbidden_in_a_room(served, connect, mint):
    server, url = served
    client = await connect(url, grants=MESSAGE)
    await client.join("dock-1")
    with pytest.raises(ServerError, match="forbidden: the refreshed token does not admit room 'dock-1'"):
        await client.refresh(mint(room="dock-2", grants=MESSAGE))
    assert only_connection(server).claims.room == "dock-1" and only_connection(server).room == "dock-1"
    assert (await client.send("t", 1))["type"] == "sent"
    await client.leave()
    assert (await client.refresh(mint(room="dock-2", grants=MESSAGE)))["type"] == "welcome"
    with pytest.raises(ServerError, match="forbidden: the token does not admit room 'dock-1'"):
        await client.join("dock-1")


# ---- subprotocols ----------------------------------------------------------------------


async def test_no_subprotocol_offered_means_json(served, mint):
    ws = await raw_hello(served[1], mint)
    assert ws.subprotocol is None
    await ws.send(json.dumps({"type": "ping", "id": 2}))
    frame = await ws.recv()
    assert isinstance(frame, str) and json.loads(frame)["type"] == "pong"
    await ws.close()


async def test_msgpack_subprotocol_uses_binary_frames(served, mint):
    ws = await raw_hello(served[1], mint, subprotocols=["dockcast.v1.msgpack"])
    assert ws.subprotocol == "dockcast.v1.msgpack"
    await ws.send(msgpack.packb({"type": "ping", "id": 2}))
    frame = await ws.recv()
    assert isinstance(frame, bytes) and msgpack.unpackb(frame)["type"] == "pong"
    await ws.close()


async def test_the_clients_first_known_subprotocol_wins(served):
    ws = await ws_connect(served[1], subprotocols=["x.unknown", "dockcast.v1.json", "dockcast.v1.msgpack"])
    assert ws.subprotocol == "dockcast.v1.json"
    await ws.close()


async def test_only_unknown_subprotocols_are_refused(served):
    with pytest.raises(InvalidStatus) as info:
        await ws_connect(served[1], subprotocols=["dockcast.v9.xml"])
    assert info.value.response.status_code == 400


@pytest.mark.parametrize("subprotocol", ["json", "msgpack"])
async def test_both_subprotocols_carry_events_and_binary(served, connect, subprotocol):
    client = await connect(served[1], subprotocol=subprotocol, grants=MESSAGE)
    await client.join("dock-1")
    payload = {"bytes": b"\x00\x01"} if subprotocol == "msgpack" else {"n": [1, 2.5, "é"]}
    sent = await client.send("topic", payload)
    assert sent["type"] == "sent"
    assert (await client.next_event("message"))["payload"] == payload


# ---- ordering and concurrency ----------------------------------------------------------


async def test_a_slow_handler_blocks_neither_ping_nor_reading(served, connect, app):
    client = await connect(served[1], grants=["publish", "message"])
    await client.join("dock-1")
    publish = asyncio.create_task(client.publish("v=0", []))
    send = asyncio.create_task(client.send("t", 1))
    await asyncio.sleep(0.05)
    assert (await client.ping())["type"] == "pong"  # answered while publish waits
    with pytest.raises(ServerError, match="forbidden"):
        await client.room_list()  # refused by the core at once
    assert not publish.done() and not send.done()  # send waits its turn
    app.release_publish.set()
    assert (await publish)["type"] == "published"
    assert (await send)["type"] == "sent"


async def test_requests_are_handled_in_order(served, connect, app):
    client = await connect(served[1], grants=MESSAGE)
    await client.join("dock-1")
    await asyncio.gather(*(client.send("t", i, msg_id=f"m{i}") for i in range(20)))
    assert [h[1] for h in app.handled if h[0] == "send"] == [f"m{i}" for i in range(20)]


async def test_slow_consumer_is_disconnected_with_4013(make_server, connect, caplog):
    server, url = await make_server(Limits(max_queued_messages=5))

    async def flood(conn, request):
        for i in range(50):
            conn.send_event({"type": "alert", "text": "x" * 1000, "n": i})
        return {"type": "rooms", "rooms": []}

    server.route("room.list", flood)
    client = await connect(url, grants=["admin"], room=None)
    with caplog.at_level(logging.WARNING):
        with pytest.raises(SessionClosed) as info:
            await client.room_list()
    assert info.value.close_code == CLOSE_SLOW_CONSUMER
    assert "slow consumer" in caplog.text


# ---- hooks and lifecycle ---------------------------------------------------------------


async def test_hooks_run_once_per_authenticated_connection(served, connect, app, mint):
    server, url = served
    seen = []

    async def record(conn):
        seen.append((conn.identity, conn.resume, conn.subprotocol, conn.remote_address[0], len(conn.connection_id)))

    server.on_connect(record)
    client = await connect(url, identity="bob", resume={"session_id": "old", "last_seq": 3}, subprotocol="msgpack")
    assert seen == [("bob", {"session_id": "old", "last_seq": 3}, "dockcast.v1.msgpack", "127.0.0.1", 12)]
    ws = await ws_connect(url)  # never authenticates
    await ws.close()
    await client.refresh(mint(identity="bob"))
    await client.close()
    for _ in range(100):
        if app.disconnected:
            break
        await asyncio.sleep(0.01)
    assert app.connected == ["bob"] and app.disconnected == ["bob"]
    assert not server.connections


async def test_server_close_says_going_away_and_runs_disconnect_hooks(make_server, app, connect):
    server, url = await make_server(app=app)
    clients = [await connect(url, identity=name) for name in ("a", "b")]
    await server.close()
    assert sorted(app.disconnected) == ["a", "b"]
    for client in clients:
        with pytest.raises(SessionClosed) as info:
            await client.ping()
        assert info.value.close_code == 1001


async def test_metrics_count_connections_requests_and_errors(make_server, app, connect):
    registry = CollectorRegistry()
    _, url = await make_server(app=app, registry=registry)
    client = await connect(url)
    await client.join("dock-1")
    with pytest.raises(ServerError):
        await client.join("elsewhere")
    assert registry.get_sample_value("dockcast_signalling_connections_total") == 1
    assert registry.get_sample_value("dockcast_signalling_connections_open") == 1
    assert registry.get_sample_value("dockcast_signalling_requests_total", {"type": "join"}) == 2
    assert registry.get_sample_value("dockcast_signalling_errors_total", {"code": "forbidden"}) == 1


def test_token_helpers_match_the_server(api_key_secret):
    assert api_key_secret == (API_KEY, API_SECRET)


def test_only_app_message_types_can_be_routed(verifier, node_info):
    server = SignallingServer(verifier, node_info)
    for bad in ("hello", "ping", "teleport"):
        with pytest.raises(ValueError):
            server.route(bad, lambda conn, request: None)

    @server.route("leave")
    async def leave(conn, request):
        return {"type": "left"}

    assert server._routes["leave"] is leave


# ---- plain HTTP ------------------------------------------------------------------------


async def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.fixture
async def web(make_server, tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "index.html").write_text("<h1>console</h1>")
    (tmp_path / "web" / "sdk.js").write_text("export const x = 1;")
    (tmp_path / "secret.txt").write_text("api secret")
    (tmp_path / "web" / "link.txt").symlink_to(tmp_path / "secret.txt")
    registry = CollectorRegistry()
    server, url = await make_server(registry=registry)

    async def healthz():
        return 200, "text/plain", b"ok\n"

    async def metrics():
        return 200, "text/plain; version=0.0.4", generate_latest(registry)

    server.add_http_route("/healthz", healthz)
    server.add_http_route("/metrics", metrics)
    server.add_static("/web/", tmp_path / "web")
    return int(url.split(":")[2].split("/")[0])


async def test_healthz_and_metrics(web):
    status, headers, body = await http_get(web, "/healthz?probe=1")
    assert (status, headers["content-type"], body) == (200, "text/plain", b"ok\n")
    status, _, body = await http_get(web, "/metrics")
    assert status == 200 and b"dockcast_signalling_connections_total" in body


async def test_static_files(web):
    status, headers, body = await http_get(web, "/web/sdk.js")
    assert (status, headers["content-type"], body) == (200, "text/javascript; charset=utf-8", b"export const x = 1;")
    assert (await http_get(web, "/web/"))[2] == b"<h1>console</h1>"
    assert (await http_get(web, "/web"))[2] == b"<h1>console</h1>"
    assert (await http_get(web, "/web/nope.js"))[0] == 404
    assert (await http_get(web, "/elsewhere"))[0] == 404


@pytest.mark.parametrize(
    "path", ["/web/../secret.txt", "/web/%2e%2e/secret.txt", "/web/..%2fsecret.txt", "/web/link.txt", "/web/%2fetc/passwd"]
)
async def test_static_path_traversal_is_refused(web, path):
    status, _, body = await http_get(web, path)
    assert status in (403, 404) and b"api secret" not in body and b"root:" not in body
