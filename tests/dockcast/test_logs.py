"""Log lines: structured, and never a secret (URL credentials and query values, the
node's own secrets, the websocket frames that carry tokens)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from dockcast import logs
from dockcast.logs import configure_logging, redact_text, register_secrets


@pytest.mark.parametrize("text, expected", [
    ("redis://:pw-123@127.0.0.1:6379/0", "redis://:<redacted>@127.0.0.1:6379/0"),
    ("redis://user:pw@host", "redis://<redacted>@host"),
    ("post to http://u:p@127.0.0.1:1/hook?token=abc&x=1 failed",
     "post to http://<redacted>@127.0.0.1:1/hook?token=<redacted>&x=<redacted> failed"),
    ("url='https://h.example/x?sig=s3cr3t#frag'", "url='https://h.example/x?sig=<redacted>#frag'"),
    ("no url here, a=b?c=d", "no url here, a=b?c=d"),
    ("https://wms.example.com/hooks/dockcast", "https://wms.example.com/hooks/dockcast"),
])
def test_urls_lose_their_credentials_and_query_values(text, expected):
    assert redact_text(text) == expected


class Captured(io.StringIO):
    def configure(self, level: str, fmt: str) -> None:
        configure_logging(level, fmt)
        logging.getLogger().handlers[0].setStream(self)


@pytest.fixture
def captured(monkeypatch):
    monkeypatch.setattr(logs, "_SECRETS", set())
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    levels = {n: logging.getLogger(n).level
              for n in ("aioice", "aiortc", "websockets", "dockcast.signalling.websockets")}
    yield Captured()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_line_is_redacted_message_extras_and_tracebacks(captured, fmt):
    captured.configure("debug", fmt)
    register_secrets(["api-secret-0123456789abcdef", "short", 'quo"te-secret-0123'])
    log = logging.getLogger("dockcast.test")
    log.info("using %s", "redis://:hunter2-pw@h:1", extra={"endpoint": "http://a:b@h/x?token=t0k3n"})
    log.warning('key api-secret-0123456789abcdef and quo"te-secret-0123 and short')
    try:
        raise ValueError("boom with api-secret-0123456789abcdef")
    except ValueError:
        log.exception("failed")
    out = captured.getvalue()
    for secret in ("hunter2-pw", "t0k3n", "a:b@", "api-secret-0123456789abcdef", "quo"):
        assert secret not in out, out
    assert "short" in out  # too short to be registered: a common word is left alone
    if fmt == "json":
        assert [json.loads(line)["level"] for line in out.splitlines() if line.startswith("{")] == \
            ["info", "warning", "error"]


def test_websocket_frames_are_never_logged_even_at_debug(captured):
    captured.configure("debug", "text")
    logging.getLogger("dockcast.signalling.websockets").debug("< TEXT '{\"token\": \"eyJ...\"}'")
    logging.getLogger("dockcast.signalling.websockets").warning("handshake failed")
    assert "eyJ" not in captured.getvalue() and "handshake failed" in captured.getvalue()
