"""A shipment event through a real node: to the bound room, watchers and webhooks.

One ``shipment.event`` with severity warning must reach every member of the room bound
to the shipment as ``shipment_status`` and ``alert``, an ``events.subscribe`` watcher of
both the room and the shipment (once each), a webhook receiver (a real HTTP server here)
with a valid signature, and the example receiver (``examples/webhook_receiver.py``),
which refuses the same request once tampered with.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import pathlib
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from plugins.webhooks import SIGNATURE_HEADER, sign, verify_signature
from signalling.client import DockcastClient, ServerError

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEST_SECRET = "test-endpoint-secret-0123456789"
EXAMPLE_SECRET = "example-endpoint-secret-987654321"

pytestmark = [pytest.mark.timeout(90)]


class Capture(http.server.ThreadingHTTPServer):
    """Keeps every request: (path, headers, raw body)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CaptureHandler)
        self.requests: list[tuple[str, dict, bytes]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _CaptureHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        if len(body) < length:  # the sender died mid-request (a SIGKILLed node): not a request
            return
        self.server.requests.append((self.path, dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def capture():
    server = Capture()
    yield server
    server.close()


@pytest.fixture
def example_receiver():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-u", str(ROOT / "examples" / "webhook_receiver.py"), "--port", str(port),
         "--secret", EXAMPLE_SECRET],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert "listening" in proc.stdout.readline()
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    yield f"http://127.0.0.1:{port}/dockcast", lines
    proc.terminate()
    proc.wait(timeout=10)


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def _wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    return predicate()


def _webhooks_config(tmp_path: pathlib.Path, endpoints: str) -> pathlib.Path:
    """A node TOML with fast webhook retries and the given endpoint tables."""
    path = tmp_path / "node.toml"
    path.write_text(f"""
[plugins.webhooks]
retry = {{initial_delay_s = 0.1, max_delay_s = 0.5}}
{endpoints}""")
    return path


def _config(tmp_path: pathlib.Path, capture_port: int, example_url: str) -> pathlib.Path:
    return _webhooks_config(tmp_path, f"""
[[plugins.webhooks.endpoints]]
name = "test"
url = "http://127.0.0.1:{capture_port}/hooks/dockcast"
secret_env = "DC_TEST_HOOK_SECRET"
events = ["shipment_status", "alert"]

[[plugins.webhooks.endpoints]]
name = "example"
url = "{example_url}"
secret_env = "DC_EXAMPLE_HOOK_SECRET"
shipment_ids = ["S-100"]
events = ["alert"]
""")


async def test_warning_reaches_members_watcher_and_webhooks(tmp_path, node_factory, capture,
                                                            example_receiver):
    example_url, example_lines = example_receiver
    config = _config(tmp_path, capture.port, example_url)
    node = node_factory.start(env={"DC_TEST_HOOK_SECRET": TEST_SECRET,
                                   "DC_EXAMPLE_HOOK_SECRET": EXAMPLE_SECRET},
                              args=("--config", str(config)))
    admin = await DockcastClient.connect(node.url, node.token("wms", None, ("admin",)))
    watcher = await DockcastClient.connect(node.url, node.token("desk", None, ("admin",)),
                                           subprotocol="msgpack")
    members = []
    try:
        await admin.shipment_upsert("S-100", carrier="UPS", origin="Shenzhen, CN",
                                    destination="Los Angeles, US")
        room = await admin.room_create("dock-7", shipment_id="S-100")
        assert room["shipment_id"] == "S-100" and room["participants"] == []
        await watcher.events_subscribe(rooms=["dock-7"], shipment_ids=["S-100"])
        assert node.metrics()["dockcast_watchers"] == 1
        for i in range(3):
            member = await DockcastClient.connect(node.url, node.token(f"m{i}", "dock-7"),
                                                  subprotocol=("json", "msgpack")[i % 2])
            members.append(member)
            joined = await member.join("dock-7")
            assert joined["shipment"]["shipment_id"] == "S-100"
        for _ in members:
            assert (await watcher.next_event("participant_joined"))["room"] == "dock-7"

        reply = await admin.shipment_event("S-100", "import_customs_hold",
                                           "commercial invoice missing", "warning")
        assert reply["type"] == "ok" and reply["seq"] == 1

        for member in members:
            status = await member.next_event("shipment_status")
            assert (status["shipment_id"], status["status"], status["detail"]) == \
                ("S-100", "import_customs_hold", "commercial invoice missing")
            alert = await member.next_event("alert")
            assert (alert["shipment_id"], alert["room"], alert["severity"]) == ("S-100", "dock-7", "warning")
            assert "commercial invoice missing" in alert["text"]
        # watching the room and its shipment: each event once
        assert (await watcher.next_event("shipment_status"))["status"] == "import_customs_hold"
        assert (await watcher.next_event("alert"))["severity"] == "warning"
        # a later event of the room: once it is here, a repeat of the status would be too
        await members[0].send("note", "marker")
        await watcher.next_event("message")
        assert [e for e in watcher._events if e["type"] in ("shipment_status", "alert")] == []

        # the test's own receiver: both events, signed with its secret
        assert await _wait_for(lambda: len(capture.requests) >= 2)
        delivered = {}
        for path, headers, body in capture.requests:
            assert path == "/hooks/dockcast"
            verify_signature(TEST_SECRET, headers[SIGNATURE_HEADER], body)
            envelope = json.loads(body)
            assert headers["Dockcast-Event-Type"] == envelope["type"] == envelope["event"]["type"]
            delivered[envelope["type"]] = envelope
        assert set(delivered) == {"shipment_status", "alert"}
        assert delivered["alert"]["room"] == "dock-7" and delivered["alert"]["shipment_id"] == "S-100"
        assert delivered["alert"]["event"]["text"] == alert["text"]

        # the example receiver accepted the node's genuine alert ...
        assert await _wait_for(lambda: any(line.startswith("alert ") for line in example_lines))
        line = next(line for line in example_lines if line.startswith("alert "))
        assert "room=dock-7" in line and "shipment_id=S-100" in line
        # ... and refuses the same request tampered with
        _, headers, body = next(r for r in capture.requests if json.loads(r[2])["type"] == "alert")
        forged = sign(EXAMPLE_SECRET, body, int(time.time()))
        tampered = body.replace(b'"severity":"warning"', b'"severity":"info"')
        assert tampered != body
        plain = {"Content-Type": "application/json", "Dockcast-Event-Id": json.loads(body)["id"]}
        assert _post(example_url, tampered, {**plain, SIGNATURE_HEADER: forged}) == 401
        assert _post(example_url, body, {**plain, SIGNATURE_HEADER: headers[SIGNATURE_HEADER]}) == 401
        assert _post(example_url, body, plain) == 401
        assert _post(example_url, body, {**plain, SIGNATURE_HEADER: forged}) == 204
        # exactly the three refused requests are logged as rejected (no more were sent)
        assert await _wait_for(lambda: sum("rejected a request" in line for line in example_lines) >= 3)
        assert sum("rejected a request" in line for line in example_lines) == 3
    finally:
        for client in (admin, watcher, *members):
            await client.close()


async def test_room_create_close_and_remove(node_factory):
    # a short departure timeout, to see an emptied room close without waiting 20 s
    node = node_factory.start(env={"DOCKCAST_ROOM_DEPARTURE_TIMEOUT_S": "0.5"})
    admin = await DockcastClient.connect(node.url, node.token("wms", None, ("admin",)))
    a = await DockcastClient.connect(node.url, node.token("alice", "dock-9"))
    b = await DockcastClient.connect(node.url, node.token("bob", "dock-9"))
    try:
        await admin.room_create("dock-9", shipment_id="S-9", metadata={"dock": 9})
        await admin.events_subscribe(rooms=["dock-9"])
        # open with nobody in it, waiting for its first participant (empty_timeout)
        assert [r["room"] for r in (await admin.room_list())["rooms"]] == ["dock-9"]
        joined = await a.join("dock-9")
        await b.join("dock-9")
        await admin.participant_remove("dock-9", joined["participant_id"])
        assert await a.next_event("room_closed") == {"type": "room_closed", "room": "dock-9", "reason": "removed"}
        left = await b.next_event("participant_left")
        assert left["participant_id"] == joined["participant_id"]
        with pytest.raises(ServerError) as refused:
            await a.send("chat", "still here?")
        assert refused.value.code == "bad_request"
        [info] = (await admin.room_list())["rooms"]
        assert [p["identity"] for p in info["participants"]] == ["bob"]
        # room.close: the members are told and out; the shipment is free for a new room
        await admin.room_close("dock-9")
        assert (await b.next_event("room_closed"))["reason"] == "closed"
        assert (await admin.next_event("room_closed"))["reason"] == "closed"  # watching it
        assert (await admin.room_list())["rooms"] == []
        shipment = await admin.shipment_get("S-9")
        assert [(r["room"], r["open"], r["close_reason"]) for r in shipment["rooms"]] == \
            [("dock-9", False, "closed")]
        await admin.room_create("dock-9b", shipment_id="S-9")
        # a room made by join closes once its last participant left and nobody came
        # back within the departure timeout
        await b.join("dock-9")
        await b.leave()
        assert "dock-9" in [r["room"] for r in (await admin.room_list())["rooms"]]
        closed = await admin.next_event("room_closed")
        assert (closed["room"], closed["reason"]) == ("dock-9", "empty")
        rooms = [r["room"] for r in (await admin.room_list())["rooms"]]
        assert rooms == ["dock-9b"]
    finally:
        for client in (admin, a, b):
            await client.close()


async def test_room_messages_reach_a_webhook_once_each_across_a_kill(tmp_path, node_factory, capture):
    """The webhooks plugin follows the room log from its own cursor: every message
    answered ``sent`` is POSTed, also when the node was SIGKILLed after answering it
    and before the webhook went out; receivers dedupe by Dockcast-Event-Id."""
    config = _webhooks_config(tmp_path, f"""
[[plugins.webhooks.endpoints]]
name = "messages"
url = "http://127.0.0.1:{capture.port}/hooks/messages"
secret_env = "DC_TEST_HOOK_SECRET"
events = ["message"]
""")
    env = {"DC_TEST_HOOK_SECRET": TEST_SECRET}
    node = node_factory.start(env=env, args=("--config", str(config)))
    answered: dict[int, str] = {}
    member = await DockcastClient.connect(node.url, node.token("scanner", "dock-9"))
    await member.join("dock-9")
    replies = await asyncio.gather(*(member.send("scan", {"parcel": i}, msg_id=f"scan-{i}")
                                     for i in range(40)))
    answered.update({r["seq"]: r["msg_id"] for r in replies})
    node.kill()  # at once: webhooks may still be pending; the follower's cursor says which
    await member.close()
    node = node_factory.restart(node)
    member = await DockcastClient.connect(node.url, node.token("scanner", "dock-9"))
    try:
        await member.join("dock-9")
        for i in range(40, 50):
            reply = await member.send("scan", {"parcel": i}, msg_id=f"scan-{i}")
            answered[reply["seq"]] = f"scan-{i}"
    finally:
        await member.close()

    def by_seq() -> dict[int, set[str]]:
        seen: dict[int, set[str]] = {}
        for _, headers, body in list(capture.requests):
            envelope = json.loads(body)
            seen.setdefault(envelope["event"]["seq"], set()).add(headers["Dockcast-Event-Id"])
        return seen

    assert await _wait_for(lambda: set(by_seq()) >= set(answered), timeout=30), \
        f"missing seqs: {sorted(set(answered) - set(by_seq()))}"
    for path, headers, body in capture.requests:
        verify_signature(TEST_SECRET, headers[SIGNATURE_HEADER], body)
        envelope = json.loads(body)
        assert envelope["type"] == "message" and envelope["room"] == "dock-9"
        assert envelope["event"]["msg_id"] == answered[envelope["event"]["seq"]]
    # a message POSTed again after the kill carries the same event id
    assert all(len(ids) == 1 for ids in by_seq().values())
    node.stop()


def _envelope(event_id: str, text: str = "dock door 3 jammed") -> bytes:
    return json.dumps({"id": event_id, "type": "alert", "ts": time.time(), "room": "dock-3",
                       "shipment_id": "S-300", "event": {"type": "alert", "severity": "warning",
                                                         "text": text}},
                      separators=(",", ":")).encode()


def _signed(body: bytes, event_id: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json",
               SIGNATURE_HEADER: sign(EXAMPLE_SECRET, body, int(time.time()))}
    if event_id is not None:
        headers["Dockcast-Event-Id"] = event_id
    return headers


async def test_example_receiver_dedupes_on_the_signed_body_id(example_receiver):
    """The header id is not signed: the receiver dedupes on the body's ``id`` and refuses
    a request whose Dockcast-Event-Id header names another event."""
    url, lines = example_receiver
    body = _envelope("evt-1")
    assert _post(url, body, _signed(body, "evt-1")) == 204
    # a redelivery (signed again, same id): accepted, printed once
    assert _post(url, body, _signed(body, "evt-1")) == 204
    # an unsigned header that names another event: refused, not printed
    assert _post(url, body, _signed(body, "evt-2")) == 401
    # another signed event under a header id already seen: refused, not dropped as a repeat
    other = _envelope("evt-3", "seal broken")
    assert _post(url, other, _signed(other, "evt-1")) == 401
    # the header is optional: the body id is what counts
    assert _post(url, other, _signed(other, None)) == 204
    assert _post(url, other, _signed(other, "evt-3")) == 204
    marker = _envelope("evt-4", "marker")  # printed after everything above, or not at all
    assert _post(url, marker, _signed(marker, "evt-4")) == 204
    assert await _wait_for(lambda: any("marker" in line for line in lines))
    printed = [line for line in lines if line.startswith("alert ") and "marker" not in line]
    assert len(printed) == 2, lines
    assert "dock door 3 jammed" in printed[0] and "seal broken" in printed[1]
    assert sum("rejected a request" in line for line in lines) == 2


@pytest.mark.parametrize("signature", [
    "t=\u00b2,v1=00",          # a digit for str.isdigit that int() refuses
    "t=1,v1=\u00e9\u00e9",     # a non-ASCII digest (hmac.compare_digest raises TypeError)
    "v1",                      # no '='
    "t=,v1=",
    "t=99999999999999999999999999,v1=" + "0" * 64,
    ",,,",
])
async def test_example_receiver_answers_401_to_a_malformed_signature(example_receiver, signature):
    url, lines = example_receiver
    body = _envelope("evt-9")
    headers = {"Content-Type": "application/json", "Dockcast-Event-Id": "evt-9",
               SIGNATURE_HEADER: signature}
    assert _post(url, body, headers) == 401
    # and it still serves
    assert _post(url, body, _signed(body, "evt-9")) == 204
    assert not any("Traceback" in line for line in lines), lines


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"type": "alert"}', b'{"id": 7}'])
async def test_example_receiver_answers_400_to_a_signed_body_it_cannot_read(example_receiver, body):
    url, lines = example_receiver
    assert _post(url, body, _signed(body, None)) == 400
    good = _envelope("evt-10")
    assert _post(url, good, _signed(good, "evt-10")) == 204
    assert not any("Traceback" in line for line in lines), lines
