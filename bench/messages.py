"""The ``messages`` load: room messages while members drop and resume.

``senders`` participants send ``count`` messages in all at ``rate`` per second in all
(``send {topic, payload, msg_id}``; a node limits each connection's request rate, so a
high rate needs several senders; ``rate_limited`` is retried with the same ``msg_id``,
and a few messages are sent twice on purpose: the server must store each once).
``members`` other participants receive them; every ``drop_every`` seconds one of
them loses its connection without a word (the socket is cut, no ``leave``), stays away
``down_time`` seconds, and comes back with ``hello.resume {session_id, last_seq}`` and
``join``. Members ack cumulatively. At the end each member must hold every ``seq``
exactly once: what is missing is lost, what came twice is duplicated.

A server that answers ``send`` with ``bad_request`` (not supported) makes the whole
scenario report ``skipped``.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from typing import Any

from .stats import percentiles

__all__ = ["run_messages", "Unsupported", "close_quietly"]


class Unsupported(Exception):
    """The server does not support room messages (or resume)."""


def _now_ms() -> float:
    return time.monotonic_ns() / 1e6


class _Member:
    def __init__(self, name: str, url: str, token: str, room: str) -> None:
        self.name = name
        self.url = url
        self.token = token
        self.room = room
        self.client: Any = None
        self.session_id: str | None = None
        self.seen: dict[int, int] = {}  # seq -> times received
        self.contiguous = 0  # highest seq with all before it received
        self.delays_ms: list[float] = []
        self.replayed = 0
        self.drops = 0
        self.resumes = 0
        self.connected = asyncio.Event()
        self.since = float("inf")
        self._acked = 0

    async def connect(self, resume: bool = False) -> None:
        from signalling.client import DockcastClient

        self.connected.clear()
        options = {"session_id": self.session_id, "last_seq": self.contiguous} if resume else None
        self.client = await DockcastClient.connect(self.url, self.token, resume=options, timeout=20)
        self.session_id = self.client.session_id or self.session_id
        self.client.on("message", self._on_message)
        joined = await self.client.join(self.room)
        if not resume:
            self.contiguous = max(self.contiguous, int(joined.get("last_seq") or 0))
        else:
            self.resumes += 1
        self.since = _now_ms()
        self.connected.set()

    def _on_message(self, event: dict) -> None:
        seq = int(event["seq"])
        count = self.seen.get(seq, 0) + 1
        self.seen[seq] = count
        if count > 1:
            return
        payload = event.get("payload") or {}
        if isinstance(payload, dict) and "t" in payload:
            sent_at = float(payload["t"])
            if sent_at >= self.since:  # live; a replay's delay is the member's absence
                self.delays_ms.append(_now_ms() - sent_at)
            else:
                self.replayed += 1
        while self.contiguous + 1 in self.seen:
            self.contiguous += 1
        if self.contiguous - self._acked >= 20:
            self._acked = self.contiguous
            asyncio.ensure_future(self._ack(self.contiguous))

    async def _ack(self, seq: int) -> None:
        try:
            await self.client.ack(seq)
        except Exception:  # noqa: BLE001 - dropped connection: resume will cover it
            pass

    async def drop(self) -> None:
        """Lose the connection abruptly: no leave, no close handshake."""
        self.drops += 1
        self.connected.clear()
        self.since = float("inf")
        transport = self.client.ws.transport
        if transport is not None:
            transport.abort()
        try:
            await asyncio.wait_for(self.client.close(), 2)
        except Exception:  # noqa: BLE001
            pass

    async def close(self) -> None:
        await close_quietly(self.client)


async def close_quietly(client: Any) -> None:
    """Close a signalling client, if there is one, whatever state its connection is in."""
    if client is not None:
        try:
            await client.close()
        except Exception:  # noqa: BLE001 - gone already
            pass


async def _send(client: Any, payload: dict, msg_id: str, errors: Counter) -> int:
    """Send until stored; returns the ``seq``. ``rate_limited`` waits and retries."""
    from signalling.client import ServerError

    for attempt in range(50):
        try:
            reply = await client.send("bench", payload, msg_id=msg_id)
            return int(reply["seq"])
        except ServerError as exc:
            errors[exc.code] += 1
            if exc.code != "rate_limited":
                raise
            await asyncio.sleep(0.02 * (attempt + 1))
    raise TimeoutError("still rate limited after 50 tries")


async def run_messages(url: str, api_key: str, api_secret: str, *, room: str = "messages",
                       members: int = 10, senders: int = 10, count: int = 10000,
                       rate: float = 400.0, drop_every: float = 0.5, down_time: float = 0.3,
                       duplicate_pct: float = 1.0, settle: float = 10.0, seed: int = 1) -> dict:
    """Run the load; raises :class:`Unsupported` if the server has no room messages."""
    from signalling.client import DockcastClient, ServerError
    from signalling.tokens import mint_token

    rng = random.Random(seed)

    def token(identity: str) -> str:
        return mint_token(api_key, api_secret, identity, room=room,
                          grants=("message", "subscribe", "publish"), ttl=6 * 3600)

    clients = []
    for i in range(max(1, senders)):
        client = await DockcastClient.connect(url, token(f"sender-{i}"), timeout=20)
        clients.append(client)
        await client.join(room)
    try:
        await clients[0].send("bench", {"probe": True})
    except ServerError as exc:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        if exc.code == "bad_request":
            raise Unsupported(f"server does not support messages ({exc.message})") from exc
        raise
    group = [_Member(f"member-{i}", url, token(f"member-{i}"), room) for i in range(members)]
    await asyncio.gather(*(m.connect() for m in group))
    base_seq = min(m.contiguous for m in group)
    stop = asyncio.Event()
    reconnects: set[asyncio.Task] = set()

    async def back(member: _Member) -> None:
        await asyncio.sleep(down_time)
        for attempt in range(20):
            try:
                await member.connect(resume=True)
                return
            except Exception:  # noqa: BLE001 - retry as a client would
                await asyncio.sleep(0.2 * (attempt + 1))

    async def churn() -> None:
        while not stop.is_set():
            await asyncio.sleep(drop_every)
            candidates = [m for m in group if m.connected.is_set()]
            if not candidates or stop.is_set():
                continue
            member = rng.choice(candidates)
            await member.drop()
            task = asyncio.ensure_future(back(member))
            reconnects.add(task)
            task.add_done_callback(reconnects.discard)

    churner = asyncio.ensure_future(churn())
    sent_seqs: dict[str, int] = {}
    errors: Counter[str] = Counter()
    failed = 0
    dedupe_mismatch = 0
    t0 = time.monotonic()
    interval = 1.0 / rate if rate > 0 else 0.0
    window: set[asyncio.Task] = set()

    async def send_one(i: int) -> None:
        nonlocal failed, dedupe_mismatch
        client = clients[i % len(clients)]
        msg_id = uuid.UUID(int=rng.getrandbits(128)).hex
        try:
            seq = sent_seqs[msg_id] = await _send(client, {"i": i, "t": _now_ms()}, msg_id, errors)
            if rng.random() * 100 < duplicate_pct:
                again = await _send(client, {"i": i, "t": _now_ms()}, msg_id, errors)
                if again != seq:
                    dedupe_mismatch += 1
        except Exception:  # noqa: BLE001 - counted; the message was never stored
            failed += 1

    for i in range(count):
        due = t0 + i * interval
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(send_one(i))
        window.add(task)
        task.add_done_callback(window.discard)
        if len(window) >= 256:
            await asyncio.wait(window, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.gather(*window, return_exceptions=True)
    send_seconds = time.monotonic() - t0
    stop.set()
    churner.cancel()
    await asyncio.gather(*reconnects, return_exceptions=True)
    expected = set(sent_seqs.values())
    last = max(expected, default=base_seq)
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        if all(m.connected.is_set() and m.contiguous >= last for m in group):
            break
        await asyncio.sleep(0.1)
    missing = {m.name: sorted(expected - set(m.seen)) for m in group}
    lost = sum(len(v) for v in missing.values())
    duplicated = sum(sum(c - 1 for s, c in m.seen.items() if s in expected) for m in group)
    delays = [d for m in group for d in m.delays_ms]
    result = {
        "members": members, "senders": len(clients), "sent": len(sent_seqs),
        "send_failed": failed, "send_errors": dict(errors),
        "send_seconds": round(send_seconds, 3),
        "messages_per_s": round(len(sent_seqs) / send_seconds, 1) if send_seconds else None,
        "deliveries_expected": len(expected) * members, "lost": lost, "duplicated": duplicated,
        "lost_examples": {k: v[:10] for k, v in missing.items() if v},
        "dedupe_mismatch": dedupe_mismatch,
        "seq_gaps": _gaps(sorted(expected)),
        "drops": sum(m.drops for m in group), "resumes": sum(m.resumes for m in group),
        "replayed": sum(m.replayed for m in group),
        "still_disconnected": sum(1 for m in group if not m.connected.is_set()),
        "live_delay_ms": {k: (round(v, 3) if v is not None else None)
                          for k, v in percentiles(delays).items()},
    }
    await asyncio.gather(*(m.close() for m in group), *(c.close() for c in clients),
                         return_exceptions=True)
    return result


def _gaps(seqs: list[int]) -> int:
    """How many seqs are missing between the first and last the sender was given."""
    if not seqs:
        return 0
    return (seqs[-1] - seqs[0] + 1) - len(seqs)
