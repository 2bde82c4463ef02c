"""Load clients: publishers and subscribers that do ICE, DTLS and SRTP but no codec work.

Both are built on the SFU's own :class:`~sfu.transport.WebRtcTransport` (aiortc for ICE,
DTLS and SDP; packets protected and sent, or received and decrypted, synchronously):

- :class:`Publisher` offers sendonly VP8 and Opus m-lines (tracks that never yield, so
  aiortc's encoders never run), publishes, then writes the corpus packets with its own
  SSRCs and the negotiated payload types at the corpus pace, each payload followed by a
  send-time stamp (:mod:`bench.stats`). A PLI or FIR makes it jump to the next keyframe
  of the corpus, as an encoder asked for one would.
- :class:`Subscriber` joins, subscribes, answers the server's offers, and counts,
  sequence-checks and timestamps every packet in the transport's receive hook.

A worker process (``python -m bench.loadclient CONFIG_JSON``) runs many of them on one
uvloop and takes commands as JSON lines on stdin, answering each with one JSON line on
stdout; the harness (:mod:`bench.harness`) drives several such workers so that the
server's CPU is measured alone. The signalling each system speaks is an adapter:
:class:`DockcastSignal` (Dockcast and the naive relay) or :class:`bench.janus.JanusSignal`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sfu import transport as sfu_transport
from sfu.extensions import EXT_ABS_SEND_TIME, EXT_AUDIO_LEVEL, EXT_MID
from sfu.rtcp import Fir, Pli, parse_rtcp
from sfu.rtp import RtpPacket, abs_send_time, parse_header
from sfu.vp8 import vp8_is_keyframe

from .corpus import Corpus, CorpusPacket
from .messages import close_quietly
from .stats import OUTAGE_S, Reservoir, StreamStats, merge_counts, read_stamp, stamp
from .wan import TcpDelayProxy, UdpRelay, WanProfile, rewrite_candidates, sdp_candidate_address

__all__ = ["Publisher", "Subscriber", "DockcastSignal", "Worker", "main"]

logger = logging.getLogger("dockcast.bench.loadclient")

VIDEO_TS_JITTER = 300  # ticks of 90 kHz: lets frame matching find the one alignment

OfferHandler = Callable[[str], Awaitable[str]]


def _ns() -> int:
    return time.monotonic_ns()




# -- signalling adapters ---------------------------------------------------------------


class DockcastSignal:
    """``PROTOCOL.md`` through :class:`signalling.client.DockcastClient` (also the naive
    relay, which speaks the subset used here)."""

    def __init__(self, url: str, api_key: str, api_secret: str) -> None:
        self.url = url
        self.api_key = api_key
        self.api_secret = api_secret
        self.client: Any = None
        self.overloaded = 0

    async def connect(self, identity: str, room: str) -> None:
        from signalling.client import DockcastClient
        from signalling.tokens import mint_token

        token = mint_token(self.api_key, self.api_secret, identity, room=room,
                           grants=("publish", "subscribe", "message"), ttl=6 * 3600)
        self.client = await DockcastClient.connect(self.url, token, timeout=30.0)

    async def join(self, room: str, **options: Any) -> dict:
        """``join``, asked again 0.5-1 s later while the node refuses it as overloaded
        (``max_loop_lag_ms``), as a client should; ``overloaded`` counts the refusals."""
        from signalling.client import ServerError

        while True:
            try:
                return await self.client.join(room, **options)
            except ServerError as exc:
                if exc.code != "unavailable" or "overloaded" not in str(exc):
                    raise
                self.overloaded += 1
                await asyncio.sleep(0.5 + 0.5 * random.random())

    async def publish(self, sdp: str, tracks: list[dict]) -> tuple[str, list[dict]]:
        reply = await self.client.publish(sdp, tracks)
        return reply["sdp"], reply["tracks"]

    async def subscribe(self, tracks: list[dict], on_offer: OfferHandler) -> None:
        """Subscribe; every ``offer`` event is answered with ``await on_offer(sdp)``."""
        self._answer_offers(on_offer)
        await self.client.subscribe([t["track_id"] for t in tracks])

    async def join_subscribing(self, room: str, tracks: list[dict], on_offer: OfferHandler) -> None:
        """``join {subscribe: true}``: joined and subscribed in one request (the tracks
        the room has; any of ``tracks`` it did not list yet is subscribed after)."""
        self._answer_offers(on_offer)
        joined = await self.join(room, subscribe=True)
        rest = [t["track_id"] for t in tracks if t["track_id"] not in joined.get("subscribed", ())]
        if rest:
            await self.client.subscribe(rest)

    def _answer_offers(self, on_offer: OfferHandler) -> None:
        async def answer(event: dict) -> None:
            try:
                await self.client.answer(await on_offer(event["sdp"]))
            except Exception as exc:  # noqa: BLE001 - reported by the subscriber's state
                logger.warning("answering an offer failed: %s", exc)

        self.client.on("offer", answer)

    async def close(self) -> None:
        await close_quietly(self.client)


def make_signal(config: dict, url: str) -> Any:
    system = config.get("system", "dockcast")
    if system == "janus":
        from .janus import JanusSignal

        return JanusSignal(url)
    return DockcastSignal(url, config["api_key"], config["api_secret"])


# -- media helpers ---------------------------------------------------------------------


class _Wan:
    """Per-worker WAN emulation: a relay per peer connection, a proxy for signalling."""

    def __init__(self, profile: WanProfile | None, host: str) -> None:
        self.profile = profile
        self.host = host
        self.relays: list[UdpRelay] = []

    async def relay(self) -> UdpRelay | None:
        if self.profile is None:
            return None
        relay = await UdpRelay(self.profile, host=self.host).start()
        self.relays.append(relay)
        return relay

    def outgoing(self, relay: UdpRelay | None, sdp: str) -> str:
        """Our SDP on its way to the server: the server sees the relay as us."""
        return sdp if relay is None else rewrite_candidates(sdp, relay.host, relay.server_port)

    def incoming(self, relay: UdpRelay | None, sdp: str) -> str:
        """The server's SDP on its way to us: we see the relay as the server."""
        if relay is None:
            return sdp
        addr = sdp_candidate_address(sdp)
        if addr is not None:
            relay.set_server(addr)
        return rewrite_candidates(sdp, relay.host, relay.client_port)


def _transport(role: str, name: str) -> Any:
    from sfu.ice import rtc_configuration
    from sfu.transport import WebRtcTransport

    return WebRtcTransport(role, configuration=rtc_configuration(), name=name)


def _wire_trickle(signal: Any, transport: Any) -> None:
    """Feed candidates a server trickles (Janus does) to the transport."""
    if not hasattr(signal, "on_trickle"):
        return

    async def add(candidate: dict) -> None:
        try:
            await transport.add_ice_candidate(candidate["candidate"], candidate.get("sdpMid"),
                                              candidate.get("sdpMLineIndex"))
        except Exception as exc:  # noqa: BLE001 - a candidate we cannot use
            logger.debug("trickled candidate refused: %s", exc)

    signal.on_trickle(add)


def _idle_track(kind: str) -> Any:
    from sfu.transport import IdleTrack

    return IdleTrack(kind)


class _OutStream:
    """One outgoing RTP stream of a publisher: header state and extension block."""

    def __init__(self, kind: str, transceiver: Any, rng: random.Random) -> None:
        self.kind = kind
        self.ssrc = sfu_transport.sender_ssrc(transceiver.sender)
        codecs = [c for c in sfu_transport.negotiated_codecs(transceiver)
                  if not c.mimeType.lower().endswith("/rtx")]
        self.payload_type = codecs[0].payloadType
        self.seq = rng.getrandbits(16)
        self.ts_base = rng.getrandbits(32)
        ids = sfu_transport.header_extension_ids(transceiver)
        self.mid = (transceiver.mid or "").encode()
        self.mid_id = ids.get(EXT_MID, 0)
        self.ast_id = ids.get(EXT_ABS_SEND_TIME, 0) if kind == "video" else 0
        self.level_id = ids.get(EXT_AUDIO_LEVEL, 0) if kind == "audio" else 0
        self.packets = 0

    def _extensions(self) -> list[tuple[int, bytes]]:
        elements = []
        if self.mid_id and self.mid:
            elements.append((self.mid_id, self.mid))
        if self.ast_id:
            elements.append((self.ast_id, abs_send_time(time.time()).to_bytes(3, "big")))
        if self.level_id:
            elements.append((self.level_id, bytes([0x80 | 30])))  # voice, -30 dBov
        return elements

    def packet(self, payload: bytes, marker: bool, timestamp: int) -> bytes:
        data = RtpPacket(payload_type=self.payload_type, marker=int(marker),
                         sequence_number=self.seq, timestamp=(self.ts_base + timestamp) & 0xFFFFFFFF,
                         ssrc=self.ssrc, extensions=self._extensions(), payload=payload).serialize()
        self.seq = (self.seq + 1) & 0xFFFF
        self.packets += 1
        return data


def _keyframe_requests(data: bytes) -> list[int]:
    """Media SSRCs of the PLIs and FIRs in a compound RTCP packet (none if it is malformed)."""
    try:
        packets = parse_rtcp(data)
    except ValueError:
        return []
    out = []
    for packet in packets:
        if isinstance(packet, Pli):
            out.append(packet.media_ssrc)
        elif isinstance(packet, Fir):
            out.extend(ssrc for ssrc, _ in packet.entries)
    return out


async def _close_legs(transport: Any, signal: Any, relay: UdpRelay | None) -> None:
    """Close a client's peer connection, its signalling and its WAN relay."""
    if transport is not None:
        await transport.close()
    await signal.close()
    if relay is not None:
        relay.close()


# -- publisher -------------------------------------------------------------------------


class Publisher:
    """Publishes VP8 (and Opus) from the corpus at its real pace."""

    def __init__(self, signal: Any, corpus: Corpus, wan: _Wan, *, name: str,
                 kinds: tuple[str, ...] = ("video", "audio"), stamp_payloads: bool = True,
                 seed: int | None = None) -> None:
        self.signal = signal
        self.corpus = corpus
        self.wan = wan
        self.name = name
        self.kinds = kinds
        self.stamp_payloads = stamp_payloads
        self.rng = random.Random(seed)
        self.transport: Any = None
        self.relay: UdpRelay | None = None
        self.streams: dict[str, _OutStream] = {}
        self.tracks: list[dict] = []
        self.keyframe_requests = 0
        self.sent = 0
        self.send_failures = 0
        self.frame_log: dict[int, int] = {}  # video RTP timestamp -> send ns (for matching)
        self._want_keyframe = False
        self._tasks: list[asyncio.Task] = []
        self._index = 0

    async def start(self, room: str) -> list[dict]:
        await self.signal.connect(self.name, room)
        await self.signal.join(room)
        self.transport = _transport("pub", self.name)
        _wire_trickle(self.signal, self.transport)
        transceivers = {kind: self.transport.pc.addTransceiver(_idle_track(kind), direction="sendonly")
                        for kind in self.kinds}
        self.relay = await self.wan.relay()
        offer = await self.transport.create_offer()
        tracks = [{"mid": t.mid, "kind": kind, "source": "camera" if kind == "video" else "microphone"}
                  for kind, t in transceivers.items()]
        answer, published = await self.signal.publish(self.wan.outgoing(self.relay, offer), tracks)
        await self.transport.accept_answer(self.wan.incoming(self.relay, answer))
        self.transport.on_rtcp = self._on_rtcp
        await asyncio.wait_for(self.transport.connected.wait(), 30)
        for kind, transceiver in transceivers.items():
            self.streams[kind] = _OutStream(kind, transceiver, self.rng)
        self.tracks = published
        for kind in self.kinds:
            self._tasks.append(asyncio.ensure_future(self._run(kind)))
        return published

    def _on_rtcp(self, data: bytes) -> None:
        video = self.streams.get("video")
        if video is not None and video.ssrc in _keyframe_requests(data):
            self.keyframe_requests += 1
            self._want_keyframe = True

    async def _run(self, kind: str) -> None:
        loop = asyncio.get_running_loop()
        frames = self.corpus.frames(kind)
        keyframes = [i for i, f in enumerate(frames) if f[0].keyframe]
        interval = 1.0 / self.corpus.params.fps if kind == "video" else 0.02
        ticks = 90000 // self.corpus.params.fps if kind == "video" else 960
        stream = self.streams[kind]
        start = loop.time()
        position = 0
        n = 0
        while True:
            due = start + n * interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if kind == "video" and self._want_keyframe and keyframes:
                self._want_keyframe = False
                position = next((k for k in keyframes if k >= position), keyframes[0])
            timestamp = n * ticks
            if kind == "video":
                timestamp += self.rng.randint(-VIDEO_TS_JITTER, VIDEO_TS_JITTER) if n else 0
            self._send_frame(stream, frames[position], timestamp)
            position = (position + 1) % len(frames)
            n += 1

    def _send_frame(self, stream: _OutStream, frame: list[CorpusPacket], timestamp: int) -> None:
        send = self.transport.send_rtp
        if stream.kind == "video":
            self.frame_log[(stream.ts_base + timestamp) & 0xFFFFFFFF] = _ns()
            if len(self.frame_log) > 20000:
                for key in list(self.frame_log)[:10000]:
                    del self.frame_log[key]
        for packet in frame:
            payload = packet.payload
            if self.stamp_payloads:
                self._index += 1
                payload = stamp(payload, self._index, _ns())
            if send(stream.packet(payload, packet.marker, timestamp)):
                self.sent += 1
            else:
                self.send_failures += 1

    def mark(self) -> None:
        # the frame log is kept: frames sent just before the mark arrive inside the window
        self._marked = (self.sent, self.send_failures, self.keyframe_requests)

    def report(self) -> dict:
        sent, failures, requests = getattr(self, "_marked", (0, 0, 0))
        return {"name": self.name, "sent": self.sent - sent,
                "send_failures": self.send_failures - failures,
                "keyframe_requests": self.keyframe_requests - requests,
                "tracks": [t["track_id"] for t in self.tracks]}

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await _close_legs(self.transport, self.signal, self.relay)


# -- subscriber ------------------------------------------------------------------------


class Subscriber:
    """Joins, subscribes to ``tracks`` and counts what arrives."""

    def __init__(self, signal: Any, wan: _Wan, *, name: str, latency: Reservoir,
                 keep_frames: bool = False, nack: bool = True, join_subscribes: bool = False,
                 native: bool = False) -> None:
        self.signal = signal
        self.native = native and not keep_frames
        self.receiver: Any = None  # a bench.receive.Receiver once reading natively
        self.join_subscribes = join_subscribes
        self.nack = nack
        self.nacked = 0  # sequence numbers asked for again
        self.recovered = 0  # of those (or reordered ones), arrived late
        self.wan = wan
        self.name = name
        self.latency = latency
        self.keep_frames = keep_frames
        self.transport: Any = None
        self.relay: UdpRelay | None = None
        self.kinds: dict[int, str] = {}  # payload type -> kind
        self.streams: dict[int, StreamStats] = {}  # by SSRC
        self.stream_kind: dict[int, str] = {}
        self.frames: list[tuple[int, int]] = []  # (video RTP ts, first arrival ns)
        self._last_frame_ts: int | None = None
        self.times: dict[str, float] = {}
        self.first_keyframe = asyncio.Event()
        self.stamped = 0
        self.bytes = 0
        self.error: str | None = None
        self.offers = 0
        self._last_video: float | None = None
        self.outages: list[tuple[float, float]] = []  # (last video before, first after), s

    async def start(self, room: str, tracks: list[dict]) -> None:
        self.times["start"] = time.monotonic()
        await self.signal.connect(self.name, room)
        self.times["welcome"] = time.monotonic()
        self.transport = _transport("sub", self.name)
        self.transport.on_rtp = self._on_rtp
        if self.native:
            self.transport.on_state = self._on_state
        _wire_trickle(self.signal, self.transport)
        self.relay = await self.wan.relay()
        self.times["join"] = time.monotonic()
        if self.join_subscribes:  # one request: the offer follows `joined`
            await self.signal.join_subscribing(room, tracks, self._on_offer)
            self.times["joined"] = self.times["subscribed"] = time.monotonic()
            return
        await self.signal.join(room)
        self.times["joined"] = time.monotonic()
        await self.signal.subscribe(tracks, self._on_offer)
        self.times["subscribed"] = time.monotonic()

    async def _on_offer(self, sdp: str) -> str:
        self.offers += 1
        self.times.setdefault("offer", time.monotonic())
        answer = await self.transport.accept_offer(self.wan.incoming(self.relay, sdp))
        for transceiver in self.transport.pc.getTransceivers():
            for codec in sfu_transport.negotiated_codecs(transceiver):
                self.kinds[codec.payloadType] = transceiver.kind
        self.times.setdefault("answered", time.monotonic())
        return self.wan.outgoing(self.relay, answer)

    def _on_rtp(self, data: bytes, arrival: float) -> None:
        try:
            pt, _marker, seq, ts, ssrc, offset, end, *_ = parse_header(data)
        except ValueError:
            return
        stats = self.streams.get(ssrc)
        if stats is None:
            stats = self.streams[ssrc] = StreamStats()
            self.stream_kind[ssrc] = self.kinds.get(pt, "video" if pt >= 96 else "audio")
            self.times.setdefault("first_packet", arrival)
        self.bytes += len(data)
        outcome = stats.add(seq)
        if outcome == "dup":
            return
        if stats.missing:
            if self.nack and self.stream_kind[ssrc] == "video":
                self._send_nack(ssrc, stats.missing)
            stats.missing = []
        elif outcome == "late" and self.nacked:
            self.recovered += 1
        found = read_stamp(data, end)
        if found is not None:
            self.stamped += 1
            self.latency.add((int(arrival * 1e9) - found[0]) / 1000.0)  # µs
        if self.stream_kind[ssrc] == "video":
            if self._last_video is not None and arrival - self._last_video > OUTAGE_S:
                self.outages.append((self._last_video, arrival))
            self._last_video = arrival
            if not self.first_keyframe.is_set() and vp8_is_keyframe(data[offset:end]):
                self.times["first_keyframe"] = arrival
                self.first_keyframe.set()
            if self.keep_frames and ts != self._last_frame_ts:
                self._last_frame_ts = ts
                self.frames.append((ts, int(arrival * 1e9)))

    def _on_state(self, state: str) -> None:
        if state == "connected" and self.receiver is None:
            self._read_natively()

    def _read_natively(self) -> None:
        """From now on read the socket with a :class:`bench.receive.Receiver`: recvmmsg,
        libsrtp, the counting and the latency in C, each datagram stamped by the kernel
        on arrival (so the latency is the network's and the server's, not this process's
        queue). STUN, DTLS and SRTCP still go to the ICE connection. Nothing changes
        where the socket cannot be taken (uvloop: the worker runs asyncio's loop)."""
        from .receive import Receiver, enable_kernel_stamps, take_reading

        path = self.transport.receive_path()
        if path is None:
            return
        session, datagram_transport, protocol = path
        sock = datagram_transport.get_extra_info("socket")
        receiver = Receiver(sock.fileno(), session, nack=self.nack,
                            video_pts={pt: kind == "video" for pt, kind in self.kinds.items()})

        def readable() -> None:
            for data, address in receiver.drain():
                protocol.datagram_received(data, address)
            for ssrc, lost in receiver.take_nacks():
                self._send_nack(ssrc, lost, count=False)
            if receiver.first_packet_ns:
                self.times.setdefault("first_packet", receiver.first_packet_ns / 1e9)
            if receiver.first_keyframe_ns and not self.first_keyframe.is_set():
                self.times["first_keyframe"] = receiver.first_keyframe_ns / 1e9
                self.first_keyframe.set()
            self.outages.extend(receiver.take_outages())

        enable_kernel_stamps(sock)
        if take_reading(datagram_transport, readable):
            self.receiver = receiver
        else:
            receiver.close()

    def _send_nack(self, ssrc: int, lost: list[int], count: bool = True) -> None:
        """Ask for the packets a gap skipped, once, as a browser's first NACK does."""
        from sfu.rtcp import Nack, serialize_rtcp

        if count:
            self.nacked += len(lost)
        self.transport.send_rtcp(serialize_rtcp([Nack(sender_ssrc=1, media_ssrc=ssrc, lost=lost)]))

    @property
    def last_video(self) -> float | None:
        """When video last arrived (monotonic s), whichever path read it."""
        if self.receiver is not None and self.receiver.last_video_ns:
            return self.receiver.last_video_ns / 1e9
        return self._last_video

    @property
    def receiving(self) -> bool:
        """Some RTP has arrived."""
        return bool(self.streams) or bool(self.receiver is not None and self.receiver.first_packet_ns)

    def totals(self) -> dict[str, int]:
        """Bytes, stamped packets, NACKed and recovered sequence numbers since `mark`."""
        out = {"bytes": self.bytes, "stamped": self.stamped, "nacked": self.nacked,
               "recovered": self.recovered}
        if self.receiver is not None:
            for key in out:
                out[key] += getattr(self.receiver, key)
        return out

    def mark(self) -> None:
        if self.receiver is not None:
            self.receiver.mark()
        for stats in self.streams.values():
            stats.reset()
        self.nacked = self.recovered = 0
        self.frames = []
        self.stamped = 0
        self.bytes = 0

    def connect_times(self) -> dict[str, float]:
        """Milliseconds from sending ``join`` to each step."""
        t0 = self.times.get("join")
        if t0 is None:
            return {}
        return {k: round(1000 * (v - t0), 3) for k, v in self.times.items() if k != "start"}

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for ssrc, stats in self.streams.items():
            row = out.setdefault(self.stream_kind[ssrc], {})
            for key, value in stats.as_dict().items():
                row[key] = row.get(key, 0) + value
        if self.receiver is not None:
            out = merge_counts([out, self.receiver.counts()])
        return out

    async def close(self) -> None:
        await _close_legs(self.transport, self.signal, self.relay)


# -- worker process --------------------------------------------------------------------


class Worker:
    """The clients of one process and the commands that drive them."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.corpus = Corpus.load(config["corpus"]) if config.get("corpus") else None
        wan = WanProfile.parse(config["wan"]) if config.get("wan") else None
        self.wan = _Wan(wan, config.get("ice_address", "127.0.0.1"))
        self.url = config["url"]
        self.proxy: TcpDelayProxy | None = None
        self.publishers: list[Publisher] = []
        self.subscribers: list[Subscriber] = []
        self.latency = Reservoir(int(config.get("latency_samples", 50000)))
        self.mark_at = time.monotonic()
        self.stamp = config.get("system", "dockcast") != "naive"

    async def setup(self) -> None:
        from sfu.ice import use_host_addresses, use_rfc7675_consent

        use_host_addresses([self.config.get("ice_address", "127.0.0.1")])
        use_rfc7675_consent()  # as a browser: a server answering late is not dropped
        if self.wan.profile is not None:
            # the websocket crosses the same emulated path (lossless: it is TCP)
            host, port = self.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
            self.proxy = await TcpDelayProxy((host, int(port)), self.wan.profile).start()
            self.url = self.url.replace(f"{host}:{port}", f"127.0.0.1:{self.proxy.port}", 1)

    def _signal(self) -> Any:
        return make_signal(self.config, self.url)

    async def cmd_publish(self, rooms: list[str], kinds: list[str] | None = None,
                          identity: str | None = None) -> dict:
        """A publisher per room; ``identity`` names it (a publisher coming back after its
        node died is the same identity), else a fresh name."""
        tracks: dict[str, list[dict]] = {}
        for room in rooms:
            publisher = Publisher(self._signal(), self.corpus, self.wan,
                                  name=identity or f"pub-{room}-{uuid.uuid4().hex[:6]}",
                                  kinds=tuple(kinds or ("video", "audio")),
                                  stamp_payloads=self.stamp)
            self.publishers.append(publisher)
            tracks[room] = await publisher.start(room)
        return {"tracks": tracks}

    async def _start_subscriber(self, room: str, tracks: list[dict], keep_frames: bool,
                                timeout: float) -> Subscriber:
        sub = Subscriber(self._signal(), self.wan, name=f"sub-{uuid.uuid4().hex[:8]}",
                         latency=self.latency, keep_frames=keep_frames,
                         nack=self.config.get("nack", True),
                         join_subscribes=bool(self.config.get("join_subscribes")),
                         native=native_receive(self.config))
        self.subscribers.append(sub)
        try:
            async with asyncio.timeout(timeout):
                await sub.start(room, tracks)
                if any(t.get("kind") == "video" for t in tracks):
                    await sub.first_keyframe.wait()
                else:
                    await sub.transport.connected.wait()
        except Exception as exc:  # noqa: BLE001 - count and report every failure
            sub.error = f"{type(exc).__name__}: {exc}"[:300]
            logger.warning("subscriber %s failed after %s: %s", sub.name,
                           ", ".join(f"{k} {v:.0f} ms" for k, v in sub.connect_times().items()) or "nothing",
                           sub.error)
        return sub

    async def cmd_subscribe(self, groups: list[dict], concurrency: int = 10,
                            timeout: float = 30.0) -> dict:
        """``groups``: ``[{"room", "tracks", "count"}]``; answers once all are receiving."""
        keep_frames = not self.stamp
        gate = asyncio.Semaphore(concurrency)

        async def one(room: str, tracks: list[dict]) -> Subscriber:
            async with gate:
                return await self._start_subscriber(room, tracks, keep_frames, timeout)

        jobs = [one(g["room"], g["tracks"]) for g in groups for _ in range(int(g["count"]))]
        t0 = time.monotonic()
        subs = await asyncio.gather(*jobs)
        errors = [s.error for s in subs if s.error]
        return {"started": len(subs), "failed": len(errors), "errors": errors[:5],
                "seconds": round(time.monotonic() - t0, 3),
                "connect": [s.connect_times() for s in subs]}

    async def cmd_join_once(self, room: str, tracks: list[dict], timeout: float = 20.0) -> dict:
        """One subscriber joins, waits for its first keyframe, and leaves (connect time)."""
        sub = await self._start_subscriber(room, tracks, False, timeout)
        self.subscribers.remove(sub)
        result = {"connect": sub.connect_times(), "error": sub.error}
        await sub.close()
        return result

    async def cmd_outages(self, since: float) -> dict:
        """Each subscriber's video outages that ended after ``since`` (monotonic s, the
        clock of every process here), and whether its video flows now."""
        now = time.monotonic()
        return {"subscribers": [
            {"outages": [[a, b] for a, b in s.outages if b > since],
             "last_video": s.last_video,
             "flowing": s.last_video is not None and now - s.last_video < OUTAGE_S}
            for s in self.subscribers]}

    async def cmd_mark(self) -> dict:
        for sub in self.subscribers:
            sub.mark()
        self.latency.clear()
        for publisher in self.publishers:
            publisher.mark()
        self.mark_at = time.monotonic()
        return {}

    async def cmd_report(self) -> dict:
        subs = [s for s in self.subscribers if s.error is None]
        totals: collections.Counter[str] = collections.Counter()
        for sub in subs:
            totals.update(sub.totals())
        latency, latency_count = self._latency()
        report = {
            "window_s": time.monotonic() - self.mark_at,
            "subscribers": len(self.subscribers),
            "receiving": sum(1 for s in subs if s.receiving),
            "failed": len(self.subscribers) - len(subs),
            "errors": sorted({s.error for s in self.subscribers if s.error})[:5],
            "counts": merge_counts([s.counts() for s in subs]),
            **{key: totals.get(key, 0) for key in ("bytes", "stamped", "nacked", "recovered")},
            "offers": sum(s.offers for s in self.subscribers),
            "join_refused": sum(getattr(s.signal, "overloaded", 0) for s in self.subscribers),
            "latency_us": [round(v, 1) for v in latency],
            "latency_count": latency_count,
            "native_receive": sum(1 for s in subs if s.receiver is not None),
            "publishers": [p.report() for p in self.publishers],
        }
        if not self.stamp:
            report["frames"] = [s.frames for s in subs]
            report["sent_frames"] = {str(k): v for p in self.publishers for k, v in p.frame_log.items()}
        if self.wan.relays:
            up = merge_counts([{"x": r.up.stats.as_dict()} for r in self.wan.relays])["x"]
            down = merge_counts([{"x": r.down.stats.as_dict()} for r in self.wan.relays])["x"]
            report["wan"] = {"up": up, "down": down}
        return report

    def _latency(self) -> tuple[list[float], int]:
        """The window's latency samples (µs) of every subscriber, at most the reservoir's
        size (a uniform sample of the subscribers' own samples beyond it), and how many
        packets they stand for."""
        values = list(self.latency.values)
        count = self.latency.count
        for sub in self.subscribers:
            if sub.receiver is not None:
                values.extend(sub.receiver.latencies())
                count += sub.receiver.latency_count
        if len(values) > self.latency.size:
            values = random.Random(0).sample(values, self.latency.size)
        return values, count

    async def cmd_messages(self, **options: Any) -> dict:
        """Run the room-messages load of :mod:`bench.messages` from this process."""
        from .messages import Unsupported, run_messages

        try:
            result = await run_messages(self.url, self.config["api_key"],
                                        self.config["api_secret"], **options)
        except Unsupported as exc:
            return {"skipped": str(exc)}
        return {"result": result}

    async def cmd_soak_cycle(self, **options: Any) -> dict:
        """One churn cycle of :mod:`bench.soak`: a room's publisher, subscribers and
        messages, held, then gone."""
        from .soak import run_cycle

        return await run_cycle(self, **options)

    async def cmd_drop(self, count: int) -> dict:
        """Close ``count`` subscribers (the oldest first)."""
        gone, self.subscribers = self.subscribers[:count], self.subscribers[count:]
        await asyncio.gather(*(s.close() for s in gone), return_exceptions=True)
        return {"closed": len(gone)}

    async def cmd_close(self) -> dict:
        clients = self.subscribers + self.publishers
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        self.subscribers, self.publishers = [], []
        for relay in self.wan.relays:
            relay.close()
        if self.proxy is not None:
            await self.proxy.close()
        return {}


async def _serve(config: dict) -> None:
    worker = Worker(config)
    await worker.setup()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout

    def emit(msg: dict) -> None:
        out.write(json.dumps(msg) + "\n")
        out.flush()

    emit({"event": "ready", "pid": os.getpid()})
    while True:
        line = await reader.readline()
        if not line:
            await worker.cmd_close()
            return
        msg = json.loads(line)
        cmd = msg.pop("cmd")
        handler = getattr(worker, f"cmd_{cmd.replace('-', '_')}", None)
        try:
            if handler is None:
                raise ValueError(f"unknown command {cmd!r}")
            result = await handler(**msg)
            emit({"event": cmd, "ok": True, **result})
        except Exception as exc:  # noqa: BLE001 - the harness reports it
            logger.exception("command %s failed", cmd)
            emit({"event": cmd, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
        if cmd == "close":
            return


def native_receive(config: dict) -> bool:
    """Whether subscribers read their sockets with :class:`bench.receive.Receiver`
    (config ``"receive": "native"``, the default) or through the transport's Python
    hook (``"python"``: the path every subscriber used before, kept to compare)."""
    return config.get("receive", "native") == "native"


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.loadclient CONFIG_JSON``: run a worker on stdin/stdout.

    Native receiving needs asyncio's own loop (its datagram transports can hand their
    socket over; uvloop's read in C); the Python path runs on uvloop, as before."""
    import uvloop

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m bench.loadclient CONFIG_JSON", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s loadclient %(levelname)s %(name)s: %(message)s")
    config = json.loads(argv[0])
    if native_receive(config):
        asyncio.run(_serve(config))
    else:
        uvloop.run(_serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
