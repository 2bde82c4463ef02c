"""Webhook endpoints and the retry policy, from a node's TOML or in code."""

from __future__ import annotations

import os
import random
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from signalling.errors import FixedCodeError

__all__ = ["WebhookEndpoint", "RetryPolicy", "WebhookError", "redact_url", "MIN_SECRET_CHARS"]

MIN_SECRET_CHARS = 16


class WebhookError(FixedCodeError, ValueError):
    """A bad endpoint or retry configuration; the message names the field."""

    code = "internal"


def redact_url(url: str) -> str:
    """``url`` without credentials, query or fragment: safe to log."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _names(value: Any, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise WebhookError(f"{what} must be a list of strings")
    names = frozenset(value)
    if not all(isinstance(n, str) and n for n in names):
        raise WebhookError(f"{what} must be a list of non-empty strings")
    return names


@dataclass(frozen=True)
class WebhookEndpoint:
    """Where to POST, the shared secret, and which events (``None``: no filter).

    ``events`` filters by event type; ``rooms`` and ``shipment_ids`` select the events
    of those rooms or shipments (either matches, as in ``events.subscribe``).
    ``name`` identifies the endpoint in the delivery log and in logs (default: the URL
    without query and credentials); keep it stable across restarts.
    """

    url: str
    secret: str = field(repr=False)
    name: str = ""
    events: frozenset[str] | None = None
    rooms: frozenset[str] | None = None
    shipment_ids: frozenset[str] | None = None

    def __post_init__(self) -> None:
        try:
            parts = urllib.parse.urlsplit(self.url)
            parts.port  # noqa: B018 - raises on a bad port
        except (TypeError, ValueError, AttributeError):
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookError("webhook url must be an http:// or https:// URL with a host")
        if not isinstance(self.secret, str) or len(self.secret) < MIN_SECRET_CHARS:
            raise WebhookError(
                f"webhook {redact_url(self.url)}: secret must be at least {MIN_SECRET_CHARS} characters"
            )
        if not self.name:
            object.__setattr__(self, "name", redact_url(self.url))
        for what in ("events", "rooms", "shipment_ids"):
            object.__setattr__(self, what, _names(getattr(self, what), what))

    @classmethod
    def from_config(cls, data: Mapping[str, Any], environ: Mapping[str, str] | None = None):
        """From a config map: ``url``, ``secret`` or ``secret_env`` (the name of an
        environment variable holding it), optional ``name``, ``events``, ``rooms``,
        ``shipment_ids``."""
        if not isinstance(data, Mapping):
            raise WebhookError("a webhook endpoint must be a map")
        allowed = {"url", "secret", "secret_env", "name", "events", "rooms", "shipment_ids"}
        unknown = set(data) - allowed
        if unknown:
            raise WebhookError(f"unknown webhook settings: {sorted(unknown)}")
        values = {k: v for k, v in data.items() if k != "secret_env"}
        if "secret_env" in data:
            environ = os.environ if environ is None else environ
            if data["secret_env"] not in environ:
                raise WebhookError(f"environment variable {data['secret_env']} (webhook secret) is not set")
            values["secret"] = environ[data["secret_env"]]
        if "url" not in values or "secret" not in values:
            raise WebhookError("a webhook endpoint needs url and secret (or secret_env)")
        return cls(**values)

    def matches(self, event_type: str, room: str | None, shipment_id: str | None) -> bool:
        if self.events is not None and event_type not in self.events:
            return False
        if self.rooms is None and self.shipment_ids is None:
            return True
        return (self.rooms is not None and room in self.rooms) or (
            self.shipment_ids is not None and shipment_id in self.shipment_ids
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Attempt ``n`` (from 1) failed: wait ``min(max_delay_s, initial_delay_s *
    multiplier ** (n - 1))``, less a random part of up to ``jitter`` of it, then retry;
    give up after ``max_attempts``. The defaults retry for about two and a half hours."""

    initial_delay_s: float = 1.0
    max_delay_s: float = 600.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int = 20
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        checks = {
            "initial_delay_s": self.initial_delay_s >= 0,
            "max_delay_s": self.max_delay_s >= self.initial_delay_s,
            "multiplier": self.multiplier >= 1,
            "jitter": 0 <= self.jitter <= 1,
            "max_attempts": isinstance(self.max_attempts, int) and self.max_attempts >= 1,
            "timeout_s": self.timeout_s > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise WebhookError(f"bad retry settings: {', '.join(bad)}")

    def delay(self, attempts: int, rng: random.Random) -> float:
        base = min(self.max_delay_s, self.initial_delay_s * self.multiplier ** (attempts - 1))
        return base * (1 - self.jitter * rng.random())
