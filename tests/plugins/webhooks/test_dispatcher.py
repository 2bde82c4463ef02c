"""plugins.webhooks.dispatcher: the durable delivery log against a real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from plugins.webhooks import (
    RetryPolicy,
    WebhookDispatcher,
    WebhookEndpoint,
    WebhookError,
    verify_signature,
)

from .support import ALERT, FAST, SECRET, endpoint, wait_state


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
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    receiver.statuses = [500, 503, 302]
    dispatcher = WebhookDispatcher(tmp_path / "webhooks.db", [endpoint(receiver.url)], FAST,
                                   metrics_registry=registry)
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
    value = registry.get_sample_value
    for _ in range(100):  # the counter follows the log update
        if value("dockcast_webhook_attempts_total", {"endpoint": "wms", "outcome": "delivered"}):
            break
        await asyncio.sleep(0.01)
    assert value("dockcast_webhook_attempts_total", {"endpoint": "wms", "outcome": "retry"}) == 3
    assert value("dockcast_webhook_attempts_total", {"endpoint": "wms", "outcome": "delivered"}) == 1
    assert value("dockcast_webhook_delivery_seconds_count", {"endpoint": "wms"}) == 1
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


async def test_credentials_in_the_url_go_as_basic_auth_and_never_in_the_log(tmp_path, receiver, caplog):
    url = receiver.url.replace("http://", "http://wms%40cn:p%3Ass@")
    dispatcher = WebhookDispatcher(tmp_path / "webhooks.db", [endpoint(url)], FAST)
    await dispatcher.start()
    with caplog.at_level(logging.DEBUG):
        await dispatcher.enqueue(ALERT, room="dock-1", shipment_id="S1")
        headers, body, _ = await receiver.next()
        await wait_state(dispatcher, "delivered")
    import base64

    assert headers["Authorization"] == "Basic " + base64.b64encode(b"wms@cn:p:ss").decode()
    assert verify_signature(SECRET, headers["Dockcast-Signature"], body) > 0
    assert "p%3Ass" not in caplog.text and "p:ss" not in caplog.text
    await dispatcher.close()
