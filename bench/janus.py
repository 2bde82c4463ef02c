"""Janus's VideoRoom as a baseline, measured only when the ``janus`` binary is installed.

Janus never offers loopback candidates, so :class:`JanusSystem` runs it inside a network
namespace it creates (``ip netns``, needs root) joined to the host by a veth pair with a
private /30 that exists only between the two ends (``10.233.K.1`` on the host side,
``10.233.K.2`` in the namespace); nothing is routed anywhere else, and the namespace
(with its veth) is deleted when the run ends. The harness writes Janus's configuration
(VideoRoom and the websockets transport only, no STUN, no other plugins), and the load
clients gather their ICE candidates on the host end of the pair.

:class:`JanusSignal` is the load clients' adapter for Janus's websocket API
(``janus-protocol``): a session and a handle per client; a publisher ``join``\\s as
``publisher`` and ``publish``\\es its offer; a subscriber ``join``\\s as ``subscriber``
to the publisher's feed, answers Janus's offer and sends ``start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import pathlib
import shutil
import subprocess
import uuid
import zlib
from typing import Any

from .harness import Run, System

__all__ = ["JanusSystem", "JanusSignal", "janus_config", "room_number"]

logger = logging.getLogger("dockcast.bench.janus")

LIB = pathlib.Path("/usr/lib/x86_64-linux-gnu/janus")
WS_PORT = 8188
NETNS_PREFIX = "dcb-janus-"  # followed by the harness's pid
KEEP_PLUGIN = "libjanus_videoroom.so"
KEEP_TRANSPORT = "libjanus_websockets.so"


def room_number(name: str) -> int:
    """Janus rooms are numbers: a stable one per room name."""
    return zlib.crc32(name.encode()) & 0x3FFFFFFF or 1


def _others(folder: pathlib.Path, keep: str) -> str:
    if not folder.is_dir():
        return ""
    return ",".join(sorted(p.name for p in folder.glob("*.so") if p.name != keep))


def janus_config(folder: pathlib.Path, interface: str, ws_ip: str, lib: pathlib.Path = LIB) -> None:
    """Write ``janus.jcfg`` and the VideoRoom and websockets configs into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "janus.jcfg").write_text(f"""general: {{
	configs_folder = "{folder}"
	plugins_folder = "{lib / 'plugins'}"
	transports_folder = "{lib / 'transports'}"
	events_folder = "{lib / 'events'}"
	loggers_folder = "{lib / 'loggers'}"
	debug_level = 3
	session_timeout = 0
	server_name = "dockcast-bench"
}}
certificates: {{
}}
media: {{
	ipv6 = false
	rtp_port_range = "20000-40000"
}}
nat: {{
	ice_lite = false
	ice_tcp = false
	full_trickle = false
	ice_enforce_list = "{interface}"
	ignore_mdns = true
}}
plugins: {{
	disable = "{_others(lib / 'plugins', KEEP_PLUGIN)}"
}}
transports: {{
	disable = "{_others(lib / 'transports', KEEP_TRANSPORT)}"
}}
events: {{
	broadcast = false
}}
loggers: {{
	disable = "{_others(lib / 'loggers', '')}"
}}
""")
    (folder / "janus.transport.websockets.jcfg").write_text(f"""general: {{
	json = "compact"
	ws = true
	ws_port = {WS_PORT}
	ws_ip = "{ws_ip}"
	wss = false
}}
admin: {{
	admin_ws = false
	admin_wss = false
}}
""")
    (folder / "janus.plugin.videoroom.jcfg").write_text("""general: {
}
""")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


class JanusSystem(System):
    """Janus in a network namespace of its own (see the module docstring)."""

    name = "janus"
    label = "Janus VideoRoom"
    signal = "janus"

    def __init__(self) -> None:
        super().__init__()
        self.binary = shutil.which("janus")
        self.netns: str | None = None
        if self.binary is None:
            self.skipped = "janus not installed (apt-get install janus)"
        elif os.geteuid() != 0 or shutil.which("ip") is None:
            self.skipped = "janus needs root and iproute2 here (it runs in a network namespace)"

    @staticmethod
    def _remove_stale_namespaces() -> None:
        """Delete namespaces left by harnesses that were killed (their pid is gone)."""
        try:
            listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                     timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return
        for line in listing.splitlines():
            name = line.split()[0] if line.split() else ""
            owner = name.removeprefix(NETNS_PREFIX)
            if name.startswith(NETNS_PREFIX) and owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
                with contextlib.suppress(subprocess.CalledProcessError, OSError):
                    _ip("netns", "del", name)

    async def start(self, run: Run) -> None:
        self._remove_stale_namespaces()
        pid = os.getpid()
        k = 1 + pid % 250
        tag = f"{pid % 100000}"
        netns, host_if, ns_if = f"{NETNS_PREFIX}{pid}", f"dcbj{tag}h", f"dcbj{tag}n"
        host_ip, ns_ip = f"10.233.{k}.1", f"10.233.{k}.2"
        try:
            _ip("netns", "add", netns)
            self.netns = netns
            _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            _ip("link", "set", ns_if, "netns", netns)
            _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
            _ip("link", "set", host_if, "up")
            _ip("netns", "exec", netns, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if)
            _ip("netns", "exec", netns, "ip", "link", "set", ns_if, "up")
            _ip("netns", "exec", netns, "ip", "link", "set", "lo", "up")
        except (subprocess.CalledProcessError, OSError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            await self.stop()
            self.skipped = f"could not make a network namespace for janus: {detail.strip()}"
            return
        conf = run.out / "janus-conf"
        janus_config(conf, ns_if, ns_ip)
        self.url = f"ws://{ns_ip}:{WS_PORT}/"
        self.ice_address = host_ip
        try:
            # `ip netns exec` execs janus: its pid is janus's
            await self._launch(["ip", "netns", "exec", netns, self.binary, "-C",
                                str(conf / "janus.jcfg"), "-F", str(conf), "--disable-colors",
                                "--interface", ns_ip],
                               run.logs / "janus.log", ns_ip, WS_PORT)
        except Exception:
            await self.stop()
            raise

    async def stop(self) -> None:
        await super().stop()
        if self.netns is not None:
            with contextlib.suppress(subprocess.CalledProcessError, OSError):
                _ip("netns", "del", self.netns)  # takes its veth pair with it
            self.netns = None


class JanusError(RuntimeError):
    pass


class JanusSignal:
    """A load client's session with Janus (same methods as ``DockcastSignal``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: Any = None
        self.session: int | None = None
        self.handle: int | None = None
        self.room: int | None = None
        self.feed: int | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future] = {}
        self._events: asyncio.Queue = asyncio.Queue()
        self._reader: asyncio.Task | None = None
        self._trickle: Any = None

    async def _send(self, msg: dict, wait: bool = True, timeout: float = 30.0) -> dict:
        transaction = f"t{next(self._ids)}"
        msg = {**msg, "transaction": transaction}
        if self.session is not None:
            msg.setdefault("session_id", self.session)
        if self.handle is not None and msg.get("janus") in ("message", "trickle"):
            msg.setdefault("handle_id", self.handle)
        future = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future
        try:
            await self.ws.send(json.dumps(msg))
            if not wait:
                return {}
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(transaction, None)
        if reply.get("janus") == "error":
            raise JanusError(str(reply.get("error")))
        data = (reply.get("plugindata") or {}).get("data") or {}
        if data.get("error"):
            raise JanusError(f"{data.get('error_code')}: {data['error']}")
        return reply

    async def _read(self) -> None:
        async for frame in self.ws:
            msg = json.loads(frame)
            kind = msg.get("janus")
            if kind == "ack":
                continue  # the event with the same transaction follows
            future = self._pending.get(msg.get("transaction", ""))
            if future is not None and not future.done():
                future.set_result(msg)
            elif kind == "trickle" and self._trickle is not None:
                candidate = msg.get("candidate") or {}
                if candidate.get("candidate"):
                    asyncio.ensure_future(self._trickle(candidate))
            else:
                self._events.put_nowait(msg)

    async def connect(self, identity: str, room: str) -> None:
        from websockets.asyncio.client import connect as ws_connect

        self.ws = await ws_connect(self.url, subprotocols=["janus-protocol"], max_size=None,
                                   open_timeout=30)
        self._reader = asyncio.ensure_future(self._read())
        self.session = (await self._send({"janus": "create"}))["data"]["id"]
        attached = await self._send({"janus": "attach", "plugin": "janus.plugin.videoroom",
                                     "opaque_id": identity})
        self.handle = attached["data"]["id"]

    async def _message(self, body: dict, jsep: dict | None = None) -> dict:
        msg: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        return await self._send(msg)

    async def join(self, room: str) -> dict:
        self.room = room_number(room)
        return {"room": room}

    async def _ensure_room(self) -> None:
        exists = await self._message({"request": "exists", "room": self.room})
        if exists["plugindata"]["data"].get("exists"):
            return
        with contextlib.suppress(JanusError):  # another publisher may have made it first
            await self._message({"request": "create", "room": self.room, "publishers": 16,
                                 "bitrate": 0, "fir_freq": 0, "audiocodec": "opus",
                                 "videocodec": "vp8", "notify_joining": False,
                                 "description": "dockcast bench"})

    async def publish(self, sdp: str, tracks: list[dict]) -> tuple[str, list[dict]]:
        await self._ensure_room()
        joined = await self._message({"request": "join", "ptype": "publisher", "room": self.room,
                                      "display": f"bench-{uuid.uuid4().hex[:6]}"})
        self.feed = joined["plugindata"]["data"]["id"]
        reply = await self._message({"request": "publish", "audio": True, "video": True},
                                    {"type": "offer", "sdp": sdp, "trickle": False})
        answer = (reply.get("jsep") or {}).get("sdp")
        if not answer:
            raise JanusError(f"no answer to the publish offer: {reply}")
        return answer, [{"track_id": str(self.feed), "mid": t["mid"], "kind": t["kind"]}
                        for t in tracks]

    async def subscribe(self, tracks: list[dict], on_offer: Any) -> None:
        feed = int(tracks[0]["track_id"])
        reply = await self._message({"request": "join", "ptype": "subscriber", "room": self.room,
                                     "streams": [{"feed": feed}]})
        offer = (reply.get("jsep") or {}).get("sdp")
        if not offer:
            raise JanusError(f"no offer for the subscription: {reply}")
        answer = await on_offer(offer)
        await self._message({"request": "start"}, {"type": "answer", "sdp": answer, "trickle": False})

    def on_trickle(self, handler: Any) -> None:
        """``await handler({"candidate", "sdpMid", "sdpMLineIndex"})`` per trickled candidate."""
        self._trickle = handler

    async def close(self) -> None:
        if self.ws is None:
            return
        with contextlib.suppress(Exception):
            if self.session is not None:
                await self._send({"janus": "destroy"}, timeout=5)
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
