"""plugins.webhooks.config: endpoints, filters and the retry policy."""

from __future__ import annotations

import pytest

from plugins.webhooks import (
    RetryPolicy,
    WebhookEndpoint,
    WebhookError,
)

from .support import SECRET, endpoint


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
