"""The ``quality`` scenario: layers chosen by bandwidth over time (issue 13, point 6).

One Dockcast node on loopback; headless Chromium publishes its fake camera as three
simulcast layers (q/h/f, `bench.browser`) and an aiortc peer publishes audio. Each
subscriber decodes what it receives behind its own `bench.wan.UdpRelay` whose rate
follows a schedule (``--links``; by default 300 kbit/s, 3 Mbit/s, and 3 Mbit/s dropping
to 300 kbit/s at t=20 s and back at t=40 s, changed mid-call with
`UdpRelay.set_profile`). ``--viewers chromium`` (the default) makes each a page of the
publisher's headless Chromium (`bench.browser.BrowserViewer`): browsers negotiate
transport-cc, so the node estimates from their feedback and probes, the production
case; ``aiortc`` makes each an aiortc peer, which answers without transport-cc (REMB
mode). t=0 is when the subscriptions are made (Chromium pages: when they start joining,
``join {subscribe: true}``, all at once); the run lasts ``--duration`` seconds from there.

Every 0.5 s the bench reads from the node each subscriber's estimate and the layer its
video consumer forwards. They come from ``/metrics`` with the node started with
``DOCKCAST_DEBUG_SUBSCRIBER_GAUGES=1`` (`dockcast.metrics`): a read-only path the bench
already uses, off in production because its labels grow with every participant; an admin
request would have widened the wire contract for a debugging need. From the subscribers'
decoders: frames per second, frame height, freezes (gaps over 1 s between decoded frames)
and the audio frames; a Chromium page counts them every 100 ms (its ``getStats``), turned
into the same series by `bench.quality_report.page_series`. The analysis and figure are
`bench.quality_report`.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import urllib.request
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from .browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PUBLISH_SIMULCAST,
    BrowserViewer,
    wait_for_layers,
)
from .harness import DockcastSystem, Run
from .quality_report import analyse, decoder_columns, page_series
from .wan import UdpRelay, WanProfile, rewrite_candidates, sdp_candidate_address

__all__ = ["DEFAULT_LINKS", "INTERVAL_S", "VIEWERS", "Link", "parse_link", "quality"]

DEFAULT_LINKS = ("300", "3000", "3000@20=300@40=3000")
VIEWERS = ("chromium", "aiortc")
"""The kinds of subscriber (``--viewers``), the default first."""
INTERVAL_S = 0.5
"""Seconds between samples."""
ROOM = "quality"
DEBUG_GAUGES_ENV = "DOCKCAST_DEBUG_SUBSCRIBER_GAUGES"  # dockcast.metrics.DEBUG_GAUGES_ENV

_LINK = re.compile(r"^(\d+)((?:@\d+(?:\.\d+)?=\d+)*)$")


@dataclass(frozen=True)
class Link:
    """A subscriber link's rate over time: ``steps`` of (from second, kbit/s), the first
    at 0. Written ``RATE[@T=RATE...]``: ``3000@20=300@40=3000``."""

    steps: tuple[tuple[float, int], ...]

    def rate_at(self, t: float) -> int:
        return [kbps for start, kbps in self.steps if start <= t or start == 0][-1]


def parse_link(text: str) -> Link:
    """``RATE[@T=RATE...]`` in kbit/s and seconds, times increasing; ValueError otherwise."""
    match = _LINK.match(text.strip())
    if not match:
        raise ValueError(f"a link is RATE[@SECONDS=RATE...] in kbit/s (3000@20=300), not {text!r}")
    steps = [(0.0, int(match.group(1)))]
    for change in match.group(2).split("@")[1:]:
        at, kbps = change.split("=")
        steps.append((float(at), int(kbps)))
    if any(b[0] <= a[0] for a, b in pairwise(steps)):
        raise ValueError(f"the link {text!r}: change times must increase and be after 0")
    if any(kbps < 1 for _, kbps in steps):
        raise ValueError(f"the link {text!r}: rates must be at least 1 kbit/s")
    return Link(tuple(steps))


@dataclass
class _Viewer:
    """An aiortc subscriber behind its own relay, keeping what its decoders output."""

    name: str
    link: Link
    relay: UdpRelay
    t0: float = 0.0
    client: Any = None
    pc: Any = None
    participant_id: str = ""
    video: list[tuple[float, int]] = field(default_factory=list)  # (t, height)
    audio: list[float] = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def join(self, url: str, token: str) -> None:
        from signalling.client import DockcastClient

        self.client = await DockcastClient.connect(url, token, timeout=30.0)
        self.client.on("offer", self._answer)
        self.participant_id = (await self.client.join(ROOM))["participant_id"]

    async def _answer(self, offer: dict) -> None:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        from sfu.ice import rtc_configuration

        async with self.lock:  # offers answered one at a time, in order
            sdp = offer["sdp"]
            self.relay.set_server(sdp_candidate_address(sdp))
            sdp = rewrite_candidates(sdp, self.relay.host, self.relay.client_port)
            if self.pc is None:
                self.pc = RTCPeerConnection(rtc_configuration())
                self.pc.on("track", lambda track: self.tasks.append(asyncio.ensure_future(self._decode(track))))
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            answer = rewrite_candidates(self.pc.localDescription.sdp, self.relay.host, self.relay.server_port)
            await self.client.answer(answer)

    async def _decode(self, track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic() - self.t0
                if track.kind == "video":
                    self.video.append((round(now, 3), frame.height))
                else:
                    self.audio.append(round(now, 3))
        except Exception:  # noqa: BLE001, S110 - MediaStreamError when the track ends
            pass

    async def collect(self) -> dict:
        """Nothing more to read (its series grew as it decoded)."""
        return {}

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.client is not None:
            await self.client.close()
        if self.pc is not None:
            await self.pc.close()


@dataclass
class _PageViewer:
    """A headless Chromium subscriber (`BrowserViewer`) behind its own relay. Its page
    counts what it decodes every 100 ms on the page's clock; `collect` reads them into
    the series a `_Viewer` keeps, in seconds since t=0."""

    name: str
    link: Link
    relay: UdpRelay
    viewer: BrowserViewer | None = None
    participant_id: str = ""
    offset: float = 0.0
    """The page's clock at t=0."""
    video: list[tuple[float, int]] = field(default_factory=list)
    audio: list[float] = field(default_factory=list)

    async def open(self, browser: Any, http: str, url: str, token: str, t0: float) -> float:
        """Open the page, join and subscribe; the seconds since t0 it took."""
        self.viewer = await BrowserViewer.open(browser, http, url, token, ROOM, self.relay)
        self.participant_id = self.viewer.participant_id or ""
        before = time.monotonic()
        page_now = await self.viewer.clock()
        self.offset = page_now - ((before + time.monotonic()) / 2 - t0)  # a round trip is ~1 ms
        return round(before - t0, 2)

    async def collect(self) -> dict:
        """Read the page's samples into ``video`` and ``audio``; its pause events."""
        if self.viewer is None:
            return {}
        self.video, self.audio = page_series(await self.viewer.samples(), self.offset)
        events = await self.viewer.events()
        return {"events": {kind: [[round(t - self.offset, 2), track] for t, track in seen]
                           for kind, seen in events.items()}}

    async def close(self) -> None:
        if self.viewer is not None:
            await self.viewer.close()


def _gauges(http: str) -> dict[str, dict[str, float]] | None:
    """``{participant id: {estimate_bps, budget_bps, layer, feedbacks, probe_clusters}}``
    from the node's debug gauges (the last two only with transport-cc); None when
    the node does not expose them."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(http + "/metrics", timeout=2) as reply:
        text = reply.read().decode()
    out: dict[str, dict[str, float]] = {}
    seen = False
    for family in text_string_to_metric_families(text):
        key = {"dockcast_debug_subscriber_estimate_bps": "estimate_bps",
               "dockcast_debug_subscriber_budget_bps": "budget_bps",
               "dockcast_debug_consumer_layer": "layer",
               "dockcast_debug_subscriber_transport_cc_feedbacks": "feedbacks",
               "dockcast_debug_subscriber_probe_clusters": "probe_clusters"}.get(family.name)
        if key is None:
            continue
        seen = True
        for sample in family.samples:
            out.setdefault(sample.labels["participant"], {})[key] = sample.value
    return out if seen else None


async def quality(run: Run, *, links: tuple[str, ...] = DEFAULT_LINKS, duration: float = 60.0,
                  interval: float = INTERVAL_S, viewers: str = VIEWERS[0]) -> dict:
    """Run the scenario on a fresh node (or ``--url``'s) with ``viewers`` subscribers (one of
    `VIEWERS`); the result for the report."""
    from playwright.async_api import async_playwright

    from sfu.ice import use_host_addresses

    if viewers not in VIEWERS:
        raise ValueError(f"viewers are one of {', '.join(VIEWERS)}, not {viewers!r}")
    use_host_addresses(["127.0.0.1"])  # aioice offers no loopback candidate otherwise
    os.environ[DEBUG_GAUGES_ENV] = "1"  # the node started below inherits it
    o = run.options
    system = DockcastSystem(o.url, o.api_key, o.api_secret, o.server_pid)
    parsed = [parse_link(text) for text in links]
    subs: list[_Viewer | _PageViewer] = []
    mic = None
    result: dict[str, Any] = {
        "scenario": "quality", "publisher": "headless Chromium, fake camera, simulcast q/h/f "
        "(320x180, 640x360, 1280x720, L1T3); audio from an aiortc peer",
        "params": {"links": list(links), "duration": duration, "interval": interval, "viewers": viewers},
        "systems": {"dockcast": {"label": system.label, "how": system.how}}, "subscribers": {}}
    try:
        await system.start(run)
        http = system.url.replace("ws://", "http://").rsplit("/ws", 1)[0]
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = await browser.new_page()
                await page.goto(f"{http}/healthz")  # the node's origin, for /web/dockcast.js
                published = await page.evaluate(PUBLISH_SIMULCAST, {
                    "url": system.url, "token": _token(system, "cam-simulcast"), "room": ROOM})
                with run.console.status("waiting for Chromium to send all three layers"):
                    result["sending_at_start"] = await wait_for_layers(page)
                mic = await _audio_publisher(system)
                kind = _PageViewer if viewers == "chromium" else _Viewer
                for i, link in enumerate(parsed):
                    relay = await UdpRelay(WanProfile(rate_kbps=link.steps[0][1])).start()
                    subs.append(kind(f"s{i + 1} ({links[i]})", link, relay))
                tokens = [_token(system, f"viewer-{i + 1}") for i in range(len(subs))]
                if viewers == "chromium":
                    samples, result["joined_s"] = await _pages(run, browser, system.url, http, subs,
                                                               tokens, duration, interval)
                else:
                    samples = await _peers(run, system.url, http, subs, tokens,
                                           [published["track_id"], mic[1]], duration, interval)
                extra = {v.name: await v.collect() for v in subs}
                result["sending_at_end"] = await wait_for_layers(page, timeout=0)
            finally:
                for v in subs:  # the pages before their browser
                    await v.close()
                await browser.close()
        result["gauges_missing"] = samples.pop("missing")
        for v in subs:
            decoder_columns(samples[v.name], v.video, interval)
            sub = {"link": [list(step) for step in v.link.steps], "participant_id": v.participant_id,
                   "samples": samples[v.name], "video": v.video, "audio": v.audio,
                   "relay": v.relay.stats(), **extra[v.name]}
            sub["analysis"] = analyse(sub, duration, interval)
            result["subscribers"][v.name] = sub
            a = sub["analysis"]
            run.console.print(f"  {v.name}: on layers {a['seconds_on_layer']}, {a['frames']} frames, "
                              f"{a['freezes']} freezes (longest {a['longest_freeze_s']} s), "
                              f"{a['audio_frames']} audio frames, settled after {a['settle_s']}, "
                              f"{a['probe_clusters']} probe clusters")
    finally:
        for v in subs:  # after the viewers' own close
            v.relay.close()
        if mic is not None:
            await mic[0].close()
            await mic[2].close()
        await system.stop()
    return result


async def _peers(run: Run, url: str, http: str, subs: list, tokens: list[str], tracks: list[str],
                 duration: float, interval: float) -> dict[str, Any]:
    """aiortc viewers: all join, then t=0 and all subscribe; the node's samples."""
    for v, token in zip(subs, tokens, strict=True):
        await v.join(url, token)
    t0 = time.monotonic()
    for v in subs:
        v.t0 = t0
        await v.client.subscribe(tracks)
    return await _sample(run, http, subs, duration, interval, t0)


async def _pages(run: Run, browser: Any, url: str, http: str, subs: list, tokens: list[str],
                 duration: float, interval: float) -> tuple[dict[str, Any], dict[str, float]]:
    """Chromium viewers: t=0, then all pages open at once (each joins subscribing) while
    the node is sampled from t=0 (a viewer is in the gauges once its page has joined);
    the samples and the seconds each page took to join."""
    t0 = time.monotonic()
    sampling = asyncio.ensure_future(_sample(run, http, subs, duration, interval, t0))
    try:
        took = await asyncio.gather(*(v.open(browser, http, url, token, t0)
                                      for v, token in zip(subs, tokens, strict=True)))
    except BaseException:
        sampling.cancel()
        raise
    return await sampling, {v.name: s for v, s in zip(subs, took, strict=True)}


async def _sample(run: Run, http: str, viewers: list, duration: float, interval: float,
                  t0: float) -> dict[str, Any]:
    """Every ``interval``: change the links that are due, read the node (the decoders'
    columns come after the run, `decoder_columns`)."""
    samples: dict[str, Any] = {v.name: [] for v in viewers}
    missing = False
    tick = 0
    while (t := tick * interval) <= duration:
        await asyncio.sleep(max(0.0, t0 + t - time.monotonic()))
        tick += 1
        for v in viewers:
            rate = v.link.rate_at(t)
            if t > 0 and rate != v.link.rate_at(t - interval):
                v.relay.set_profile(WanProfile(rate_kbps=rate))
                run.console.print(f"  t={t:g} s: {v.name}'s link now {rate} kbit/s")
        try:
            gauges = await asyncio.to_thread(_gauges, http)
        except OSError as exc:
            run.console.print(f"[yellow]  t={t:g} s: /metrics unreadable: {exc}")
            gauges = {}
        missing = missing or gauges is None
        for v in viewers:
            node = (gauges or {}).get(v.participant_id, {})
            layer = node.get("layer")
            samples[v.name].append({
                "t": t, "link_kbps": v.link.rate_at(t),
                "layer": None if layer is None else int(layer),
                "estimate_bps": node.get("estimate_bps"), "budget_bps": node.get("budget_bps"),
                "feedbacks": node.get("feedbacks"), "probe_clusters": node.get("probe_clusters")})
    samples["missing"] = missing
    return samples


def _token(system: DockcastSystem, identity: str) -> str:
    from signalling.tokens import mint_token

    return mint_token(system.api_key, system.api_secret, identity, room=ROOM,
                      grants=("publish", "subscribe"), ttl=3600)


async def _audio_publisher(system: DockcastSystem) -> tuple[Any, str, Any]:
    """An aiortc peer publishing a tone: (its client, the track id, its connection)."""
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack

    from sfu.ice import rtc_configuration
    from signalling.client import DockcastClient

    client = await DockcastClient.connect(system.url, _token(system, "mic"), timeout=30.0)
    await client.join(ROOM)
    pc = RTCPeerConnection(rtc_configuration())
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    tracks = [{"mid": t.mid, "kind": "audio", "source": "microphone"} for t in pc.getTransceivers()]
    published = await client.publish(pc.localDescription.sdp, tracks)
    await pc.setRemoteDescription(RTCSessionDescription(published["sdp"], "answer"))
    return client, published["tracks"][0]["track_id"], pc
