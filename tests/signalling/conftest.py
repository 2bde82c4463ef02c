"""Fixtures of the signalling tests: keys, tokens, a real server on a free port, clients.

The ``app`` fixture is a small stand-in for the real application: a join that checks the
token's room, a leave, a send that acknowledges, handlers that fail in each way, and a
publish that waits until the test lets it go (to show a slow handler blocks nothing).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from signalling.membership import RoomRecord
from signalling import (
    DockcastClient,
    Limits,
    NodeInfo,
    NotFound,
    SignallingServer,
    TokenVerifier,
    mint_token,
    require_room,
)

API_KEY = "test-key"
API_SECRET = "test-secret-" + "x" * 40
NODE = NodeInfo("node-test", "test-region", "0.0.test")



@pytest.fixture
def api_key_secret() -> tuple[str, str]:
    return API_KEY, API_SECRET


@pytest.fixture
def node_info() -> NodeInfo:
    return NODE


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier({API_KEY: API_SECRET}, leeway=0)


@pytest.fixture
def mint() -> Callable[..., str]:
    """``mint(identity="alice", room="dock-1", grants=(), **kwargs)``: a valid token."""

    def _mint(identity: str = "alice", room: str | None = "dock-1", grants: Any = (), **kwargs: Any) -> str:
        return mint_token(API_KEY, API_SECRET, identity, room=room, grants=grants, **kwargs)

    return _mint


class CodedError(Exception):
    """Not a SignallingError, yet carries a wire code, like ``sfu.errors.SfuError``."""

    code = "conflict"


@dataclasses.dataclass
class App:
    """What the test app saw and the knobs a test turns."""

    connected: list[Any] = dataclasses.field(default_factory=list)
    disconnected: list[Any] = dataclasses.field(default_factory=list)
    handled: list[tuple[str, Any]] = dataclasses.field(default_factory=list)
    release_publish: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def install(self, server: SignallingServer) -> None:
        self.membership = server.membership
        server.on_connect(self._on_connect)
        server.on_disconnect(self._on_disconnect)
        for msg_type, handler in {
            "join": self.join,
            "leave": self.leave,
            "send": self.send,
            "ack": self.ack,
            "subscribe": self.subscribe,
            "unpublish": self.unpublish,
            "unsubscribe": self.unsubscribe,
            "publish": self.publish,
            "room.create": self.room_create,
            "room.list": self.room_list,
            "answer": self.answer,
        }.items():
            server.route(msg_type, handler)

    async def _on_connect(self, conn: Any) -> None:
        self.connected.append(conn.identity)

    async def _on_disconnect(self, conn: Any) -> None:
        self.disconnected.append(conn.identity)

    async def join(self, conn: Any, request: Any) -> dict:
        require_room(conn, request["room"])
        self.membership.open_room(RoomRecord(request["room"]))
        self.membership.leave(conn)  # this app lets a member join again
        self.membership.join(conn, request["room"], f"p-{conn.identity}", conn.identity)
        self.handled.append(("join", request.id))
        return {
            "type": "joined",
            "room": conn.room,
            "participant_id": conn.participant_id,
            "participants": [],
            "tracks": [],
            "last_seq": 0,
        }

    async def leave(self, conn: Any, request: Any) -> dict:
        self.membership.leave(conn)
        return {"type": "left"}

    async def send(self, conn: Any, request: Any) -> dict:
        self.handled.append(("send", request["msg_id"]))
        conn.send_event({"type": "message", "room": conn.room, "payload": request["payload"]})
        return {"type": "sent", "seq": len(self.handled), "msg_id": request["msg_id"]}

    async def ack(self, conn: Any, request: Any) -> None:
        self.handled.append(("ack", request["seq"]))

    async def subscribe(self, conn: Any, request: Any) -> dict:
        raise NotFound(f"unknown track {request['track_ids'][0]!r}")

    async def unpublish(self, conn: Any, request: Any) -> dict:
        raise RuntimeError("a bug, with details only for the log")

    async def unsubscribe(self, conn: Any, request: Any) -> dict:
        raise CodedError("shipment bound to another open room")

    async def publish(self, conn: Any, request: Any) -> dict:
        await self.release_publish.wait()
        return {"type": "published", "sdp": "answer", "tracks": []}

    async def room_create(self, conn: Any, request: Any) -> dict:
        return {"type": "room", "room": request["room"], "shipment_id": request.get("shipment_id")}

    async def room_list(self, conn: Any, request: Any) -> dict:
        return {"type": "rooms", "rooms": []}

    async def answer(self, conn: Any, request: Any) -> None:
        return None  # a bug: answer must reply ok


ServerFactory = Callable[..., Awaitable[tuple[SignallingServer, str]]]


@pytest.fixture
async def make_server(verifier: TokenVerifier) -> AsyncIterator[ServerFactory]:
    """``server, url = await make_server(limits=Limits(), app=None)``: a started server on
    a free port of 127.0.0.1 (``url`` is its ``/ws`` endpoint); closed at teardown."""
    servers: list[SignallingServer] = []

    async def _make(limits: Limits = Limits(), app: App | None = None, **kwargs: Any):
        server = SignallingServer(verifier, NODE, limits, **kwargs)
        if app is not None:
            app.install(server)
        port = await server.start("127.0.0.1", 0)
        servers.append(server)
        return server, f"ws://127.0.0.1:{port}/ws"

    yield _make
    for server in servers:
        await server.close()


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
async def served(make_server: ServerFactory, app: App) -> tuple[SignallingServer, str]:
    """The test app on a server with default limits."""
    return await make_server(app=app)


@pytest.fixture
async def connect(mint: Callable[..., str]) -> AsyncIterator[Callable[..., Awaitable[DockcastClient]]]:
    """``client = await connect(url, identity=..., room=..., grants=..., subprotocol=...)``;
    closed at teardown."""
    clients: list[DockcastClient] = []

    async def _connect(
        url: str,
        identity: str = "alice",
        room: str | None = "dock-1",
        grants: Any = (),
        subprotocol: str | None = "json",
        token: str | None = None,
        **kwargs: Any,
    ) -> DockcastClient:
        if token is None:
            token = mint(identity, room, grants)
        client = await DockcastClient.connect(url, token, subprotocol=subprotocol, **kwargs)
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        await client.close()


def soon(seconds: float) -> float:
    """A Unix time ``seconds`` from now."""
    return time.time() + seconds
