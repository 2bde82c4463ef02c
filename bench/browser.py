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

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "PUBLISH_SIMULCAST", "sending_layers", "wait_for_layers"]

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
