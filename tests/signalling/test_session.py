"""The sans-IO core: frames and times in, actions out; no network, no sleeps."""

from __future__ import annotations

import json

import msgpack
import pytest

from signalling.errors import CLOSE_ABUSE, CLOSE_UNAUTHORIZED, Forbidden, RateLimited, Unauthorized
from signalling.session import (
    TRANSITIONS,
    AbuseWindow,
    Authenticated,
    Close,
    Dispatch,
    Limits,
    NodeInfo,
    Send,
    SessionCore,
    State,
    TokenBucket,
    require_room,
)
from signalling.tokens import Claims, Grants, TokenVerifier, mint_token

KEY = "key"
SECRET = "k" * 64
NOW = 1_700_000_000.0
NODE = NodeInfo("node-a", "eu", "1.2.3")


def token(identity="alice", room="dock-1", grants=(), ttl=3600, now=NOW, **kwargs) -> str:
    return mint_token(KEY, SECRET, identity, room=room, grants=grants, ttl=ttl, now=now, **kwargs)


def new_core(limits=Limits(), subprotocol=None) -> SessionCore:
    verifier = TokenVerifier({KEY: SECRET}, leeway=0)
    return SessionCore(verifier, NODE, limits, clock=lambda: NOW, subprotocol=subprotocol, session_id="sess-1")


def frame(msg_type: str, id=None, **fields) -> str:
    msg = {"type": msg_type, **fields}
    if id is not None:
        msg["id"] = id
    return json.dumps(msg)


def ready(grants=(), limits=Limits(), **kwargs) -> SessionCore:
    core = new_core(limits)
    actions = core.receive_frame(frame("hello", 1, token=token(grants=grants, **kwargs)), NOW)
    assert isinstance(actions[0], Send) and actions[0].msg["type"] == "welcome"
    return core


def sent(actions) -> list[dict]:
    return [a.msg for a in actions if isinstance(a, Send)]


def only_error(actions, code, request_id=None) -> dict:
    (msg,) = sent(actions)
    assert msg["type"] == "error" and msg["code"] == code, msg
    assert msg.get("id") == request_id
    return msg


# ---- hello -----------------------------------------------------------------------------


def test_hello_is_welcomed():
    core = new_core()
    actions = core.receive_frame(frame("hello", 1, token=token(grants=["publish"], name="Alice")), NOW)
    welcome, auth = actions
    assert welcome == Send(
        {
            "type": "welcome",
            "id": 1,
            "identity": "alice",
            "session_id": "sess-1",
            "grants": {"publish": True, "subscribe": False, "message": False, "record": False, "admin": False},
            "node": "node-a",
            "region": "eu",
            "server_version": "1.2.3",
            "limits": {"max_frame_bytes": 256 * 1024, "max_payload_bytes": 64 * 1024},
        }
    )
    assert isinstance(auth, Authenticated) and not auth.refreshed and auth.claims.name == "Alice"
    assert core.state is State.READY and core.claims.identity == "alice" and core.resume is None


def test_the_placement_may_send_the_client_to_another_node():
    asked = []

    def placement(claims, region):
        asked.append((claims.identity, region))
        return "ws://us-west.example:8765/ws" if region == "us-west" else None

    core = new_core()
    core.placement = placement
    welcome = sent(core.receive_frame(frame("hello", 1, token=token(), region="us-west"), NOW))[0]
    assert welcome["redirect"] == "ws://us-west.example:8765/ws"
    core = new_core()
    core.placement = placement
    welcome = sent(core.receive_frame(frame("hello", 1, token=token()), NOW))[0]
    assert "redirect" not in welcome  # no hint: it stays
    # a token refresh is not a new placement
    assert sent(core.receive_frame(frame("hello", 2, token=token(), region="us-west"), NOW))[0].get(
        "redirect") is None
    assert asked == [("alice", "us-west"), ("alice", None)]


def test_a_cluster_names_its_other_nodes_in_the_welcome():
    nodes = [{"node_id": "node-b", "region": "asia", "url": "ws://b.example:8765/ws"}]
    core = new_core()
    core.alternates = lambda: nodes
    welcome = sent(core.receive_frame(frame("hello", 1, token=token()), NOW))[0]
    assert welcome["nodes"] == nodes
    # a token refresh says nothing new about the cluster
    assert "nodes" not in sent(core.receive_frame(frame("hello", 2, token=token()), NOW))[0]
    core = new_core()  # one node alone: no field
    assert "nodes" not in sent(core.receive_frame(frame("hello", 1, token=token()), NOW))[0]


def test_hello_resume_is_kept_for_the_app():
    core = new_core()
    resume = {"session_id": "old", "last_seq": 41}
    core.receive_frame(frame("hello", 1, token=token(), resume=resume), NOW)
    assert core.resume == resume


@pytest.mark.parametrize("first", [frame("join", 1, room="dock-1"), frame("ping", 1), frame("nonsense", 1)])
def test_first_message_not_hello_is_refused_and_closed(first):
    core = new_core()
    actions = core.receive_frame(first, NOW)
    assert only_error(actions, "unauthorized", 1)["message"] == "the first message must be hello"
    assert actions[-1] == Close(CLOSE_UNAUTHORIZED, "the first message must be hello")
    assert core.state is State.CLOSED
    assert core.receive_frame(frame("hello", 2, token=token()), NOW) == []


def test_hello_with_a_bad_token_closes():
    core = new_core()
    actions = core.receive_frame(frame("hello", 1, token=token(ttl=10, now=NOW - 100)), NOW)
    assert only_error(actions, "unauthorized", 1)["message"] == "token expired"
    assert actions[-1].code == CLOSE_UNAUTHORIZED and core.state is State.CLOSED


def test_malformed_first_frames_do_not_close():
    core = new_core()
    for bad in ["garbage", "[]", "{}", json.dumps({"type": "hello", "id": 1}), json.dumps({"type": "hello", "token": 5})]:
        actions = core.receive_frame(bad, NOW)
        assert sent(actions)[0]["code"] == "bad_request" and not any(isinstance(a, Close) for a in actions)
        assert core.state is State.AWAIT_HELLO
    assert sent(core.receive_frame(frame("hello", 9, token=token()), NOW))[0]["type"] == "welcome"


def test_hello_timeout():
    core = new_core(Limits(hello_timeout=5))
    assert core.get_timer() == NOW + 5
    assert core.handle_timer(NOW + 4) == []
    actions = core.handle_timer(NOW + 5)
    assert only_error(actions, "unauthorized")["message"] == "no hello in time"
    assert actions[-1].code == CLOSE_UNAUTHORIZED and core.get_timer() is None


def test_once_ready_the_timer_is_the_token_expiry():
    assert ready(ttl=60).get_timer() == NOW + 60  # leeway 0 here


def test_token_expiry_closes_an_idle_connection_on_the_timer():
    core = ready(ttl=60)
    assert core.handle_timer(NOW + 59) == []
    actions = core.handle_timer(NOW + 60)
    assert "token expired" in only_error(actions, "unauthorized")["message"]
    assert actions[-1].code == CLOSE_UNAUTHORIZED and core.state is State.CLOSED
    assert core.get_timer() is None


def test_a_refresh_moves_the_expiry_timer():
    core = ready(ttl=60)
    core.receive_frame(frame("hello", 2, token=token(ttl=600, now=NOW + 30)), NOW + 30)
    assert core.get_timer() == NOW + 630
    assert core.handle_timer(NOW + 60) == [] and core.state is State.READY


def test_the_expiry_timer_counts_the_leeway():
    core = SessionCore(TokenVerifier({KEY: SECRET}, leeway=10), NODE, clock=lambda: NOW)
    core.receive_frame(frame("hello", 1, token=token(ttl=60)), NOW)
    assert core.get_timer() == NOW + 70


# ---- token refresh and expiry ----------------------------------------------------------


def test_second_hello_refreshes_the_token():
    core = ready(ttl=60)
    fresh = token(grants=["message"], ttl=3600, now=NOW + 30)
    welcome, auth = core.receive_frame(frame("hello", 2, token=fresh), NOW + 30)
    assert welcome.msg["session_id"] == "sess-1" and welcome.msg["grants"]["message"]
    assert auth.refreshed and core.claims.exp == NOW + 30 + 3600
    assert core.state is State.READY


def test_refresh_works_even_after_the_old_token_expired():
    core = ready(ttl=60)
    actions = core.receive_frame(frame("hello", 2, token=token(now=NOW + 100)), NOW + 100)
    assert sent(actions)[0]["type"] == "welcome"


def test_refresh_for_another_identity_is_forbidden_and_keeps_the_session():
    core = ready()
    actions = core.receive_frame(frame("hello", 2, token=token(identity="mallory")), NOW)
    only_error(actions, "forbidden", 2)
    assert core.claims.identity == "alice" and core.state is State.READY


def test_refresh_with_a_bad_token_keeps_the_old_one():
    core = ready()
    before = core.claims
    actions = core.receive_frame(frame("hello", 2, token="junk"), NOW)
    only_error(actions, "unauthorized", 2)
    assert core.claims is before and core.state is State.READY


def test_refresh_for_another_room_is_forbidden_while_in_a_room():
    core = ready()
    core.room_of = lambda: "dock-1"
    before = core.claims
    actions = core.receive_frame(frame("hello", 2, token=token(room="dock-2")), NOW)
    assert "dock-1" in only_error(actions, "forbidden", 2)["message"]
    assert core.claims is before and core.state is State.READY
    # the same room, or a token that admits every room, is a refresh
    assert sent(core.receive_frame(frame("hello", 3, token=token(room="dock-1", grants=["message"])), NOW))[0][
        "type"] == "welcome"
    assert sent(core.receive_frame(frame("hello", 4, token=token(room=None, grants=["admin"])), NOW))[0][
        "type"] == "welcome"


def test_refresh_for_another_room_outside_a_room_is_accepted():
    core = ready()
    actions = core.receive_frame(frame("hello", 2, token=token(room="dock-2")), NOW)
    assert sent(actions)[0]["type"] == "welcome" and core.claims.room == "dock-2"


def test_expired_token_closes_on_the_next_request():
    core = ready(ttl=60)
    assert sent(core.receive_frame(frame("ping", 2), NOW + 60))[0]["type"] == "pong"
    actions = core.receive_frame(frame("ping", 3), NOW + 61)
    assert "token expired" in only_error(actions, "unauthorized", 3)["message"]
    assert actions[-1].code == CLOSE_UNAUTHORIZED and core.state is State.CLOSED


# ---- requests --------------------------------------------------------------------------


def test_ping_is_answered_locally():
    actions = ready().receive_frame(frame("ping", "p"), NOW + 0.5)
    assert actions == [Send({"type": "pong", "id": "p", "ts": int(NOW * 1000) + 500})]


def test_valid_request_is_dispatched():
    core = ready()
    (action,) = core.receive_frame(frame("join", 5, room="dock-1", name="A"), NOW)
    assert isinstance(action, Dispatch)
    assert (action.request.type, action.request.id, action.request["name"]) == ("join", 5, "A")


@pytest.mark.parametrize(
    "msg_type, fields, grants",
    [
        ("publish", {"sdp": "v=0", "tracks": []}, ["subscribe"]),
        ("subscribe", {"track_ids": ["t"]}, ["publish"]),
        ("send", {"topic": "t", "payload": 1, "msg_id": "m"}, ["publish"]),
        ("room.create", {"room": "r"}, ["publish", "subscribe", "message", "record"]),
        ("recording.start", {"room": "r"}, ["publish"]),
    ],
)
def test_missing_grant_is_forbidden(msg_type, fields, grants):
    core = ready(grants=grants)
    core.room_of = lambda: "dock-1"
    actions = core.receive_frame(frame(msg_type, 7, **fields), NOW)
    assert "grant" in only_error(actions, "forbidden", 7)["message"]


def test_record_or_admin_grant_allows_recordings():
    for grants in (["record"], ["admin"]):
        (action,) = ready(grants=grants).receive_frame(frame("recording.start", 1, room="r"), NOW)
        assert isinstance(action, Dispatch)


def test_room_requests_need_a_joined_room():
    core = ready(grants=["publish"])
    actions = core.receive_frame(frame("unpublish", 3, track_ids=["t"]), NOW)
    assert "send join first" in only_error(actions, "bad_request", 3)["message"]
    core.room_of = lambda: "dock-1"
    assert isinstance(core.receive_frame(frame("unpublish", 4, track_ids=["t"]), NOW)[0], Dispatch)


def test_payload_limit():
    core = ready(grants=["message"], limits=Limits(max_payload_bytes=100))
    core.room_of = lambda: "dock-1"
    ok = core.receive_frame(frame("send", 1, topic="t", payload="x" * 98, msg_id="m1"), NOW)
    assert isinstance(ok[0], Dispatch)
    big = core.receive_frame(frame("send", 2, topic="t", payload="x" * 99, msg_id="m2"), NOW)
    assert "payload of 101 bytes" in only_error(big, "too_large", 2)["message"]


def test_frame_limit():
    core = ready(limits=Limits(max_frame_bytes=1000))
    actions = core.receive_frame(frame("join", 1, room="x" * 1000), NOW)
    only_error(actions, "too_large")  # not decoded: no id
    assert core.state is State.READY


def test_draining_refuses_all_but_leave_and_ping():
    core = ready()
    core.draining = True
    assert isinstance(core.receive_frame(frame("leave", 1), NOW)[0], Dispatch)
    assert sent(core.receive_frame(frame("ping", 2), NOW))[0]["type"] == "pong"
    only_error(core.receive_frame(frame("join", 3, room="dock-1"), NOW), "unavailable", 3)
    only_error(core.receive_frame(frame("hello", 4, token=token()), NOW), "unavailable", 4)


def test_msgpack_session():
    core = new_core(subprotocol="dockcast.v1.msgpack")
    hello = msgpack.packb({"type": "hello", "id": 1, "token": token()})
    assert sent(core.receive_frame(hello, NOW))[0]["type"] == "welcome"
    only_error(core.receive_frame(frame("ping", 2), NOW), "bad_request")  # a text frame
    assert core.codec.binary


# ---- bad messages, rate limits, abuse --------------------------------------------------

MALFORMED = [
    b"\x00\xff binary in a JSON session",
    "{not json",
    "[1, 2, 3]",
    '{"id": 3}',
    '{"id": 3, "type": 42}',
    '{"id": 3, "type": "warp"}',
    '{"id": 3, "type": "join"}',
    '{"id": 3, "type": "join", "room": 7}',
    '{"id": 3, "type": "ack", "seq": -1}',
    '{"id": true, "type": "ping"}',
]


@pytest.mark.parametrize("bad", MALFORMED)
def test_a_bad_message_neither_closes_nor_changes_state(bad):
    core = ready()
    core.room_of = lambda: "dock-1"
    before = (core.state, core.claims, core.room, core.session_id)
    actions = core.receive_frame(bad, NOW)
    assert sent(actions)[0]["type"] == "error"
    assert not any(isinstance(a, (Close, Dispatch)) for a in actions)
    assert (core.state, core.claims, core.room, core.session_id) == before
    assert isinstance(core.receive_frame(frame("ack", 4, seq=1), NOW)[0], Dispatch)


def test_rate_limit_then_refill():
    core = ready(limits=Limits(rate=10, burst=5))  # hello took one token
    results = [sent(core.receive_frame(frame("ping", i), NOW))[0] for i in range(5)]
    assert [m["type"] for m in results] == ["pong"] * 4 + ["error"]
    assert results[-1]["code"] == "rate_limited" and results[-1]["id"] == 4
    assert core.state is State.READY
    assert sent(core.receive_frame(frame("ping", 9), NOW + 0.2))[0]["type"] == "pong"


def test_sustained_abuse_closes_with_4008():
    core = ready(limits=Limits(abuse_threshold=5, abuse_window=10))
    for i in range(4):
        assert not any(isinstance(a, Close) for a in core.receive_frame("junk", NOW + i))
    actions = core.receive_frame("junk", NOW + 4)
    assert actions[-1] == Close(CLOSE_ABUSE, "too many bad messages")
    assert core.state is State.CLOSED


def test_errors_spread_over_time_are_not_abuse():
    core = ready(limits=Limits(abuse_threshold=5, abuse_window=10))
    for i in range(20):
        assert not any(isinstance(a, Close) for a in core.receive_frame("junk", NOW + 3 * i))


def test_rate_limited_says_when_to_retry():
    core = ready(limits=Limits(rate=10, burst=2))  # hello took one token
    assert sent(core.receive_frame(frame("ping", 2), NOW))[0]["type"] == "pong"
    error = only_error(core.receive_frame(frame("ping", 3), NOW), "rate_limited", 3)
    assert error["retry_after_ms"] == 100  # one token at 10 a second
    error = only_error(core.receive_frame(frame("ping", 4), NOW + 0.03), "rate_limited", 4)
    assert error["retry_after_ms"] == 70 and isinstance(error["retry_after_ms"], int)
    # waiting exactly that long finds a token
    assert sent(core.receive_frame(frame("ping", 5), NOW + 0.1))[0]["type"] == "pong"


def test_retry_after_is_whole_milliseconds_rounded_up_and_at_least_one():
    core = ready(limits=Limits(rate=3, burst=1))
    error = only_error(core.receive_frame(frame("ping", 2), NOW), "rate_limited", 2)
    assert error["retry_after_ms"] == 334  # 333.33... rounded up: the token is there then
    assert sent(core.receive_frame(frame("ping", 3), NOW + 0.334))[0]["type"] == "pong"
    core = ready(limits=Limits(rate=1e5, burst=1))
    error = only_error(core.receive_frame(frame("ping", 2), NOW), "rate_limited", 2)
    assert error["retry_after_ms"] == 1


def test_a_client_that_waits_as_told_is_never_closed():
    # Before the fix every rate_limited counted: the 20th within 10 s closed with 4008.
    core = ready(limits=Limits(rate=50, burst=5, abuse_threshold=20, abuse_window=10))
    now, served, limited = NOW, 0, 0
    for i in range(2000):
        msgs = sent(actions := core.receive_frame(frame("ping", i), now))
        assert not any(isinstance(a, Close) for a in actions)
        if msgs[0]["type"] == "pong":
            served += 1
        else:
            assert msgs[0]["code"] == "rate_limited"
            limited += 1
            now += msgs[0]["retry_after_ms"] / 1000  # wait exactly as told
    assert core.state is State.READY
    assert served == 2000 - limited and limited > 900  # it ran at the bucket's rate


def test_pipelined_frames_sent_before_the_advice_count_once():
    core = ready(limits=Limits(rate=10, burst=1, abuse_threshold=3, abuse_window=10))
    for i in range(50):  # all in flight when the first answer left
        assert not any(isinstance(a, Close) for a in core.receive_frame(frame("ping", i), NOW))
    error = sent(core.receive_frame(frame("ping", 99), NOW + 0.1))[0]
    assert error["type"] == "pong"  # waited as told: served
    assert core.state is State.READY


def test_a_client_that_ignores_the_advice_is_closed_with_4008():
    core = ready(limits=Limits(rate=10, burst=1, abuse_threshold=3, abuse_window=10))
    closed = None
    for i in range(100):  # a frame every 10 ms whatever it is told (a token every 100)
        actions = core.receive_frame(frame("ping", i), NOW + i * 0.01)
        if any(isinstance(a, Close) for a in actions):
            closed = actions[-1]
            break
    assert closed == Close(CLOSE_ABUSE, "too many bad messages")
    assert core.state is State.CLOSED


def test_other_rejections_still_count_each():
    core = ready(limits=Limits(rate=10, burst=1, abuse_threshold=3, abuse_window=10))
    core.receive_frame(frame("ping", 1), NOW)  # rate_limited: advice, not abuse
    core.receive_frame("junk", NOW + 1)
    assert not any(isinstance(a, Close) for a in core.receive_frame("junk", NOW + 1))
    assert core.receive_frame("junk", NOW + 1)[-1] == Close(CLOSE_ABUSE, "too many bad messages")


def test_a_rate_limited_rejection_from_the_adapter_is_advice_too():
    # the server's max_pending_requests overflow goes through reject()
    core = ready(limits=Limits(abuse_threshold=2, abuse_window=10))
    busy = RateLimited("too many requests in flight", request_id=7, retry_after_ms=50)
    (msg,) = sent(core.reject(busy, NOW))
    assert (msg["code"], msg["id"], msg["retry_after_ms"]) == ("rate_limited", 7, 50)
    for i in range(5):  # waited as told each time
        assert not any(isinstance(a, Close) for a in core.reject(busy, NOW + 0.05 * (i + 1)))
    assert not any(isinstance(a, Close) for a in core.reject(busy, NOW + 0.26))  # early: one
    assert not any(isinstance(a, Close) for a in core.reject(busy, NOW + 0.28))  # same advice
    assert not any(isinstance(a, Close) for a in core.reject(busy, NOW + 0.4))  # waited
    assert core.reject(busy, NOW + 0.42)[-1] == Close(CLOSE_ABUSE, "too many bad messages")


def test_token_bucket():
    bucket = TokenBucket(rate=2, burst=2)
    assert [bucket.take(0), bucket.take(0), bucket.take(0)] == [True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert bucket.take(100) and bucket.take(100) and not bucket.take(100)  # capped at burst
    assert not bucket.take(99)  # time going backwards earns nothing
    assert bucket.retry_after(100) == 0.5
    assert bucket.retry_after(100.25) == 0.25 and bucket.take(100.5)
    assert TokenBucket(rate=2, burst=2).retry_after(0) == 0.0


def test_abuse_window():
    window = AbuseWindow(threshold=3, window=1.0)
    assert not window.record(0) and not window.record(0.5) and window.record(0.9)
    assert not window.record(10)


def test_transitions_are_data_covering_every_state():
    assert set(TRANSITIONS) == set(State)
    assert TRANSITIONS[State.CLOSED] and all(State.CLOSED in t.values() for t in TRANSITIONS.values())


def test_connection_lost():
    core = ready()
    core.connection_lost()
    assert core.state is State.CLOSED and core.receive_frame(frame("ping", 1), NOW) == []


# ---- require_room ----------------------------------------------------------------------


def _claims(room, admin=False) -> Claims:
    return Claims("alice", None, room, Grants(admin=admin), None, NOW + 60, None, KEY)


def test_require_room():
    require_room(_claims("dock-1"), "dock-1")
    require_room(_claims(None, admin=True), "anything")
    with pytest.raises(Forbidden, match="does not admit room 'dock-2'"):
        require_room(_claims("dock-1"), "dock-2")
    with pytest.raises(Forbidden):
        require_room(_claims("dock-1", admin=True), "dock-2")
    with pytest.raises(Unauthorized):
        require_room(new_core(), "dock-1")
    require_room(ready(), "dock-1")  # anything with .claims
