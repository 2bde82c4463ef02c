"""The naive aiortc relay: what a Python developer would try first (a baseline).

Every published track is received by aiortc (jitter buffer, decoder thread) and handed
to ``aiortc.contrib.media.MediaRelay``, which decodes it once; each subscriber gets a
``MediaRelay.subscribe(track)`` proxy on its own ``RTCPeerConnection``, whose sender
re-encodes the frames for that subscriber. It speaks the subset of ``PROTOCOL.md`` the
load clients use (``hello``, ``join``, ``publish``, ``subscribe``, the ``offer`` event,
``answer``, ``leave``, ``ping``) over JSON; tokens are not checked.

Run: ``python -m bench.baselines.naive_relay --port P [--ice-address 127.0.0.1]``.
It prints ``listening PORT`` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from typing import Any

__all__ = ["NaiveRelay", "main"]

logger = logging.getLogger("dockcast.bench.naive_relay")

SUBPROTOCOLS = ["dockcast.v1.json"]


class _Member:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.id = "PA_" + uuid.uuid4().hex[:12]
        self.identity = "anonymous"
        self.room: str | None = None
        self.pub: Any = None
        self.sub: Any = None
        self.sub_lock = asyncio.Lock()

    async def send(self, msg: dict) -> None:
        try:
            await self.ws.send(json.dumps(msg))
        except Exception:  # noqa: BLE001 - the socket is going away
            pass

    async def close(self) -> None:
        for pc in (self.pub, self.sub):
            if pc is not None:
                await pc.close()
        self.pub = self.sub = None


class NaiveRelay:
    def __init__(self) -> None:
        from aiortc.contrib.media import MediaRelay

        self.relay = MediaRelay()
        self.tracks: dict[str, dict[str, Any]] = {}  # room -> track_id -> {"track", "kind", ...}
        self.members: set[_Member] = set()

    @staticmethod
    def _pc() -> Any:
        from aiortc import RTCPeerConnection

        from sfu.ice import rtc_configuration

        return RTCPeerConnection(rtc_configuration())

    async def handle(self, ws: Any) -> None:
        member = _Member(ws)
        self.members.add(member)
        try:
            async for frame in ws:
                try:
                    msg = json.loads(frame)
                    reply = await self.dispatch(member, msg)
                except Exception as exc:  # noqa: BLE001 - answered as an error
                    logger.warning("request failed: %s", exc)
                    reply = {"type": "error", "code": "bad_request", "message": str(exc)}
                if reply is not None:
                    if isinstance(msg, dict) and "id" in msg:
                        reply["id"] = msg["id"]
                    await member.send(reply)
        finally:
            self.members.discard(member)
            await self._leave(member)

    async def dispatch(self, member: _Member, msg: dict) -> dict | None:
        kind = msg.get("type")
        if kind == "hello":
            return {"type": "welcome", "identity": member.identity, "session_id": member.id,
                    "grants": {"publish": True, "subscribe": True}, "node": "naive-relay",
                    "region": "local", "server_version": "baseline"}
        if kind == "ping":
            return {"type": "pong", "ts": 0}
        if kind == "join":
            member.room = msg["room"]
            tracks = self.tracks.setdefault(member.room, {})
            return {"type": "joined", "room": member.room, "participant_id": member.id,
                    "participants": [], "last_seq": 0,
                    "tracks": [{"track_id": t, "kind": v["kind"]} for t, v in tracks.items()]}
        if kind == "leave":
            await self._leave(member)
            return {"type": "left"}
        if kind == "publish":
            return await self._publish(member, msg["sdp"], msg["tracks"])
        if kind == "subscribe":
            asyncio.ensure_future(self._subscribe(member, msg["track_ids"]))
            return {"type": "subscribed", "track_ids": msg["track_ids"]}
        if kind == "answer":
            from aiortc import RTCSessionDescription

            await member.sub.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
            return {"type": "ok"}
        return {"type": "error", "code": "bad_request", "message": f"{kind} is not supported"}

    async def _publish(self, member: _Member, sdp: str, tracks: list[dict]) -> dict:
        from aiortc import RTCSessionDescription

        if member.room is None:
            raise ValueError("join a room first")
        member.pub = pc = self._pc()
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        wanted = {t["mid"]: t for t in tracks}
        published = []
        for transceiver in pc.getTransceivers():
            if transceiver.mid not in wanted:
                continue
            track_id = "TR_" + uuid.uuid4().hex[:12]
            # decode once: one RemoteStreamTrack per published track, relayed to all
            self.tracks[member.room][track_id] = {"track": transceiver.receiver.track,
                                                  "kind": transceiver.kind, "owner": member.id}
            published.append({"track_id": track_id, "mid": transceiver.mid, "kind": transceiver.kind})
        await pc.setLocalDescription(await pc.createAnswer())
        for other in list(self.members):
            if other is not member and other.room == member.room:
                for t in published:
                    await other.send({"type": "track_published", "track": t})
        return {"type": "published", "sdp": pc.localDescription.sdp, "tracks": published}

    async def _subscribe(self, member: _Member, track_ids: list[str]) -> None:
        async with member.sub_lock:
            if member.sub is None:
                member.sub = self._pc()
            for track_id in track_ids:
                source = self.tracks.get(member.room, {}).get(track_id)
                if source is not None:
                    # a re-encode per subscriber: each proxy feeds this pc's own encoder
                    member.sub.addTrack(self.relay.subscribe(source["track"]))
            await member.sub.setLocalDescription(await member.sub.createOffer())
            await member.send({"type": "offer", "pc": "sub", "sdp": member.sub.localDescription.sdp})

    async def _leave(self, member: _Member) -> None:
        if member.room is not None:
            tracks = self.tracks.get(member.room, {})
            for track_id in [t for t, v in tracks.items() if v["owner"] == member.id]:
                del tracks[track_id]
        member.room = None
        await member.close()


async def serve(host: str, port: int, ready: asyncio.Event | None = None) -> None:
    from websockets.asyncio.server import serve as ws_serve

    relay = NaiveRelay()
    async with ws_serve(relay.handle, host, port, subprotocols=SUBPROTOCOLS, max_size=None) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"listening {bound}", flush=True)
        if ready is not None:
            ready.set()
        await asyncio.Future()


def main(argv: list[str] | None = None) -> int:
    import uvloop

    from sfu.ice import use_host_addresses

    parser = argparse.ArgumentParser(prog="naive_relay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ice-address", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    use_host_addresses([args.ice_address])
    try:
        uvloop.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
