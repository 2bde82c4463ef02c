"""The messages load's accounting, against small fake servers of PROTOCOL.md's messages.

The real node's support for ``send``/``ack``/``hello.resume`` is exercised by the
scenario smoke test; these servers prove that the checker counts what it must: nothing
lost against a correct server, losses against one that forgets to replay, and a clear
``Unsupported`` against one without ``send``.
"""

from __future__ import annotations

import json
import uuid

import pytest
from websockets.asyncio.server import serve

from bench.messages import Unsupported, run_messages


class FakeMessageServer:
    def __init__(self, *, replay: bool = True, messages: bool = True) -> None:
        self.replay = replay
        self.messages = messages
        self.log: list[dict] = []
        self.by_msg_id: dict[str, int] = {}
        self.members: set = set()
        self.cursors: dict[str, int] = {}

    async def handle(self, ws) -> None:
        state = {"resume": None, "joined": False}
        self.members.add((ws, id(state)))
        try:
            async for frame in ws:
                msg = json.loads(frame)
                reply = await self.dispatch(ws, state, msg)
                if reply is None:
                    continue
                reply["id"] = msg.get("id")
                if msg["type"] != "join":
                    await ws.send(json.dumps(reply))
                    continue
                # the backlog, then live, through one counter per member (`_catch_up`):
                # a send's fan-out that began while the backlog went out sent an event
                # the backlog had sent too (a duplicate, seen in CI)
                state["sent"] = state["resume"]["last_seq"] if state["resume"] and self.replay else reply["last_seq"]
                await ws.send(json.dumps(reply))
                await self._catch_up(ws, state)
                state["joined"] = True
        finally:
            self.members.discard((ws, id(state)))

    async def _catch_up(self, ws, state) -> None:
        """Send the member every event after the last one it was sent, in order; the
        counter moves before each await, so concurrent callers never send one twice."""
        while state["sent"] < len(self.log):
            state["sent"] += 1
            await ws.send(json.dumps(self.log[state["sent"] - 1]))

    async def dispatch(self, ws, state, msg):
        kind = msg["type"]
        if kind == "hello":
            state["resume"] = msg.get("resume")
            session = (msg.get("resume") or {}).get("session_id") or uuid.uuid4().hex
            state["ws"] = ws
            ws.dockcast_state = state
            return {"type": "welcome", "session_id": session, "identity": "x", "grants": {}}
        if kind == "join":
            return {"type": "joined", "room": msg["room"], "participant_id": "p",
                    "participants": [], "tracks": [], "last_seq": len(self.log)}
        if kind == "send" and self.messages:
            if msg["msg_id"] in self.by_msg_id:
                return {"type": "sent", "seq": self.by_msg_id[msg["msg_id"]], "msg_id": msg["msg_id"]}
            seq = len(self.log) + 1
            event = {"type": "message", "room": "r", "seq": seq, "msg_id": msg["msg_id"],
                     "from": "sender", "topic": msg["topic"], "payload": msg["payload"], "ts": 0}
            self.log.append(event)
            self.by_msg_id[msg["msg_id"]] = seq
            for other, _ in list(self.members):
                member = getattr(other, "dockcast_state", {})
                if member.get("joined"):
                    try:
                        await self._catch_up(other, member)
                    except Exception:
                        pass
            return {"type": "sent", "seq": seq, "msg_id": msg["msg_id"]}
        if kind == "ack":
            return None
        return {"type": "error", "code": "bad_request", "message": f"{kind} is not supported by this server"}


async def _run(server: FakeMessageServer, **options):
    async with serve(server.handle, "127.0.0.1", 0, subprotocols=["dockcast.v1.json"]) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        return await run_messages(f"ws://127.0.0.1:{port}/ws", "key", "secret-" * 5, **options)


OPTIONS = dict(members=4, count=300, rate=1000, drop_every=0.05, down_time=0.05, settle=1.5)


async def test_nothing_lost_or_duplicated_against_a_correct_server():
    result = await _run(FakeMessageServer(), **OPTIONS)
    assert result["sent"] == 300 and result["send_failed"] == 0
    assert result["drops"] > 0 and result["resumes"] > 0
    assert result["lost"] == 0 and result["duplicated"] == 0
    assert result["dedupe_mismatch"] == 0 and result["seq_gaps"] == 0
    assert result["live_delay_ms"]["p50"] is not None


async def test_losses_are_counted_when_the_server_does_not_replay():
    result = await _run(FakeMessageServer(replay=False), **OPTIONS)
    assert result["drops"] > 0
    assert result["lost"] > 0


async def test_a_server_without_messages_is_unsupported():
    with pytest.raises(Unsupported, match="does not support messages"):
        await _run(FakeMessageServer(messages=False), **OPTIONS)
