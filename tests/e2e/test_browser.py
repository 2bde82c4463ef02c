"""Browsers are the main client: headless Chromium publishes and subscribes."""

from __future__ import annotations

import asyncio
import shutil
import urllib.parse

import pytest

from bench.browser import CHROMIUM, CHROMIUM_ARGS

from .peer import VIDEO_CLOCK, Participant

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
async def browser():
    if not shutil.which("chromium"):
        pytest.fail("chromium is not installed: `make test` installs it (scripts/system-deps.sh)")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        await b.close()


def page_url(node, mode, identity):
    q = urllib.parse.urlencode({"url": node.url, "token": node.token(identity), "mode": mode, "room": "dock-1"})
    return f"{node.http}/web/test.html?{q}"


async def wait_for(page, expression, timeout=30):
    await page.wait_for_function(expression, timeout=timeout * 1000)


async def test_chromium_publishes_to_chromium_and_aiortc(node, browser):
    publisher = await browser.new_page()
    await publisher.goto(page_url(node, "publish", "cam-browser"))
    await wait_for(publisher, "window.dockcast && (window.dockcast.published || window.dockcast.error)")
    assert await publisher.evaluate("window.dockcast.error") is None
    published = await publisher.evaluate("window.dockcast.published")
    track_ids = [t["track_id"] for t in published["tracks"]]
    assert sorted(t["kind"] for t in published["tracks"]) == ["audio", "video"]

    viewer = await browser.new_page()
    await viewer.goto(page_url(node, "subscribe", "seller-browser"))
    aio = Participant(node.url, node.token("seller-aiortc"))
    await aio.connect()
    await aio.join()
    await aio.request("subscribe", track_ids=track_ids)
    try:
        await wait_for(viewer, "window.dockcast && window.dockcast.client.sub")
        for _ in range(400):
            stats = await viewer.evaluate("window.dockcast.stats()")
            if stats["framesDecoded"] > 30 and stats["audioPackets"] > 50:
                break
            await asyncio.sleep(0.1)
        assert stats["framesDecoded"] > 30
        assert stats["keyFramesDecoded"] >= 1 and stats["audioPackets"] > 50
        for _ in range(200):  # wait for both kinds: audio may start a little later
            if (aio.video() and aio.video()[0].frames > 15
                    and aio.audio() and aio.audio()[0].frames > 50):
                break
            await asyncio.sleep(0.1)
        video = aio.video()[0]
        assert video.frames > 15
        assert aio.first_video_packet_keyframe is True
        assert video.decoded_fraction(VIDEO_CLOCK // 30) > 0.5  # Chromium adapts its frame rate
        assert aio.audio() and aio.audio()[0].frames > 50
    finally:
        await aio.close()
        await viewer.close()
        await publisher.close()
