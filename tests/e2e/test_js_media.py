"""dockcast.js in headless Chromium: media both ways with aiortc, and a websocket cut.

The page is any page of the node (same origin): the tests import ``/web/dockcast.js``
into it with ``page.evaluate`` and keep the page's state in ``window.t``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

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


async def open_page(browser, node, identity, room, publish=False, url=None):  # noqa: F811
    page = await browser.new_page()
    await page.goto(f"{node.http}/healthz")  # the node's origin: /web/dockcast.js imports from it
    await page.evaluate(PAGE_CLIENT, {"url": url or node.url, "token": node.token(identity, room=room),
                                      "room": room, "publish": publish})
    return page


class CuttableProxy:
    """A TCP relay on loopback in front of the node's websocket port whose connections
    the test can cut at once, with no close frame: what a network drop looks like to the
    node (the peer connections go to the node directly and stay up)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.transports: list = []
        self.server = None
        self.port = 0
        self.down_until = 0.0  # while the network is "down", new connections are dropped

    async def start(self) -> CuttableProxy:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _relay(self, reader, writer) -> None:
        if time.monotonic() < self.down_until:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.transports += [writer.transport, up_writer.transport]

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self, down_for: float = 0.0) -> None:
        """Drop every connection now, and refuse new ones for ``down_for`` seconds."""
        self.down_until = time.monotonic() + down_for
        for transport in self.transports:
            transport.abort()
        self.transports.clear()

    async def close(self) -> None:
        self.cut()
        self.server.close()


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
    await aio.join(room)
    await aio.publish()
    page = await open_page(browser, node, "phone", room, publish=True)
    try:
        await frames_rising(page, "window.t.client.sub", 10)
        seqs = await cut_while_messages_flow(node, page, room)
        assert await page.evaluate("window.t.seqs") == seqs == list(range(1, 61))
        assert await page.evaluate("window.t.states") == ["connecting", "connected", "reconnecting", "connected"]
        assert await page.evaluate("window.t.client.room") == room
        # this node closed the participant with its websocket: the page made new peer
        # connections, published again and subscribed again, and decodes again
        restored = await page.evaluate("window.t.restored")
        assert len(restored) == 1 and len(restored[0]["republished"]) == 2
        await frames_rising(page, "window.t.client.sub", 10)
        republished = restored[0]["republished"]
        await aio.request("subscribe", track_ids=republished)
        for _ in range(300):
            if aio.video() and aio.video()[-1].frames > 15:
                break
            await asyncio.sleep(0.1)
        assert aio.video()[-1].frames > 15  # the page's camera reaches aiortc again
    finally:
        await page.close()
        await aio.close()


@contextlib.asynccontextmanager
async def relayed_page(node, browser, room):  # noqa: F811
    """An aiortc publisher in ``room``, a page whose signalling goes through a
    `CuttableProxy`, and a Python client joined to send room messages."""
    aio = Participant(node.url, node.token("dock-cam", room=room))
    await aio.connect()
    await aio.join(room)
    await aio.publish()
    proxy = await CuttableProxy(node.port).start()
    page = await open_page(browser, node, "phone", room, url=f"ws://127.0.0.1:{proxy.port}/ws")
    sender = await DockcastClient.connect(node.url, node.token("wms", room=room))
    try:
        await sender.join(room)
        yield page, proxy, sender
    finally:
        await sender.close()
        await page.close()
        await proxy.close()
        await aio.close()


async def test_a_network_blip_leaves_the_peer_connections_decoding(node, browser):  # noqa: F811
    async with relayed_page(node, browser, "dock-js-4") as (page, proxy, sender):
        before = await frames_rising(page, "window.t.client.sub", 10)
        await page.evaluate("window.t.first = window.t.client.sub")
        participant = await page.evaluate("window.t.client.participantId")
        seqs = [(await sender.send("status", {"i": i}))["seq"] for i in range(10)]
        proxy.cut()  # the signalling drops with no close frame; the media path does not
        seqs += [(await sender.send("status", {"i": i}))["seq"] for i in range(10, 20)]
        await wait_for(page, "window.t.states.at(-1) === 'connected' && window.t.states.includes('reconnecting')")
        await wait_for(page, "window.t.seqs.length >= 20")
        assert await page.evaluate("window.t.seqs") == seqs
        # the node kept the participant: the same participant and peer connection,
        # nothing rebuilt, and the video never stopped decoding
        assert await page.evaluate("window.t.client.participantId") == participant
        assert await page.evaluate("window.t.client.sub === window.t.first")
        assert await page.evaluate("window.t.restored.length") == 0
        await frames_rising(page, "window.t.first", before + 30, timeout=10)


class LoopbackUdpCut:
    """Every UDP datagram on loopback dropped (nftables, a table of its own): the page's
    and the node's peer connections lose their path as a phone's Wi-Fi would."""

    TABLE = "dockcast_test_cut"

    def __enter__(self) -> LoopbackUdpCut:
        import subprocess

        rules = (f"table inet {self.TABLE} {{\n  chain output {{\n"
                 "    type filter hook output priority 0;\n"
                 '    oif "lo" meta l4proto udp drop\n  }\n}\n')
        subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
        return self

    def __exit__(self, *exc) -> None:
        import subprocess

        subprocess.run(["nft", "delete", "table", "inet", self.TABLE], check=False)


async def test_a_page_whose_network_is_cut_for_ten_seconds_comes_back_by_itself(node, browser):  # noqa: F811
    import shutil

    if shutil.which("nft") is None:
        pytest.fail("nft is not installed: `make test` installs it (scripts/system-deps.sh)")
    room = "dock-js-5"
    async with relayed_page(node, browser, room) as (page, proxy, sender):
        before = await frames_rising(page, "window.t.client.sub", 10)
        participant = await page.evaluate("window.t.client.participantId")
        seqs = [(await sender.send("status", {"i": i}))["seq"] for i in range(5)]
        with LoopbackUdpCut():  # media and signalling both gone for ten seconds
            proxy.cut(down_for=10)
            seqs += [(await sender.send("status", {"i": i}))["seq"] for i in range(5, 10)]
            await asyncio.sleep(10)
        # back: the page reconnects by itself, to the same room, and misses no message
        await wait_for(page, "window.t.states.at(-1) === 'connected' && window.t.states.includes('reconnecting')", 30)
        await wait_for(page, "window.t.seqs.length >= 10", 30)
        assert await page.evaluate("window.t.seqs") == seqs
        assert await page.evaluate("window.t.client.room") == room
        # within the node's grace: the same participant, and media flows again
        assert await page.evaluate("window.t.client.participantId") == participant
        await frames_rising(page, "window.t.client.sub", before + 30, timeout=30)
