"""What the webhook tests share: a real HTTP receiver on 127.0.0.1, a secret, helpers."""

from __future__ import annotations

import asyncio
import http.server
import queue
import threading
import time

from plugins.webhooks import RetryPolicy, WebhookDispatcher, WebhookEndpoint

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


def endpoint(url: str, **kwargs) -> WebhookEndpoint:
    return WebhookEndpoint(url=url, secret=SECRET, name="wms", **kwargs)


async def wait_state(dispatcher: WebhookDispatcher, state: str, count: int = 1, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        found = await dispatcher.deliveries(state)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.01)
