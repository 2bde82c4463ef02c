"""Simulcast from headless Chromium through a node: three VP8 layers (rid q/h/f, L1T3,
1280x720 fake camera scaled by 4, 2 and 1), two aiortc subscribers on different
layers, and a subscriber moved between layers mid-stream without a freeze."""

from __future__ import annotations

import asyncio
import time
from itertools import pairwise

import pytest
from aiortc.mediastreams import MediaStreamError

from bench.browser import PUBLISH_SIMULCAST

from .peer import Participant, Subscription
from .test_browser import browser  # noqa: F401 - a fixture
from .waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]



class Sized(Subscription):
    """A subscription that keeps each decoded frame's arrival time, size and timestamp."""

    def __init__(self, track) -> None:
        self.sizes: list[tuple[float, int, int]] = []
        super().__init__(track)

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                self.frames += 1
                self.sizes.append((time.monotonic(), frame.width, frame.height))
                self.pts.append(frame.pts)
        except MediaStreamError:  # the track ended
            pass

    def size(self) -> tuple[int, int] | None:
        return self.sizes[-1][1:] if self.sizes else None

    def longest_gap(self, since: float) -> float:
        """The longest time between two decoded frames after ``since`` (a freeze)."""
        times = [t for t, _, _ in self.sizes if t >= since]
        return max((b - a for a, b in pairwise(times)), default=float("inf"))

    def longest_pts_step(self, since: float) -> float:
        """The longest step, in seconds, between the timestamps of two frames decoded
        after ``since`` (the stream's own clock: a switch must not jump it)."""
        stamps = [pts for (t, _, _), pts in zip(self.sizes, self.pts) if t >= since]
        return max((((b - a) & 0xFFFFFFFF) / 90000 for a, b in pairwise(stamps)), default=float("inf"))


class Viewer(Participant):
    def _on_track(self, track) -> None:
        self.subscriptions[f"{track.kind}:{len(self.subscriptions)}"] = Sized(track)

    def sized(self) -> Sized | None:
        video = self.video()
        return video[0] if video else None


async def test_chromium_simulcast_two_layers_and_a_switch(node, browser):  # noqa: F811
    page = await browser.new_page()
    await page.goto(f"{node.http}/healthz")  # the node's origin, for /web/dockcast.js
    published = await page.evaluate(PUBLISH_SIMULCAST, {
        "url": node.url, "token": node.token("cam-simulcast"), "room": "dock-1"})
    assert "a=simulcast:send q;h;f" in published["offer"]
    assert "a=simulcast:recv q;h;f" in published["answer"]
    assert "rtp-stream-id" in published["answer"]
    track = published["track_id"]

    # Chromium sends its top layer once its own estimate (REMB-bounded) allows it
    async def sending():
        return await page.evaluate("window.t.layers()")

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        layers = await sending()
        if all(layers.get(rid, {}).get("fps", 0) > 0 for rid in "qhf"):
            break
        await asyncio.sleep(0.5)
    assert all(layers.get(rid, {}).get("fps", 0) > 0 for rid in "qhf"), layers
    assert layers["f"]["width"] == 1280 and layers["q"]["width"] == 320

    low, high = Viewer(node.url, node.token("seller-low")), Viewer(node.url, node.token("seller-high"))
    try:
        for viewer in (low, high):
            await viewer.connect()
            await viewer.join()
        await low.request("subscribe", track_ids=[track], max_height=180)
        await high.request("subscribe", track_ids=[track])
        assert await wait_until(lambda: low.sized() and low.sized().size() == (320, 180)
                                and high.sized() and high.sized().size() == (1280, 720), 30), (
            low.sized() and low.sized().size(), high.sized() and high.sized().size())

        # mid-stream, the low one moves up to the middle layer and the high one down to
        # the lowest: neither freezes for a second, by the clock or by the timestamps
        switched_at = time.monotonic()
        await low.request("subscribe", track_ids=[track], max_height=360)
        await high.request("subscribe", track_ids=[track], max_height=180)
        assert await wait_until(lambda: low.sized().size() == (640, 360)
                                and high.sized().size() == (320, 180), 20), (
            low.sized().size(), high.sized().size(), await sending())
        frames = low.sized().frames, high.sized().frames
        assert await wait_until(lambda: low.sized().frames > frames[0] + 30
                                and high.sized().frames > frames[1] + 30, 20)
        for viewer in (low, high):
            assert viewer.sized().longest_gap(switched_at) < 1.0
            assert viewer.sized().longest_pts_step(switched_at) < 1.0
    finally:
        await low.close()
        await high.close()
        await page.close()
    assert "Traceback" not in node.log()
