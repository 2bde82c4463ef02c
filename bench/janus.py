"""Janus's VideoRoom as a baseline, measured only when the ``janus`` binary is installed.

Janus gets the network path Dockcast and mediasoup get: loopback. It never gathers a
host candidate on an interface flagged ``IFF_LOOPBACK``, so :class:`JanusSystem` builds
``bench/shim/getifaddrs_noloop.c`` (an ``LD_PRELOAD`` shim that clears that flag on
``lo``) with the machine's ``cc`` into the run's folder (:func:`build_noloop_shim`),
starts Janus with it and ``ice_enforce_list = "lo"``, and Janus offers 127.0.0.1 host
candidates like the others; its websocket listens on a free loopback port.

With ``netns=True`` (``dockcast bench --janus-netns``: the old way, kept to compare)
Janus runs instead inside a network namespace the harness creates (``ip netns``, needs
root) joined to the host by a veth pair with a private /30 (``10.233.K.1`` on the host
side, ``10.233.K.2`` in the namespace); nothing is routed anywhere else, the load clients
gather their candidates on the host end, and the namespace (with its veth) is deleted
when the run ends. That path crosses a veth pair and two network stacks where the
others cross loopback once: it costs Janus more per packet than loopback does.

Either way the harness writes Janus's configuration (VideoRoom and the websockets
transport only, no STUN, no other plugins).

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

from .harness import Run, System, free_port

__all__ = ["SHIM_SOURCE", "JanusSignal", "JanusSystem", "ShimError", "build_noloop_shim",
           "janus_config", "room_number"]

logger = logging.getLogger("dockcast.bench.janus")

LIB = pathlib.Path("/usr/lib/x86_64-linux-gnu/janus")
WS_PORT = 8188  # inside the namespace (it has ports of its own)
SHIM_SOURCE = pathlib.Path(__file__).resolve().parent / "shim" / "getifaddrs_noloop.c"
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


class ShimError(RuntimeError):
    """The getifaddrs shim could not be built (no compiler, or it failed: the message
    has the compiler's output)."""


def build_noloop_shim(folder: pathlib.Path, cc: str | None = None,
                      source: pathlib.Path = SHIM_SOURCE) -> pathlib.Path:
    """Compile :data:`SHIM_SOURCE` into ``folder/getifaddrs_noloop.so`` and return its path.

    ``cc``: the compiler (default: ``$CC``, else ``cc`` on the PATH). Raises
    :class:`ShimError` naming the compiler and its output when it cannot be built.
    """
    compiler = cc or os.environ.get("CC") or shutil.which("cc")
    if not compiler:
        raise ShimError("no C compiler (cc) to build the getifaddrs shim: apt-get install gcc")
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "getifaddrs_noloop.so"
    try:
        done = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(source), "-ldl"],
                              capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ShimError(f"{compiler} could not build {source.name}: {exc}") from exc
    if done.returncode != 0 or not out.exists():
        raise ShimError(f"{compiler} could not build {source.name} (exit {done.returncode}): "
                        f"{(done.stderr or done.stdout).strip()[-1500:]}")
    return out


def janus_config(folder: pathlib.Path, interface: str, ws_ip: str, lib: pathlib.Path = LIB,
                 ws_port: int = WS_PORT) -> None:
    """Write ``janus.jcfg`` and the VideoRoom and websockets configs into ``folder``:
    ICE only on ``interface`` (``lo`` on loopback), the websocket on ``ws_ip:ws_port``."""
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
	ws_port = {ws_port}
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
    """Janus on loopback with the getifaddrs shim, or (``netns``) in a network namespace
    of its own (see the module docstring)."""

    name = "janus"
    label = "Janus VideoRoom"
    signal = "janus"
    python = False

    def __init__(self, netns: bool = False) -> None:
        super().__init__()
        self.binary = shutil.which("janus")
        self.use_netns = netns
        self.netns: str | None = None
        self.how = ("in a network namespace behind a veth pair (--janus-netns); the load clients "
                    "on the host end" if netns else
                    "on loopback (127.0.0.1), its loopback flag hidden by an LD_PRELOAD getifaddrs "
                    "shim so that it gathers 127.0.0.1")
        if self.binary is None:
            self.skipped = "janus not installed (apt-get install janus)"
        elif netns and (os.geteuid() != 0 or shutil.which("ip") is None):
            self.skipped = "janus --janus-netns needs root and iproute2 (it runs in a network namespace)"

    async def start(self, run: Run) -> None:
        if self.use_netns:
            await self._start_netns(run)
            return
        try:
            shim = build_noloop_shim(run.out / "janus-shim")
        except ShimError as exc:
            self.skipped = f"{exc} (or run it with --janus-netns)"
            return
        conf = run.out / "janus-conf"
        port = free_port()
        janus_config(conf, "lo", "127.0.0.1", ws_port=port)
        self.url = f"ws://127.0.0.1:{port}/"
        preload = " ".join(x for x in (str(shim), os.environ.get("LD_PRELOAD", "")) if x)
        await self._launch([self.binary, "-C", str(conf / "janus.jcfg"), "-F", str(conf),
                            "--disable-colors", "--interface", "127.0.0.1"],
                           run.logs / "janus.log", "127.0.0.1", port,
                           env=dict(os.environ, LD_PRELOAD=preload))

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

    async def _start_netns(self, run: Run) -> None:
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
