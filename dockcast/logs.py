"""Structured logs: ``text`` (time level logger message key=value ...) or ``json``.

Fields passed with ``extra={...}`` are written as keys, so a log line at 3 a.m. says
which room, participant or request it is about. Secrets are never passed to loggers,
and every line is redacted once more as it is written (:func:`redact_text`): URLs lose
their credentials (``scheme://<redacted>@host``) and their query values
(``?token=<redacted>``), and the node's own secrets (:func:`register_secrets`: the API
secrets, the Redis password, plugin secrets) are replaced by ``<redacted>`` wherever
they appear, tracebacks included. The websocket library's frame dumps (which carry
tokens) are never written, whatever the level.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable

__all__ = ["configure_logging", "redact_text", "register_secrets", "REDACTED"]

REDACTED = "<redacted>"
# Shorter strings are not replaced by value (a common word would be garbled everywhere);
# they are still removed from URLs.
MIN_SECRET_CHARS = 8

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_URL = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>\\]+""")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*)@")
_QUERY_VALUE = re.compile(r"([?&][^=&#]*)=([^&#]*)")
_SECRETS: set[str] = set()


def register_secrets(values: Iterable[str | None]) -> None:
    """Values never to be written in a log line (those of at least 8 characters)."""
    for value in values:
        if isinstance(value, str) and len(value) >= MIN_SECRET_CHARS:
            _SECRETS.add(value)
            escaped = json.dumps(value)[1:-1]  # as it appears inside a JSON line
            if escaped != value:
                _SECRETS.add(escaped)


def _redact_url(match: re.Match[str]) -> str:
    url = match.group(0)
    url = _USERINFO.sub(lambda m: m.group(1) + (":" if m.group(2).startswith(":") else "") + REDACTED + "@", url)
    head, sep, rest = url.partition("?")
    if sep:
        query, hash_, fragment = rest.partition("#")
        query = _QUERY_VALUE.sub(lambda m: f"{m.group(1)}={REDACTED}", "?" + query)[1:]
        url = head + sep + query + hash_ + fragment
    return url


def redact_text(text: str) -> str:
    """``text`` with URL credentials and query values, and every registered secret,
    replaced by ``<redacted>``."""
    if "://" in text:
        text = _URL.sub(_redact_url, text)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{stamp}.{int(record.msecs):03d}Z {record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v!r}" if isinstance(v, str) and " " in v else f"{k}={v}"
                                   for k, v in extras.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact_text(line)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                 "logger": record.name, "msg": record.getMessage(), **_extras(record)}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact_text(json.dumps(entry, default=str))


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiortc/aioice are chatty at debug level and log per packet
    for noisy in ("aioice", "aiortc", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # websockets dumps every frame at debug level, tokens in hello included: never; and its
    # own "connection open websocket=<object at 0x...>" says nothing a person can use:
    # signalling.server logs each connection with its address, path and subprotocol
    logging.getLogger("dockcast.signalling.websockets").setLevel(max(logging.WARNING, root.level))
