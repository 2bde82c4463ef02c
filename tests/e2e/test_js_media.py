"""dockcast.js in headless Chromium: media both ways with aiortc, and a websocket cut.

The page is any page of the node (same origin): the tests import ``/web/dockcast.js``
into it with ``page.evaluate`` and keep the page's state in ``window.t``.
"""

from __future__ import annotations

import asyncio

import pytest

from signalling.client import DockcastClient

from .peer import Participant
from .test_browser import browser, wait_for  # noqa: F401 - browser is a fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

# The page's side: a client with autoSubscribe, every received track in a <video>, the
# message seqs, connection states and media restorations it saw, and its decoder stats.
PAGE_CLIENT = """
async ({url, token, room, publish}) => {
  const { DockcastClient } = await import("/web/dockcast.js");
  const client = new DockcastClient(url, token, { autoSubscribe: true, reconnect: { initialDelayMs: 100, maxDelayMs: 1000 } });
  const t = window.t = { client, seqs: [], states: [], restored: [], subs: [], published: null };
  client.on("message", (m) => t.seqs.push(m.seq));
  client.on("connection", (e) => t.states.push(e.state));
  client.on("media_restored", (e) => t.restored.push(e));
  client.on("track", (e) => {
    const video = document.createElement("video");
    Object.assign(video, { autoplay: true, muted: true, playsInline: true, srcObject: new MediaStream([e.track]) });
    document.body.append(video);
    if (!t.subs.includes(client.sub)) t.subs.push(client.sub);
  });
  t.decoded = async (pc) => {
    let frames = 0;
    for (const r of pc ? (await pc.getStats()).values() : []) if (r.type === "inbound-rtp" && r.kind === "video") frames += r.framesDecoded || 0;
    return frames;
  };
  await client.connect();
  await client.join(room);
  if (publish) {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: true });
    t.published = await client.publish(stream);
  }
  return client.participantId;
}
"""


async def open_page(browser, node, identity, room, publish=False):  # noqa: F811
    page = await browser.new_page()
    await page.goto(f"{node.http}/healthz")  # the node's origin: /web/dockcast.js imports from it
    await page.evaluate(PAGE_CLIENT, {"url": node.url, "token": node.token(identity, room=room),
                                      "room": room, "publish": publish})
    return page


async def frames_rising(page, pc_expression, above=0, timeout=30):
    """Wait until the video frames decoded on ``pc_expression`` pass ``above``."""
    await wait_for(page, f"window.t.decoded({pc_expression}).then((n) => n > {above})", timeout)
    return await page.evaluate(f"window.t.decoded({pc_expression})")


async def test_aiortc_publishes_and_the_page_decodes(node, browser):  # noqa: F811
    aio = Participant(node.url, node.token("dock-cam", room="dock-js-1"))
    await aio.connect()
    await aio.join("dock-js-1")
    await aio.publish()
    page = await open_page(browser, node, "seller", "dock-js-1")
    try:
        first = await frames_rising(page, "window.t.client.sub", 10)
        await frames_rising(page, "window.t.client.sub", first + 10)  # it keeps decoding
        # the video and the audio, by autoSubscribe
        assert await page.evaluate("window.t.client.subscriptions.length") == 2
    finally:
        await page.close()
        await aio.close()


async def test_the_page_publishes_and_aiortc_decodes(node, browser):  # noqa: F811
    page = await open_page(browser, node, "dock-phone", "dock-js-2", publish=True)
    aio = Participant(node.url, node.token("seller-aio", room="dock-js-2"))
    try:
        tracks = await page.evaluate("window.t.published.tracks")
        assert sorted(t["kind"] for t in tracks) == ["audio", "video"]
        await aio.connect()
        await aio.join("dock-js-2")
        await aio.request("subscribe", track_ids=[t["track_id"] for t in tracks])
        for _ in range(300):
            if aio.video() and aio.video()[0].frames > 15:
                break
            await asyncio.sleep(0.1)
        assert aio.video()[0].frames > 15
    finally:
        await aio.close()
        await page.close()


async def cut_while_messages_flow(node, page, room, count=60):
    """Close the page's websocket (the object, from the test) while a Python client
    sends ``count`` messages; returns their seqs once the page is connected again."""
    sender = await DockcastClient.connect(node.url, node.token("wms", room=room))
    try:
        await sender.join(room)
        seqs = [(await sender.send("status", {"i": i}))["seq"] for i in range(count // 2)]
        await page.evaluate("window.t.client.ws.close()")
        seqs += [(await sender.send("status", {"i": i}))["seq"] for i in range(count // 2, count)]
        await wait_for(page, "window.t.states.at(-1) === 'connected' && window.t.states.includes('reconnecting')")
        await wait_for(page, f"window.t.seqs.length >= {count}")
        return seqs
    finally:
        await sender.close()


async def test_a_websocket_cut_reconnects_by_itself_with_no_message_lost(node, browser):  # noqa: F811
    room = "dock-js-3"
    aio = Participant(node.url, node.token("dock-cam", room=room))
    await aio.connect()
    aio_participant = (await aio.join(room))["participant_id"]
    await aio.publish()
    page = await open_page(browser, node, "phone", room, publish=True)
    try:
        await frames_rising(page, "window.t.client.sub", 10)
        seqs = await cut_while_messages_flow(node, page, room)
        assert await page.evaluate("window.t.seqs") == seqs == list(range(1, 61))
        assert await page.evaluate("window.t.states") == ["connecting", "connected", "reconnecting", "connected"]
        assert await page.evaluate("window.t.client.room") == room
        # the node kept the participant through the cut: the same peer connections
        # carry on, nothing was republished, and the page's camera still reaches aiortc
        assert await page.evaluate("window.t.restored") == []
        await frames_rising(page, "window.t.client.sub", 10)
        # the page's own tracks, as the room lists them after its re-join
        page_participant = await page.evaluate("window.t.client.participantId")
        published = [t["track_id"] for t in await page.evaluate("window.t.client.joined.tracks")
                     if t["participant_id"] == page_participant]
        assert len(published) == 2 and page_participant != aio_participant
        await aio.request("subscribe", track_ids=published)
        for _ in range(300):
            if aio.video() and aio.video()[-1].frames > 15:
                break
            await asyncio.sleep(0.1)
        assert aio.video()[-1].frames > 15
    finally:
        await page.close()
        await aio.close()


async def test_a_websocket_cut_leaves_the_peer_connections_decoding(node, browser):  # noqa: F811
    room = "dock-js-4"
    aio = Participant(node.url, node.token("dock-cam", room=room))
    await aio.connect()
    await aio.join(room)
    await aio.publish()
    page = await open_page(browser, node, "phone", room)
    try:
        before = await frames_rising(page, "window.t.client.sub", 10)
        await page.evaluate("window.t.first = window.t.client.sub")
        await cut_while_messages_flow(node, page, room, count=20)
        # the same peer connection, still decoding, and nothing rebuilt
        assert await page.evaluate("window.t.client.sub === window.t.first")
        assert await page.evaluate("window.t.restored.length") == 0
        await frames_rising(page, "window.t.first", before + 30, timeout=10)
    finally:
        await page.close()
        await aio.close()
