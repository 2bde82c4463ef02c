"""The Python client against a real server."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from signalling.membership import RoomRecord
from signalling import (
    CLOSE_ABUSE,
    SPECS,
    DockcastClient,
    Limits,
    RateLimited,
    ServerError,
    SessionClosed,
    validate,
)

ALL_GRANTS = ["publish", "subscribe", "message", "record", "admin"]

# Every helper, called with sample arguments, and the message type it must send.
HELPER_CALLS = {
    "join": (("dock-1",), {"name": "A", "metadata": {"k": 1}}, "join"),
    "leave": ((), {}, "leave"),
    "publish": (("v=0", [{"mid": "0", "kind": "video", "source": "camera"}]), {}, "publish"),
    "unpublish": ((["t1"],), {}, "unpublish"),
    "subscribe": ((["t1"],), {}, "subscribe"),
    "answer": (("v=0",), {}, "answer"),
    "unsubscribe": ((["t1"],), {}, "unsubscribe"),
    "trickle": (("pub", {"candidate": "candidate:1", "sdpMid": "0", "sdpMLineIndex": 0}), {}, "trickle"),
    "send": (("topic", {"a": 1}), {"msg_id": "m-1"}, "send"),
    "ack": ((7,), {}, "ack"),
    "room_create": (("dock-2",), {"shipment_id": "SH-1", "metadata": {}, "record": True}, "room.create"),
    "room_list": ((), {}, "room.list"),
    "room_close": (("dock-2",), {}, "room.close"),
    "participant_remove": (("dock-2", "p-1"), {}, "participant.remove"),
    "shipment_upsert": (("SH-1",), {"carrier": "UPS", "eta": 1700000000}, "shipment.upsert"),
    "shipment_event": (("SH-1", "delivered"), {"detail": "at dock", "severity": "warning"}, "shipment.event"),
    "shipment_get": (("SH-1",), {}, "shipment.get"),
    "recording_start": (("dock-1",), {}, "recording.start"),
    "recording_stop": (("dock-1",), {}, "recording.stop"),
    "recording_list": ((), {"room": "dock-1"}, "recording.list"),
    "recording_playback": (("rec-1", "dock-1"), {}, "recording.playback"),
    "recording_media": (("rec-1",), {}, "recording.media"),
    "recording_delete": (("rec-1",), {}, "recording.delete"),
    "inspection_verdict": (("dock-1", "partial"), {"refund": 12.5, "note": "scratched"}, "inspection.verdict"),
    "audit_get": (("sess-1",), {}, "audit.get"),
    "assistant_captions": (("dock-1", "p-1", True), {"lang": "zh"}, "assistant.captions"),
    "assistant_triage": (("dock-1",), {"shipment_id": "SH-1", "track_id": "t1"}, "assistant.triage"),
    "events_subscribe": ((), {"rooms": ["dock-1"], "shipment_ids": ["SH-1"]}, "events.subscribe"),
}


@pytest.fixture
async def echo(make_server):
    """A server whose every handler echoes the request; ``join`` also joins."""
    server, url = await make_server()
    seen: list = []

    async def handler(conn, request):
        seen.append(request)
        if request.type == "join":
            server.membership.open_room(RoomRecord(request["room"]))
            server.membership.leave(conn)
            server.membership.join(conn, request["room"], "p-" + conn.identity, conn.identity)
        if request.spec.reply is None:
            return None
        return {"type": "echo", "of": request.type, "fields": dict(request.fields)}

    for msg_type in SPECS:
        if msg_type not in ("hello", "ping"):
            server.route(msg_type, handler)
    return server, url, seen


def test_there_is_a_helper_for_every_operation():
    covered = {msg_type for _, _, msg_type in HELPER_CALLS.values()} | {"hello", "ping"}
    assert covered == set(SPECS)
    for name in HELPER_CALLS:
        assert inspect.iscoroutinefunction(getattr(DockcastClient, name))


@pytest.mark.parametrize("subprotocol", ["json", "msgpack"])
async def test_every_helper_sends_a_valid_request(echo, connect, subprotocol):
    server, url, seen = echo
    client = await connect(url, grants=ALL_GRANTS, subprotocol=subprotocol)
    for name, (args, kwargs, msg_type) in HELPER_CALLS.items():
        result = await getattr(client, name)(*args, **kwargs)
        request = seen[-1] if SPECS[msg_type].reply is not None else None
        if request is None:  # trickle, ack: no reply; wait until the server saw it
            assert isinstance(result, int)
            await client.ping()
            request = seen[-1]
        else:
            assert result["type"] == "echo" and result["of"] == msg_type
        assert request.type == msg_type
        validate({"type": msg_type, **request.fields})
    assert (await client.ping())["type"] == "pong"


async def test_concurrent_requests_are_matched_by_id(served, connect):
    client = await connect(served[1])
    replies = await asyncio.gather(*(client.ping() for _ in range(30)))
    assert len({r["id"] for r in replies}) == 30 and all(r["type"] == "pong" for r in replies)


async def test_server_error_carries_the_code(served, connect):
    client = await connect(served[1])
    with pytest.raises(ServerError) as info:
        await client.join("dock-9")
    assert info.value.code == "forbidden" and str(info.value).startswith("forbidden: ")
    assert info.value.reply["type"] == "error"


async def test_connect_refused_raises_and_closes(served):
    with pytest.raises(ServerError, match="unauthorized"):
        await DockcastClient.connect(served[1], "bad-token")


async def test_events_queue_filter_and_iteration(served, connect):
    client = await connect(served[1], grants=["message"])
    await client.join("dock-1")
    await client.send("a", 1)
    await client.notify("ack", seq=-5)  # answered by an error event
    await client.send("b", 2)
    assert (await client.next_event("error"))["code"] == "bad_request"
    first = await client.next_event()
    assert (first["type"], first["payload"]) == ("message", 1)
    with pytest.raises(TimeoutError):
        await client.next_event("alert", timeout=0.05)
    await client.close()
    assert [e["payload"] async for e in client.events()] == [2]  # then ends: closed


async def test_callbacks_get_their_events(served, connect):
    client = await connect(served[1], grants=["message"])
    got_sync, got_async = [], asyncio.Event()
    client.on("message", got_sync.append)

    async def on_message(event):
        got_async.set()

    client.on("message", on_message)
    await client.join("dock-1")
    await client.send("t", "hi")
    await asyncio.wait_for(got_async.wait(), 2)
    assert [e["payload"] for e in got_sync] == ["hi"]
    with pytest.raises(TimeoutError):
        await client.next_event("message", timeout=0.05)  # not queued as well


async def test_request_timeout_and_late_reply_dropped(served, connect, app):
    client = await connect(served[1], grants=["publish"])
    await client.join("dock-1")
    with pytest.raises(TimeoutError):
        await client.request("publish", sdp="v=0", tracks=[], timeout=0.05)
    app.release_publish.set()
    assert (await client.ping())["type"] == "pong"
    with pytest.raises(TimeoutError):
        await client.next_event(timeout=0.05)


async def test_pending_requests_fail_with_the_close_code(make_server, connect):
    server, url = await make_server()

    async def kick(conn, request):
        conn.close(CLOSE_ABUSE, "go away")
        return {"type": "rooms", "rooms": []}  # dropped: the connection is closing

    server.route("room.list", kick)
    client = await connect(url, grants=["admin"], room=None)
    with pytest.raises(SessionClosed) as info:
        await client.room_list()
    assert (info.value.close_code, info.value.close_reason) == (CLOSE_ABUSE, "go away")
    assert "too many bad messages: go away" in str(info.value)
    with pytest.raises(SessionClosed):
        await client.ping()
    assert client.closed


async def test_context_manager_and_double_close(served, mint):
    async with await DockcastClient.connect(served[1], mint(), subprotocol="msgpack") as client:
        assert client.identity == "alice" and client.session_id
        assert client.codec.binary
    await client.close()
    assert client.closed


# ---- rate limits: the client follows retry_after_ms --------------------------------------


async def test_requests_over_the_rate_are_retried_after_the_advice(make_server, app, connect):
    # Before: the surplus pings raised rate_limited, and the 20th rejection closed with 4008.
    _, url = await make_server(Limits(rate=50, burst=2, abuse_threshold=10), app)
    client = await connect(url, grants=["message"])
    await client.join("dock-1")
    replies = await asyncio.gather(*(client.send("t", i, msg_id=f"m{i}") for i in range(40)))
    assert sorted(r["msg_id"] for r in replies) == sorted(f"m{i}" for i in range(40))
    assert [h[1] for h in app.handled if h[0] == "send"].count("m7") == 1  # each once
    assert client.rate_limited_seen >= 1 and not client.closed
    assert (await client.ping())["type"] == "pong"


async def test_rate_limited_retries_are_bounded(make_server, connect):
    server, url = await make_server()
    calls = []

    async def busy(conn, request):
        calls.append(request.id)
        raise RateLimited("come back later", retry_after_ms=1)

    server.route("room.list", busy)
    client = await connect(url, grants=["admin"], room=None, rate_limit_retries=3)
    with pytest.raises(ServerError) as info:
        await client.room_list()
    assert (info.value.code, info.value.retry_after_ms) == ("rate_limited", 1)
    assert len(calls) == 4 and len(set(calls)) == 1  # the same request, sent again 3 times
    assert client.rate_limited_seen == 4
    client.rate_limit_retries = 0
    with pytest.raises(ServerError):
        await client.room_list()
    assert len(calls) == 5


async def test_a_rate_limited_error_without_advice_is_not_retried(make_server, connect):
    server, url = await make_server()
    calls = []

    async def busy(conn, request):
        calls.append(request.id)
        raise RateLimited("no advice")

    server.route("room.list", busy)
    client = await connect(url, grants=["admin"], room=None)
    with pytest.raises(ServerError) as info:
        await client.room_list()
    assert info.value.retry_after_ms is None and calls == [calls[0]]


async def test_the_client_tries_a_clusters_nodes_in_order_and_resumes_on_another(make_server, mint):
    import socket

    with socket.socket() as s:  # a node that is gone: nothing listens there any more
        s.bind(("127.0.0.1", 0))
        dead_url = f"ws://127.0.0.1:{s.getsockname()[1]}/ws"
    there, there_url = await make_server()
    here, here_url = await make_server()
    here.alternates = lambda: [{"node_id": "node-b", "region": "asia", "url": there_url}]
    first = await DockcastClient.connect(here_url, mint())
    try:
        assert first.alternate_urls == [there_url]
    finally:
        await first.close()
    resume = {"session_id": first.session_id, "last_seq": 7}
    client = await DockcastClient.connect([dead_url, *first.alternate_urls], mint(), resume=resume)
    try:
        assert client.url == there_url and client.alternate_urls == []
        assert [c.resume for c in there.connections] == [resume]
    finally:
        await client.close()
    with pytest.raises(OSError):  # none answers: the last one's error
        await DockcastClient.connect([dead_url], mint(), timeout=2)


async def test_a_client_without_a_region_hint_is_placed_by_its_source_address(make_server, mint):
    there, there_url = await make_server()
    here, here_url = await make_server()
    here.placement = lambda claims, region: there_url if region == "asia" else None
    here.region_of = lambda address: "asia" if address == "127.0.0.1" else None
    client = await DockcastClient.connect(here_url, mint())
    try:
        assert client.url == there_url  # 127.0.0.1 is in asia, by the table
    finally:
        await client.close()
    client = await DockcastClient.connect(here_url, mint(), region="us-west")  # a hint wins
    try:
        assert client.url == here_url
    finally:
        await client.close()


async def test_the_client_follows_a_redirect_once_with_the_same_token(make_server, mint):
    there, there_url = await make_server()
    here, here_url = await make_server()
    here.placement = lambda claims, region: there_url if region == "asia" else None
    token = mint()
    client = await DockcastClient.connect(here_url, token, region="asia")
    try:
        assert client.url == there_url and "redirect" not in client.welcome
        assert [c.identity for c in there.connections] == ["alice"]
    finally:
        await client.close()
    client = await DockcastClient.connect(here_url, token, region="asia", follow_redirect=False)
    try:
        assert client.url == here_url and client.welcome["redirect"] == there_url
    finally:
        await client.close()
    client = await DockcastClient.connect(here_url, token)  # no hint: stays
    try:
        assert client.url == here_url
    finally:
        await client.close()
