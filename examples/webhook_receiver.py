"""A tiny webhook receiver: checks Dockcast's signature, prints the event, dedupes.

    DOCKCAST_WEBHOOK_SECRET=... python examples/webhook_receiver.py --port 8780

and in the node's TOML (``docs/webhooks.md``):

    [plugins.webhooks]
    endpoints = [{url = "http://127.0.0.1:8780/dockcast", secret_env = "DOCKCAST_WEBHOOK_SECRET"}]

Every POST is verified on its raw body with `plugins.webhooks.verify_signature` before
anything is parsed: a missing, malformed, tampered or stale signature is answered 401
and the event is dropped. A genuine one is answered 204 (so Dockcast stops retrying) and
printed once, even when Dockcast delivers it again: it dedupes on the body's ``id``,
which the signature covers. ``Dockcast-Event-Id`` is a header, not signed: a request
whose header names another id than the body is refused (401); a signed body that is not
a JSON object with a string ``id`` is answered 400.
"""

from __future__ import annotations

import argparse
import collections
import http.server
import json
import os
import pathlib
import sys
import threading
from collections.abc import Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from plugins.webhooks import (  # noqa: E402 - after the path set-up above
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    InvalidSignature,
    verify_signature,
)

__all__ = ["WebhookReceiver", "main"]

MAX_BODY = 1 << 20
SEEN_IDS = 10_000


class WebhookReceiver(http.server.ThreadingHTTPServer):
    """An HTTP server that accepts only correctly signed Dockcast webhooks.

    ``on_event(envelope)`` is called once per event id with the parsed JSON body
    (``{"id", "type", "ts", "room", "shipment_id", "event"}``); ``rejected`` counts the
    refused requests.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], secret: str, path: str = "/dockcast",
                 on_event: Callable[[dict], None] | None = None) -> None:
        super().__init__(address, _Handler)
        self.secret = secret
        self.accept_path = path
        self.on_event = on_event or _print_event
        self.rejected = 0
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, event_id: str) -> bool:
        with self._lock:
            if event_id in self._seen:
                return False
            self._seen[event_id] = None
            if len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)
            return True


class _Handler(http.server.BaseHTTPRequestHandler):
    server: WebhookReceiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?")[0] != self.server.accept_path:
            self._answer(404, "not found")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._answer(411, "Content-Length required")
            return
        if not 0 <= length <= MAX_BODY:
            self._answer(413, "body too large")
            return
        body = self.rfile.read(length)
        try:
            verify_signature(self.server.secret, self.headers.get(SIGNATURE_HEADER), body)
        except (InvalidSignature, ValueError, TypeError) as exc:
            # ValueError/TypeError: a header verify_signature cannot even parse (a
            # Unicode digit in t=, a non-ASCII v1=): malformed, so unauthorized too.
            if not isinstance(exc, InvalidSignature):
                exc = InvalidSignature(f"malformed {SIGNATURE_HEADER} header")
            self._reject(401, "invalid signature", exc)
            return
        # The signature covers the body, not the headers: the event id that counts is
        # the body's. A header that names another event is a forgery (or a bug).
        try:
            envelope = json.loads(body)
        except ValueError:
            self._reject(400, "body is not JSON", "body is not JSON")
            return
        event_id = envelope.get("id") if isinstance(envelope, dict) else None
        if not isinstance(event_id, str) or not event_id:
            self._reject(400, "body has no event id", "body has no string id")
            return
        header_id = self.headers.get(EVENT_ID_HEADER)
        if header_id is not None and header_id != event_id:
            self._reject(401, "event id mismatch",
                         f"{EVENT_ID_HEADER} header differs from the signed body id")
            return
        if self.server.first_time(event_id):
            self.server.on_event(envelope)
        self._answer(204, "")

    def _reject(self, status: int, answer: str, why: object) -> None:
        with self.server._lock:
            self.server.rejected += 1
        print(f"rejected a request: {why}", flush=True)
        self._answer(status, answer)

    def _answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # one line per event is printed instead


def _print_event(envelope: dict) -> None:
    event = envelope.get("event", {})
    where = " ".join(f"{k}={envelope[k]}" for k in ("room", "shipment_id") if envelope.get(k))
    detail = event.get("text") or event.get("status") or event.get("reason") or ""
    print(f"{envelope.get('type')} {where} {detail}".rstrip(), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8780)
    parser.add_argument("--path", default="/dockcast", help="the URL path to accept (default /dockcast)")
    parser.add_argument("--secret", default=os.environ.get("DOCKCAST_WEBHOOK_SECRET"),
                        help="the endpoint's secret (default: $DOCKCAST_WEBHOOK_SECRET)")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("give --secret or set DOCKCAST_WEBHOOK_SECRET")
    server = WebhookReceiver((args.host, args.port), args.secret, args.path)
    print(f"listening on http://{args.host}:{server.server_address[1]}{args.path}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
