"""Webhooks against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.server
import json
import logging
import queue
import threading
import time

import pytest

from plugins.webhooks import (
    InvalidSignature,
    RetryPolicy,
    WebhookDispatcher,
    WebhookEndpoint,
    WebhookError,
    WebhooksPlugin,
    sign,
    message_event_id,
    verify_signature,
)
from signalling.events import Alert, MessageStored, ParticipantJoined, RoomCreated
from signalling.hooks import HookRegistry
from signalling.messages import StoredMessage

SECRET = "whsec-test-0123456789abcdef"
FAST = RetryPolicy(initial_delay_s=0.02, max_delay_s=0.1, jitter=0.5, max_attempts=5, timeout_s=5)
ALERT = {"type": "alert", "shipment_id": "S1", "room": "dock-1", "severity": "warning",
         "text": "shipment S1: import customs hold", "ts": 1.0}


class Receiver:
    """An HTTP server that answers with the queued statuses (then 200) and keeps requests."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests: queue.Queue = queue.Queue()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.put((dict(self.headers), body, status))
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/dockcast"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    async def next(self, timeout: float = 5.0):
        return await asyncio.to_thread(self.requests.get, True, timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def endpoint(url: str, **kwargs) -> WebhookEndpoint:
    return WebhookEndpoint(url=url, secret=SECRET, name="wms", **kwargs)


async def wait_state(dispatcher: WebhookDispatcher, state: str, count: int = 1, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        found = await dispatcher.deliveries(state)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.01)


# -- signatures -------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = b'{"type":"alert"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body, 1700000000) == f"t=1700000000,v1={expected}"
    assert verify_signature(SECRET, sign(SECRET, body, 1700000000), body, now=1700000100) == 1700000000
    assert verify_signature(SECRET, sign(SECRET, body, 1700000000), body.decode(), now=1700000000)


@pytest.mark.parametrize(
    "header, body, secret, now, match",
    [
        (sign(SECRET, b"{}", 1000), b'{"x":1}', SECRET, 1000, "does not match"),
        (sign(SECRET, b"{}", 1000), b"{}", SECRET + "x", 1000, "does not match"),
        (sign(SECRET, b"{}", 1000), b"{}", SECRET, 1301, "away from now"),
        (sign(SECRET, b"{}", 1000), b"{}", SECRET, 699, "away from now"),
        (sign(SECRET, b"{}", 1000).replace("t=1000", "t=1001"), b"{}", SECRET, 1000, "does not match"),
        (None, b"{}", SECRET, 1000, "missing"),
        ("garbage", b"{}", SECRET, 1000, "malformed"),
        ("t=abc,v1=00", b"{}", SECRET, 1000, "malformed timestamp"),
        ("t=1000", b"{}", SECRET, 1000, "needs t= and v1="),
        ("v1=00", b"{}", SECRET, 1000, "needs t= and v1="),
    ],
)
def test_bad_signatures_are_rejected(header, body, secret, now, match):
    with pytest.raises(InvalidSignature, match=match):
        verify_signature(secret, header, body, now=now)


def test_any_v1_may_match_for_secret_rotation():
    old, new = sign("old-secret-0123456789", b"{}", 1000), sign(SECRET, b"{}", 1000)
    header = f"{new},{old.split(',')[1]}"
    assert verify_signature("old-secret-0123456789", header, b"{}", now=1000) == 1000
    assert verify_signature(SECRET, header, b"{}", now=1000) == 1000


# -- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, match",
    [
        ({"url": "ftp://x/y", "secret": SECRET}, "http:// or https://"),
        ({"url": "http://", "secret": SECRET}, "http:// or https://"),
        ({"url": "http://h:99999/", "secret": SECRET}, "http:// or https://"),
        ({"url": "http://h/", "secret": "short"}, "at least 16"),
        ({"url": "http://h/"}, "needs url and secret"),
        ({"url": "http://h/", "secret_env": "DOCKCAST_TEST_NO_SUCH_VAR"}, "is not set"),
        ({"url": "http://h/", "secret": SECRET, "colour": 1}, "unknown webhook settings"),
        ({"url": "http://h/", "secret": SECRET, "events": "alert"}, "list of strings"),
    ],
)
def test_bad_endpoint_config(data, match):
    with pytest.raises(WebhookError, match=match):
        WebhookEndpoint.from_config(data)


def test_endpoint_config_from_environment_and_redacted_name():
    ep = WebhookEndpoint.from_config(
        {"url": "https://user:pw@wms.example:8443/hook?token=abc", "secret_env": "HOOK_SECRET",
         "events": ["alert"]},
        environ={"HOOK_SECRET": SECRET},
    )
    assert ep.secret == SECRET and ep.events == frozenset({"alert"})
    assert ep.name == "https://wms.example:8443/hook"
    assert SECRET not in repr(ep)


def test_filters():
    everything = endpoint("http://h/")
    alerts = endpoint("http://h/", events=["alert"])
    dock = endpoint("http://h/", rooms=["dock-1"], shipment_ids=["S9"])
    assert everything.matches("message", None, None)
    assert alerts.matches("alert", None, None) and not alerts.matches("shipment_status", None, None)
    assert dock.matches("alert", "dock-1", None) and dock.matches("alert", None, "S9")
    assert not dock.matches("alert", "dock-2", "S1")


@pytest.mark.parametrize("bad", [{"multiplier": 0.5}, {"jitter": 2}, {"max_attempts": 0},
                                 {"initial_delay_s": 10, "max_delay_s": 1}])
def test_bad_retry_policy(bad):
    with pytest.raises(WebhookError):
        RetryPolicy(**bad)


def test_backoff_grows_exponentially_with_jitter_below():
    import random

    policy = RetryPolicy(initial_delay_s=1, max_delay_s=30, multiplier=2, jitter=0.25)
    rng = random.Random(7)
    for attempts, base in [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (20, 30)]:
        delay = policy.delay(attempts, rng)
        assert base * 0.75 <= delay <= base


# -- delivery ---------------------------------------------------------------------------


async def test_delivery_is_signed_and_logged(tmp_path, receiver):
    dispatcher = WebhookDispatcher(tmp_path / "webhooks.db", [endpoint(receiver.url)], FAST)
    await dispatcher.start()
    [queued] = await dispatcher.enqueue(ALERT, room="dock-1", shipment_id="S1")
    headers, body, _ = await receiver.next()
    assert verify_signature(SECRET, headers["Dockcast-Signature"], body) > 0
    assert headers["Dockcast-Event-Id"] == queued.event_id
    assert headers["Dockcast-Event-Type"] == "alert"
    assert headers["Content-Type"] == "application/json"
    envelope = json.loads(body)
    assert envelope == {"id": queued.event_id, "type": "alert", "ts": envelope["ts"],
                        "room": "dock-1", "shipment_id": "S1", "event": ALERT}
    [done] = await wait_state(dispatcher, "delivered")
    assert (done.attempts, done.last_error) == (1, None)
    await dispatcher.close()


async def test_filters_select_endpoints_and_bytes_become_base64(tmp_path, receiver):
    dispatcher = WebhookDispatcher(
        tmp_path / "webhooks.db",
        [endpoint(receiver.url, events=["message"]),
         WebhookEndpoint(receiver.url, SECRET, name="other", rooms=["dock-9"])],
        FAST,
    )
    await dispatcher.start()
    assert await dispatcher.enqueue(ALERT, room="dock-1") == []
    [queued] = await dispatcher.enqueue({"type": "message", "payload": b"\x00\x01"}, room="dock-1")
    assert queued.endpoint == "wms"
    _, body, _ = await receiver.next()
    assert json.loads(body)["event"]["payload"] == "AAE="
    with pytest.raises(WebhookError, match="not JSON-able"):
        await dispatcher.enqueue({"type": "message", "payload": object()})
    with pytest.raises(WebhookError, match="string type"):
        await dispatcher.enqueue({"payload": 1})
    await dispatcher.close()


async def test_retries_until_the_receiver_recovers(tmp_path, receiver):
    receiver.statuses = [500, 503, 302]
    dispatcher = WebhookDispatcher(tmp_path / "webhooks.db", [endpoint(receiver.url)], FAST)
    await dispatcher.start()
    [queued] = await dispatcher.enqueue(ALERT, room="dock-1")
    seen = [await receiver.next() for _ in range(4)]
    assert [status for _, _, status in seen] == [500, 503, 302, 200]
    for headers, body, _ in seen:  # every attempt: same event, its own valid signature
        assert headers["Dockcast-Event-Id"] == queued.event_id
        verify_signature(SECRET, headers["Dockcast-Signature"], body)
    [done] = await wait_state(dispatcher, "delivered")
    assert done.attempts == 4
    assert receiver.requests.empty()
    await dispatcher.close()


async def test_gives_up_after_max_attempts(tmp_path, receiver, caplog):
    receiver.statuses = [500] * 10
    policy = RetryPolicy(initial_delay_s=0.01, max_delay_s=0.01, max_attempts=3)
    dispatcher = WebhookDispatcher(tmp_path / "webhooks.db", [endpoint(receiver.url)], policy)
    with caplog.at_level(logging.WARNING, logger="plugins.webhooks"):
        await dispatcher.start()
        await dispatcher.enqueue(ALERT)
        [failed] = await wait_state(dispatcher, "failed")
    assert (failed.attempts, failed.last_error) == (3, "HTTP 500")
    assert "giving up" in caplog.text
    await dispatcher.close()


async def test_unreachable_receiver_is_retried_and_secrets_stay_out_of_logs(tmp_path, caplog, free_port):
    url = f"http://127.0.0.1:{free_port}/hook?token=query-secret"
    policy = RetryPolicy(initial_delay_s=0.01, max_delay_s=0.01, max_attempts=2, timeout_s=2)
    dispatcher = WebhookDispatcher(
        tmp_path / "webhooks.db", [WebhookEndpoint(url, SECRET)], policy)
    with caplog.at_level(logging.DEBUG):
        await dispatcher.start()
        await dispatcher.enqueue(ALERT)
        [failed] = await wait_state(dispatcher, "failed")
    assert "Connection refused" in failed.last_error or "URLError" in failed.last_error
    assert SECRET not in caplog.text and "query-secret" not in caplog.text
    assert f"http://127.0.0.1:{free_port}/hook" in caplog.text
    await dispatcher.close()


async def test_pending_deliveries_survive_a_restart(tmp_path, receiver):
    path = tmp_path / "webhooks.db"
    receiver.statuses = [503]
    slow = RetryPolicy(initial_delay_s=60, max_delay_s=60, jitter=0)
    first = WebhookDispatcher(path, [endpoint(receiver.url)], slow)
    await first.start()
    [queued] = await first.enqueue(ALERT, shipment_id="S1")
    assert (await receiver.next())[2] == 503
    [pending] = await wait_state(first, "pending")
    while pending.attempts == 0:  # the failed attempt is being written
        await asyncio.sleep(0.01)
        [pending] = await first.deliveries("pending")
    await first.close()
    assert pending.last_error == "HTTP 503"

    # A new process, a minute later: the delivery is due and goes out.
    second = WebhookDispatcher(path, [endpoint(receiver.url)], slow, clock=lambda: time.time() + 61)
    await second.start()
    headers, body, status = await receiver.next()
    assert (status, headers["Dockcast-Event-Id"]) == (200, queued.event_id)
    verify_signature(SECRET, headers["Dockcast-Signature"], body, now=time.time() + 61)
    [done] = await wait_state(second, "delivered")
    assert done.attempts == 2
    await second.close()


async def test_unconfigured_endpoint_deliveries_fail_after_restart(tmp_path, receiver):
    path = tmp_path / "webhooks.db"
    first = WebhookDispatcher(path, [endpoint("http://127.0.0.1:9/")])
    await first.enqueue(ALERT)  # never started: the delivery stays pending
    await first.close()
    second = WebhookDispatcher(path, [WebhookEndpoint(receiver.url, SECRET, name="new")], FAST)
    await second.start()
    [failed] = await wait_state(second, "failed")
    assert failed.last_error == "endpoint no longer configured"
    await second.close()


# -- as a plugin ------------------------------------------------------------------------


async def test_plugin_delivers_published_events(ctx, receiver):
    plugin = WebhooksPlugin(
        endpoints=[{"url": receiver.url, "secret": SECRET, "events": ["alert", "shipment_status"]}],
        retry={"initial_delay_s": 0.01},
    )
    hooks = HookRegistry([plugin])
    await hooks.start(ctx)
    await ctx.events.publish(RoomCreated(room="dock-1"))  # plugins-only: never a webhook
    await ctx.events.publish(ParticipantJoined(room="dock-1", participant={}))  # filtered out
    await ctx.events.publish(Alert(room="dock-1", shipment_id="S1", severity="warning",
                                   text="shipment S1: import customs hold", ts=1.0))
    headers, body, _ = await receiver.next()
    assert headers["Dockcast-Event-Type"] == "alert"
    verify_signature(SECRET, headers["Dockcast-Signature"], body)
    envelope = json.loads(body)
    assert (envelope["room"], envelope["shipment_id"], envelope["event"]["text"]) == (
        "dock-1", "S1", "shipment S1: import customs hold")
    assert (ctx.data_dir / "webhooks.db").exists()
    await hooks.stop()
    assert receiver.requests.empty()


async def test_plugin_follows_room_messages_and_a_second_handover_is_one_event(ctx, receiver):
    plugin = WebhooksPlugin(endpoints=[{"url": receiver.url, "secret": SECRET}],
                            retry={"initial_delay_s": 0.01})
    hooks = HookRegistry([plugin])
    await hooks.start(ctx)
    follow = ctx.followers["webhooks"]
    event = MessageStored(room="dock-1", shipment_id="S1",
                          message=StoredMessage("dock-1", 7, "m-7", "alice", "chat", {"n": 1}, 2.0))
    await follow(event)
    await follow(event)  # handed over again after a crash: same id, logged once
    headers, body, _ = await receiver.next()
    assert headers["Dockcast-Event-Type"] == "message"
    assert headers["Dockcast-Event-Id"] == message_event_id(event)
    envelope = json.loads(body)
    assert (envelope["event"]["seq"], envelope["event"]["payload"], envelope["shipment_id"]) == (7, {"n": 1}, "S1")
    assert len(await plugin.dispatcher.deliveries()) == 1
    await hooks.stop()


async def test_plugin_without_endpoints_does_nothing(ctx):
    hooks = HookRegistry([WebhooksPlugin()])
    await hooks.start(ctx)
    await ctx.events.publish(Alert(room="dock-1", severity="warning", text="x"))
    await hooks.stop()
    assert not (ctx.data_dir / "webhooks.db").exists() and ctx.followers == {}


def test_plugin_refuses_bad_retry_options():
    with pytest.raises(WebhookError, match="bad retry settings"):
        WebhooksPlugin(retry={"tries": 3})
