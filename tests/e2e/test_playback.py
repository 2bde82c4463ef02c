"""The playback page (``/playback/``) in headless Chromium, on a session recorded through
a real node: an aiortc publisher (a parcel moving along a belt, and beeps), a seller
who writes, shipment events and a verdict. The page must play the export (time
advancing, a picture of the publisher's size), list the audit timeline (the joins, the
verdict, signed checkpoints) and seek the video to an entry when it is clicked.
Screenshots of the desktop and phone layouts (into ``docs/screenshots/`` with DOCKCAST_SCREENSHOTS=1).
"""

from __future__ import annotations

import asyncio
import fractions
import time
import urllib.parse

import av
import numpy
import pytest
from aiortc import MediaStreamTrack

from signalling.client import DockcastClient

from .marks import BeepAudioTrack, MarkClock
from .peer import Participant
from .test_browser import browser  # noqa: F401 - a fixture
from .test_console import (
    DESKTOP,
    INSPECTOR,
    PHONE,
    console_url,
    media_rising,
    no_overflow,
    open_console,
    shoot,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

WIDTH, HEIGHT, FPS = 640, 360, 24


class ParcelVideoTrack(MediaStreamTrack):
    """A warehouse-like test picture: a parcel crossing a belt, a bar counting seconds."""

    kind = "video"

    def __init__(self, clock: MarkClock) -> None:
        super().__init__()
        self.clock, self.sent = clock, 0
        rows = numpy.linspace(0, 1, HEIGHT)[:, None, None]
        top, bottom = numpy.array([52, 64, 78]), numpy.array([24, 30, 38])
        self.background = (top * (1 - rows) + bottom * rows).repeat(WIDTH, axis=1).astype(numpy.uint8)
        self.background[250:290] = (70, 76, 84)  # the belt
        self.background[250:252] = self.background[288:290] = (120, 128, 138)

    async def recv(self) -> av.VideoFrame:
        start = self.clock.begin()
        t = self.sent / FPS
        await asyncio.sleep(max(0.0, start + t - time.monotonic()))
        image = self.background.copy()
        x = int((t * 90) % (WIDTH + 200)) - 160  # the parcel, 160 px wide
        left, right = max(x, 0), min(x + 160, WIDTH)
        if right > left:
            image[150:250, left:right] = (181, 137, 78)
            image[150:160, left:right] = (150, 110, 60)  # its lid
            tape = slice(max(x + 70, 0), max(min(x + 90, WIDTH), 0))
            image[160:250, tape] = (214, 196, 150)
        image[330:340, 20:20 + int((t % 10) / 10 * (WIDTH - 40))] = (10, 102, 194)  # seconds
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self.sent * (90000 // FPS)
        frame.time_base = fractions.Fraction(1, 90000)
        self.sent += 1
        return frame


async def record_session(node) -> tuple[str, dict]:
    """A recorded inspection: returns the recording id and the admin's audit.get reply."""
    admin = await DockcastClient.connect(node.url, node.token("wms", None, ("admin",)))
    marks = MarkClock()
    camera = Participant(node.url, node.token("warehouse-cam-1", room="dock-7"))
    seller = Participant(node.url, node.token("seller-li", room="dock-7", grants=("subscribe", "message")))
    try:
        await admin.shipment_upsert("RMA-2041", tracking_no="1Z999AA10123456784", carrier="UPS")
        await admin.room_create("dock-7", shipment_id="RMA-2041", record=True)
        await admin.shipment_event("RMA-2041", "return_received", "bay 4, pallet 12")
        await camera.connect()
        await camera.join("dock-7")
        await camera.publish(video_track=ParcelVideoTrack(marks), audio_track=BeepAudioTrack(marks))
        await seller.connect()
        await seller.join("dock-7")
        await asyncio.sleep(3)
        await seller.request("send", topic="chat", payload={"text": "Box 3: corner crushed"}, msg_id="m1")
        await admin.shipment_event("RMA-2041", "inspected", "corner crushed, screen intact")
        await asyncio.sleep(3)
        await admin.inspection_verdict("dock-7", "partial", refund=12.5, note="corner dented")
        await asyncio.sleep(2)
        stopped = await admin.recording_stop("dock-7")
        audit = await admin.audit_get(stopped["session_id"])
        return stopped["recording_id"], audit
    finally:
        for peer in (seller, camera):
            await peer.close()
        await admin.close()


async def open_playback(browser, node, recording_id: str, *, viewport=DESKTOP, mobile=False):  # noqa: F811
    context = await browser.new_context(viewport=viewport, is_mobile=mobile, has_touch=mobile,
                                        locale="en-US", device_scale_factor=1)
    page = await context.new_page()
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(f"pageerror: {error}"))
    page.on("console", lambda m: page.problems.append(m.text) if "Content Security Policy" in m.text else None)
    token = node.token("wms", None, ("admin",))
    await page.goto(f"{node.http}/playback/?" + urllib.parse.urlencode({"token": token, "recording": recording_id}))
    await wait_for(page, "window.dockcastPlayback && dockcastPlayback.state === 'ready'", 60)
    await wait_for(page, "document.querySelectorAll('#timeline li[data-type=checkpoint] .sig').length > 0")
    return page


async def test_a_recording_plays_beside_its_audit_timeline(node, browser):  # noqa: F811
    recording_id, audit = await record_session(node)
    admin = await DockcastClient.connect(node.url, node.token("wms", None, ("admin",)))
    try:
        link = await admin.recording_media(recording_id)
    finally:
        await admin.close()
    media_start = link["media_start"]
    [verdict] = [e for e in audit["entries"] if e["type"] == "verdict"]

    page = await open_playback(browser, node, recording_id)
    # the token left the address bar; the recording stays
    assert "token=" not in page.url and f"recording={recording_id}" in page.url
    # the timeline: the joins, the messages' hashes, the shipment, the verdict, signed checkpoints
    rows = page.locator("#timeline li")
    joins = page.locator("#timeline li[data-type=participant_joined]")
    assert await joins.count() == 2
    assert "warehouse-cam-1" in await joins.nth(0).inner_text() and "seller-li" in await joins.nth(1).inner_text()
    verdict_row = page.locator("#timeline li[data-type=verdict]")
    assert "Partial refund" in await verdict_row.inner_text() and "12.50" in await verdict_row.inner_text()
    assert "sha256" in await page.locator("#timeline li[data-type=message]").inner_text()
    shipment = await page.locator("#timeline li[data-type=shipment_event]").all_inner_texts()
    assert any("Inspected" in text and "corner crushed" in text for text in shipment), shipment
    signatures = await page.locator("#timeline li[data-type=checkpoint] .sig").all_inner_texts()
    assert signatures and set(signatures) == {"signature valid"}, signatures
    # (the session goes on after audit.get above: the participants left since)
    assert await rows.count() >= len(audit["entries"]) + len(audit["checkpoints"])

    # play from the first join: time advances on a picture of the publisher's size
    await joins.nth(0).locator("button").click()
    await wait_for(page, "dockcastPlayback.video.currentTime > 0.5 && !dockcastPlayback.video.paused")
    first = await page.evaluate("dockcastPlayback.video.currentTime")
    await wait_for(page, f"dockcastPlayback.video.currentTime > {first + 1.0}")
    size = await page.evaluate("[dockcastPlayback.video.videoWidth, dockcastPlayback.video.videoHeight]")
    assert size == [WIDTH, HEIGHT]

    # clicking the verdict seeks to its moment: its ts minus the media's start
    expected = verdict["ts"] - media_start
    assert 4 < expected < await page.evaluate("dockcastPlayback.video.duration")
    await verdict_row.locator("button").click()
    await wait_for(page, f"Math.abs(dockcastPlayback.video.currentTime - {expected}) < 0.75")
    await page.evaluate("dockcastPlayback.video.pause()")
    await wait_for(page, "document.querySelector('#timeline li[aria-current]') !== null")
    assert await page.evaluate("document.querySelector('#timeline li[aria-current]').dataset.type") == "verdict"
    assert page.problems == []
    await no_overflow(page)
    await verdict_row.evaluate("(li) => li.scrollIntoView({block: 'center'})")  # and its checkpoint
    await page.mouse.move(5, 5)  # no row under the pointer
    await shoot(page, "playback.png")

    phone = await open_playback(browser, node, recording_id, viewport=PHONE, mobile=True)
    # upright phone: the video above the timeline, the page no wider than the screen
    video_box = await phone.locator("#video").bounding_box()
    list_box = await phone.locator("#timeline").bounding_box()
    assert video_box["y"] + video_box["height"] <= list_box["y"] + 1
    await no_overflow(phone)
    await phone.locator("#timeline li[data-type=verdict] button").click()
    await wait_for(phone, f"Math.abs(dockcastPlayback.video.currentTime - {expected}) < 0.75")
    await phone.evaluate("dockcastPlayback.video.pause()")
    # scrolled down the timeline, the video stays on top
    await phone.locator("#timeline li[data-type=verdict]").evaluate("(li) => li.scrollIntoView({block: 'center'})")
    assert (await phone.locator("#video").bounding_box())["y"] >= 0
    assert phone.problems == []
    await shoot(phone, "playback-phone.png")
    # in Chinese: the page's words and the console's (verdicts, shipment statuses)
    await phone.click("#lang")
    assert await phone.locator(".audit-head h2").inner_text() == "审计时间线"
    assert "部分退款" in await phone.locator("#timeline li[data-type=verdict]").inner_text()
    assert "签名有效" in await phone.locator("#timeline li[data-type=checkpoint]").nth(0).inner_text()


async def test_without_the_admin_grant_the_video_plays_and_the_timeline_says_why(node, browser):  # noqa: F811
    admin = await DockcastClient.connect(node.url, node.token("wms", None, ("admin",)))
    camera = Participant(node.url, node.token("warehouse-cam-1", room="dock-7"))
    try:
        await admin.room_create("dock-7")
        await camera.connect()
        await camera.join("dock-7")
        await camera.publish(video_track=ParcelVideoTrack(MarkClock()), audio=False)
        started = await admin.recording_start("dock-7")
        await asyncio.sleep(2)
        await admin.recording_stop("dock-7")
    finally:
        await camera.close()
        await admin.close()
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    token = node.token("desk-7", "dock-7", ("record",))
    await page.goto(f"{node.http}/playback/#" + urllib.parse.urlencode(
        {"token": token, "recording": started["recording_id"]}))
    await wait_for(page, "window.dockcastPlayback && dockcastPlayback.state === 'ready'", 60)
    note = page.locator("#timeline-note")
    await note.wait_for(state="visible")
    assert "admin grant" in await note.inner_text()
    assert await page.evaluate("dockcastPlayback.video.videoWidth") == WIDTH
    # another room's token reaches nothing: the page says the recording is not there
    other = await context.new_page()
    await other.goto(f"{node.http}/playback/?" + urllib.parse.urlencode(
        {"token": node.token("desk-9", "dock-9", ("record",)), "recording": started["recording_id"]}))
    await wait_for(other, "window.dockcastPlayback && dockcastPlayback.state === 'error'")
    assert "does not exist" in await other.locator("#problem-text").inner_text()


async def test_the_console_links_a_stopped_recording_to_the_playback_page(node, browser):  # noqa: F811
    admin = await DockcastClient.connect(node.url, node.token("wms", None, ("admin",)))
    try:
        await admin.room_create("dock-8")
        seller = await open_console(browser, console_url(node, "seller-1", "dock-8", INSPECTOR, "Li Wei"))
        await seller.click("#tab-inspection")
        assert await seller.locator("#rec-watch").is_hidden()
        await seller.click("#rec-button")
        await seller.locator("#rec-button[data-recording=true]").wait_for()
        await media_rising(seller)  # its own camera is being recorded meanwhile
        await asyncio.sleep(2)
        await seller.click("#rec-button")
        await seller.locator("#rec-button[data-recording=false]").wait_for()
        [recording] = (await admin.recording_list(room="dock-8"))["recordings"]
        watch = seller.locator("#rec-watch")
        await watch.wait_for(state="visible")
        href = await watch.get_attribute("href")
        assert href.startswith(f"/playback/?recording={recording['recording_id']}#token=")
        async with seller.context.expect_page() as opened:
            await watch.click()
        page = await opened.value
        await wait_for(page, "window.dockcastPlayback && dockcastPlayback.state === 'ready'", 60)
        assert await page.evaluate("dockcastPlayback.video.videoWidth") > 0
        assert "token=" not in page.url
    finally:
        await admin.close()
