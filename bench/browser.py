"""Headless Chromium for the bench: how it is launched (a fake camera, loopback only) and
the page that publishes its camera as a three-layer simulcast (rid q/h/f, L1T3, 1280x720
scaled by 4, 2 and 1) through the node's own ``/web/dockcast.js``.

Shared with the end-to-end tests (tests/e2e/test_simulcast.py, test_bandwidth.py) so that
the bench's ``quality`` scenario publishes exactly what they do.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from typing import Any

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "PUBLISH_SIMULCAST", "SUBSCRIBE_THROUGH_RELAY", "BrowserViewer",
           "sending_layers", "wait_for_layers"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]

# The page publishes its camera as three simulcast encodings on a peer connection of
# its own, through dockcast.js's request (the client's publish() sends one encoding).
PUBLISH_SIMULCAST = """
async ({url, token, room}) => {
  const { DockcastClient } = await import("/web/dockcast.js");
  const client = new DockcastClient(url, token, {});
  await client.connect();
  await client.join(room);
  const stream = await navigator.mediaDevices.getUserMedia(
    { video: { width: 1280, height: 720, frameRate: 30 } });
  const pc = new RTCPeerConnection({ iceServers: [] });
  const transceiver = pc.addTransceiver(stream.getVideoTracks()[0], {
    direction: "sendonly",
    sendEncodings: [
      { rid: "q", scaleResolutionDownBy: 4, scalabilityMode: "L1T3" },
      { rid: "h", scaleResolutionDownBy: 2, scalabilityMode: "L1T3" },
      { rid: "f", scaleResolutionDownBy: 1, scalabilityMode: "L1T3" },
    ],
  });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {
    if (pc.iceGatheringState === "complete") return done();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && done());
  });
  const published = await client.request("publish", {
    sdp: pc.localDescription.sdp,
    tracks: [{ mid: transceiver.mid, kind: "video", source: "camera" }],
  });
  await pc.setRemoteDescription({ type: "answer", sdp: published.sdp });
  window.t = { client, pc, published };
  window.t.layers = async () => {
    const out = {};
    for (const r of (await pc.getStats()).values())
      if (r.type === "outbound-rtp") out[r.rid] = { width: r.frameWidth || 0, fps: r.framesPerSecond || 0,
                                                    keyframes: r.keyFramesEncoded || 0, plis: r.pliCount || 0 };
    return out;
  };
  return { offer: pc.localDescription.sdp, answer: published.sdp, track_id: published.tracks[0].track_id };
}
"""



async def sending_layers(page: Any) -> dict[str, dict]:
    """What the page's encoder sends, by rid: ``{width, fps, keyframes, plis}``."""
    return await page.evaluate("window.t.layers()")


async def wait_for_layers(page: Any, rids: str = "qhf", timeout: float = 90.0) -> dict[str, dict]:
    """Wait until Chromium sends every layer of ``rids`` (it adds the upper ones as its own
    estimate, bounded by the node's REMB, allows); the last `sending_layers` either way."""
    deadline = time.monotonic() + timeout
    while True:
        layers = await sending_layers(page)
        if all(layers.get(rid, {}).get("fps", 0) > 0 for rid in rids) or time.monotonic() > deadline:
            return layers
        await asyncio.sleep(0.5)


# A subscriber page: dockcast.js with autoSubscribe, its peer connection's SDP passed
# through the page's ``wanIncoming``/``wanOutgoing`` bindings (a relay's rewriting, from
# Python), and every 100 ms a sample of what it decodes: [t (s, the page's clock),
# video frames decoded, frame height, audio packets received].
SUBSCRIBE_THROUGH_RELAY = """
async ({url, token, room}) => {
  const { DockcastClient } = await import("/web/dockcast.js");
  const setRemote = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = async function (d) {
    return setRemote.call(this, { type: d.type, sdp: await window.wanIncoming(d.sdp) });
  };
  const client = new DockcastClient(url, token, { autoSubscribe: true });
  const request = client._request.bind(client);
  client._request = async (type, fields) => (type === "answer" && fields && fields.sdp)
    ? request(type, { ...fields, sdp: await window.wanOutgoing(fields.sdp) }) : request(type, fields);
  const t = window.t = { client, samples: [], paused: [], resumed: [] };
  client.on("track_paused", (e) => t.paused.push([performance.now() / 1000, e.track_id]));
  client.on("track_resumed", (e) => t.resumed.push([performance.now() / 1000, e.track_id]));
  client.on("track", (e) => {
    const el = document.createElement(e.track.kind === "video" ? "video" : "audio");
    Object.assign(el, { autoplay: true, muted: true, playsInline: true, srcObject: new MediaStream([e.track]) });
    document.body.append(el);
  });
  t.timer = setInterval(async () => {
    if (!client.sub) return;
    let frames = 0, height = 0, audio = 0;
    for (const r of (await client.sub.getStats()).values()) {
      if (r.type !== "inbound-rtp") continue;
      if (r.kind === "video") { frames += r.framesDecoded || 0; height = Math.max(height, r.frameHeight || 0); }
      else audio += r.packetsReceived || 0;
    }
    t.samples.push([performance.now() / 1000, frames, height, audio]);
  }, 100);
  await client.connect();
  await client.join(room);
  return client.participantId;
}
"""


class BrowserViewer:
    """A headless Chromium subscriber behind a ``bench.wan.UdpRelay``: the node's SDP is
    pointed at the relay's client side, the page's at its server side (as the aiortc
    viewers' are), so every packet of its peer connection crosses the emulated link.
    ``samples()`` is what the page decoded, every 100 ms (see ``SUBSCRIBE_THROUGH_RELAY``)."""

    def __init__(self, page: Any, relay: Any) -> None:
        self.page = page
        self.relay = relay
        self.participant_id: str | None = None

    @classmethod
    async def open(cls, browser: Any, http: str, url: str, token: str, room: str, relay: Any) -> BrowserViewer:
        from .wan import rewrite_candidates, sdp_candidate_address

        page = await browser.new_page()
        viewer = cls(page, relay)

        async def incoming(sdp: str) -> str:
            address = sdp_candidate_address(sdp)
            if address is not None:
                relay.set_server(address)
            return rewrite_candidates(sdp, relay.host, relay.client_port)

        async def outgoing(sdp: str) -> str:
            return rewrite_candidates(sdp, relay.host, relay.server_port)

        await page.expose_function("wanIncoming", incoming)
        await page.expose_function("wanOutgoing", outgoing)
        await page.goto(f"{http}/healthz")  # the node's origin: /web/dockcast.js imports from it
        viewer.participant_id = await page.evaluate(SUBSCRIBE_THROUGH_RELAY,
                                                    {"url": url, "token": token, "room": room})
        return viewer

    async def samples(self) -> list[tuple[float, int, int, int]]:
        """``[(t, frames decoded, frame height, audio packets)]`` so far."""
        return [tuple(s) for s in await self.page.evaluate("window.t.samples")]

    async def clock(self) -> float:
        """The page's clock now (seconds), the one its samples and events are timed by."""
        return await self.page.evaluate("performance.now() / 1000")

    async def events(self) -> dict[str, list]:
        """The ``track_paused`` / ``track_resumed`` events it got: ``[(t, track_id)]``."""
        return await self.page.evaluate("({paused: window.t.paused, resumed: window.t.resumed})")

    async def close(self) -> None:
        await self.page.close()
