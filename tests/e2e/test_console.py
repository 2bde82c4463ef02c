"""The inspection console (``/``) in headless Chromium against a real node.

Pages open the console with ``?token=...&room=...`` as a user would; the tests read the
page's state through ``window.dockcastConsole`` (the app) and its DOM. Screenshots of
the desktop, phone and Chinese layouts are screenshotted (into ``docs/screenshots/`` with
DOCKCAST_SCREENSHOTS=1).
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import urllib.error
import urllib.parse
import urllib.request

import jwt
import pytest

from signalling.client import DockcastClient
from signalling.tokens import mint_token

from .conftest import API_KEY, API_SECRET, ROOT
from .test_browser import browser  # noqa: F401 - a fixture
from .test_js_media import CuttableProxy
from .test_readme import dev_node  # noqa: F401 - a fixture: a node on development credentials

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

# The screenshots are taken on every run (the layouts must render); they replace the
# ones in docs/ only when asked (DOCKCAST_SCREENSHOTS=1), so a test run leaves the tree clean.
SHOTS = (ROOT / "docs" / "screenshots" if os.environ.get("DOCKCAST_SCREENSHOTS") == "1"
         else pathlib.Path(tempfile.gettempdir()) / "dockcast-screenshots")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
CAMERA = ("publish", "subscribe", "message")
INSPECTOR = ("publish", "subscribe", "message", "record", "admin")


async def wait_for(page, expression: str, timeout: float = 30) -> None:
    """Wait until ``expression`` is truthy in the page (as a function: the console's
    Content-Security-Policy forbids the eval of a bare expression)."""
    await page.wait_for_function(f"() => ({expression})", timeout=timeout * 1000)


def console_url(node, identity: str, room: str, grants, name: str | None = None, ws_url: str | None = None) -> str:
    token = mint_token(API_KEY, API_SECRET, identity, room=room, grants=grants, ttl=600, name=name)
    query = {"token": token, "room": room, **({"url": ws_url} if ws_url else {})}
    return f"{node.http}/?" + urllib.parse.urlencode(query)


async def open_console(browser, url: str, *, viewport=DESKTOP, mobile=False, locale="en-US"):  # noqa: F811
    """A page of its own context (its own storage) at ``url``, joined; page errors and
    CSP violations are kept in ``page.problems``."""
    context = await browser.new_context(viewport=viewport, is_mobile=mobile, has_touch=mobile,
                                        locale=locale, device_scale_factor=1)
    page = await context.new_page()
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(f"pageerror: {error}"))
    page.on("console", lambda m: page.problems.append(m.text) if "Content Security Policy" in m.text else None)
    await page.goto(url)
    await wait_for(page, "window.dockcastConsole && dockcastConsole.room && dockcastConsole.client.state === 'connected'")
    return page


FRAMES = """async () => {
  const totals = { video: 0, audio: 0 };
  const sub = dockcastConsole.client.sub;
  for (const s of sub ? (await sub.getStats()).values() : []) {
    if (s.type !== "inbound-rtp") continue;
    if (s.kind === "video") totals.video += s.framesDecoded || 0;
    if (s.kind === "audio") totals.audio += s.packetsReceived || 0;
  }
  return totals;
}"""


async def media_rising(page, video_above: int = 0, audio_above: int = 0, timeout: float = 40):
    """Wait until the page has decoded more than ``video_above`` frames and received
    more than ``audio_above`` audio packets; return the totals."""
    await wait_for(page, f"({FRAMES})().then((t) => t.video > {video_above} && t.audio > {audio_above})", timeout)
    return await page.evaluate(FRAMES)


async def tile_of(page, identity_text: str):
    return page.locator(".tile:not([data-self])", has_text=identity_text)


async def shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    await page.screenshot(path=str(SHOTS / name))


async def no_overflow(page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    viewport = await page.evaluate("window.innerWidth")
    assert width <= viewport, f"the page is {width}px wide in a {viewport}px viewport"


async def test_two_consoles_call_with_shipment_recording_and_grants(node, browser):  # noqa: F811
    admin = await DockcastClient.connect(node.url, node.token("wms", None, ("admin",)))
    pages = []
    try:
        await admin.shipment_upsert("RMA-2041", tracking_no="1Z999AA10123456784", carrier="UPS",
                                    origin="Los Angeles, US", destination="Shenzhen, CN",
                                    stage="return inspection", eta="2026-12-09")
        await admin.room_create("dock-7", shipment_id="RMA-2041")
        await admin.shipment_event("RMA-2041", "return_requested", "customer: screen cracked")
        await admin.shipment_event("RMA-2041", "warehouse_received", "bay 4, pallet 12")

        camera = await open_console(browser, console_url(node, "warehouse-cam-1", "dock-7", CAMERA, "Warehouse LA · bay 4"))
        seller = await open_console(browser, console_url(node, "seller-1", "dock-7", INSPECTOR, "Li Wei"))
        pages += [camera, seller]
        # each decodes the other's video and receives its audio, shown in its tile
        for page, other in ((camera, "Li Wei"), (seller, "Warehouse LA")):
            first = await media_rising(page, 10, 50)
            await media_rising(page, first["video"] + 15, first["audio"] + 50)
            await (await tile_of(page, other)).locator("video").wait_for()
            assert await (await tile_of(page, other)).get_attribute("data-has-video") is not None
        # both tiles show a measured connection, and someone is the active speaker (the
        # fake microphone beeps)
        await wait_for(seller, "document.querySelectorAll('.tile[data-quality=good]').length === 2")
        await wait_for(seller, "document.querySelector('.tile[data-speaking]') !== null")

        # grants: the camera sees no recording or verdict controls, the inspector both
        assert await camera.locator("#tab-inspection").is_hidden()
        assert await camera.locator("#rec-button").is_hidden() and await camera.locator("#verdict-box").is_hidden()
        await seller.click("#tab-inspection")
        assert await seller.locator("#rec-button").is_visible() and await seller.locator("#verdict-box").is_visible()

        # recording: the button starts one, every page hears recording_started
        await seller.click("#rec-button")
        await seller.locator("#rec-button[data-recording=true]").wait_for()
        await camera.locator("#rec-badge").wait_for(state="visible")
        [recording] = (await admin.recording_list(room="dock-7"))["recordings"]
        assert recording["state"] == "recording"
        assert await seller.evaluate("dockcastConsole.inspection.recording.recording_id") == recording["recording_id"]

        # messages both ways, each of ours delivered
        await camera.click("#tab-chat")
        await camera.fill("#chat-input", "Box 3: corner crushed, screen intact")
        await camera.press("#chat-input", "Enter")
        await camera.locator(".msg.mine[data-status=delivered]").wait_for()
        await seller.locator(".msg:not(.mine)", has_text="corner crushed").wait_for(state="attached")
        assert await seller.locator("#chat-unread").text_content() == "1"  # read elsewhere: counted
        await seller.click("#tab-chat")
        assert await seller.locator("#chat-unread").is_hidden()
        await seller.fill("#chat-input", "Thanks. Please show the serial label")
        await seller.click("#chat-form button[type=submit]")
        await seller.locator(".msg.mine[data-status=delivered]").wait_for()
        await camera.locator(".msg:not(.mine)", has_text="serial label").wait_for()

        # an admin's warning reaches both consoles as an alert (panel and notice)
        await admin.shipment_event("RMA-2041", "import_customs_hold", "commercial invoice missing", "warning")
        for page in pages:
            await page.locator(".notice[data-notice=alert]", has_text="commercial invoice missing").wait_for()
            await page.click("#tab-shipment")
            await page.locator("#ship-alerts .alert[data-severity=warning]", has_text="commercial invoice").wait_for()
            assert await page.locator("#ship-history .event").count() >= 1
        assert await seller.locator(".ship-id").text_content() == "RMA-2041"

        # the verdict: a partial refund needs an amount, then it is recorded
        await seller.click("#tab-inspection")
        await seller.click("button[data-verdict=partial]")
        await seller.locator("#verdict-result[data-kind=error]").wait_for()
        await seller.fill("#refund", "25.50")
        await seller.fill("#verdict-note", "corner damage; resell as open box")
        await seller.click("button[data-verdict=partial]")
        await seller.locator("#verdict-result[data-kind=ok]", has_text="25.50").wait_for()

        await seller.click("#tab-shipment")
        await shoot(seller, "console-desktop.png")
        await no_overflow(seller)

        # Chinese, chosen by the button and remembered
        await seller.click("#lang")
        assert await seller.evaluate("document.documentElement.lang") == "zh-CN"
        assert await seller.locator("#tab-chat").text_content() == "消息"
        assert await seller.evaluate("localStorage.getItem('dockcast.console.lang')") == "zh"
        assert "进口海关扣留" in await seller.locator("#ship-history").text_content()
        await shoot(seller, "console-zh.png")
        for page in pages:
            assert page.problems == []
    finally:
        for page in pages:
            await page.context.close()
        await admin.close()


async def test_grants_without_record_or_admin(node, browser):  # noqa: F811
    member = await open_console(browser, console_url(node, "viewer-1", "dock-g", ("subscribe",)))
    recorder = await open_console(browser, console_url(node, "qa-1", "dock-g", ("subscribe", "message", "record")))
    try:
        assert await member.locator("#tab-inspection").is_hidden()
        assert await member.locator("#chat-form").is_hidden() and await member.locator("#chat-readonly").is_visible()
        await recorder.click("#tab-inspection")
        assert await recorder.locator("#rec-button").is_visible()
        assert await recorder.locator("#verdict-box").is_hidden()
    finally:
        await member.context.close()
        await recorder.context.close()


async def test_phone_upright_publishes_switches_camera_and_sends(node, browser):  # noqa: F811
    phone = await open_console(browser, console_url(node, "warehouse-cam-2", "dock-p", CAMERA, "Bay 2 phone"),
                               viewport=PHONE, mobile=True)
    desk = await open_console(browser, console_url(node, "seller-2", "dock-p", ("subscribe", "message"), "Chen Jing"))
    try:
        before = await media_rising(desk, 10)
        await phone.locator("#switch").wait_for(state="visible")
        old = await phone.evaluate("dockcastConsole.local.video.id")
        await phone.tap("#switch")
        await wait_for(phone, f"dockcastConsole.local.facing === 'environment' && dockcastConsole.local.video.id !== {json.dumps(old)}")
        # the published track is the new camera (replaceTrack), and the seller still decodes
        assert await phone.evaluate(
            "dockcastConsole.client.publications.some((p) => p.track === dockcastConsole.local.video && p.trackId)")
        await media_rising(desk, before["video"] + 30)

        await phone.tap("#chat-input")
        await phone.fill("#chat-input", "Unit on the table, opening it now")
        await phone.tap("#chat-form button[type=submit]")
        await phone.locator(".msg.mine[data-status=delivered]").wait_for()
        await desk.locator(".msg:not(.mine)", has_text="opening it now").wait_for()

        # upright: the stage above the panels, nothing wider than the screen
        stage = await phone.locator(".stage").bounding_box()
        side = await phone.locator(".side").bounding_box()
        assert stage["y"] + stage["height"] <= side["y"] + 1 and side["y"] + side["height"] <= PHONE["height"] + 1
        await no_overflow(phone)
        await shoot(phone, "console-phone.png")
        # sideways: side by side
        await phone.set_viewport_size({"width": PHONE["height"], "height": PHONE["width"]})
        await wait_for(phone, "document.querySelector('.side').getBoundingClientRect().left > "
                              "document.querySelector('.stage').getBoundingClientRect().right - 1")
        await no_overflow(phone)
        await shoot(phone, "console-phone-sideways.png")
        assert phone.problems == [] and desk.problems == []
    finally:
        await phone.context.close()
        await desk.context.close()


async def test_a_cut_websocket_shows_reconnecting_and_comes_back(node, browser):  # noqa: F811
    # the seller's signalling goes through a relay the test cuts with no close frame (a
    # network drop); its peer connections go to the node directly and stay up
    proxy = await CuttableProxy(node.port).start()
    camera = await open_console(browser, console_url(node, "warehouse-cam-3", "dock-r", CAMERA))
    seller = await open_console(browser, console_url(node, "seller-3", "dock-r", ("subscribe", "message"),
                                                     ws_url=f"ws://127.0.0.1:{proxy.port}/ws"))
    try:
        await media_rising(seller, 10)
        participant = await seller.evaluate("dockcastConsole.client.participantId")
        # the reconnect waits 2.5 s, long enough for the indicators to be seen
        await seller.evaluate("""() => {
          const c = dockcastConsole.client;
          c.reconnect = { ...c.reconnect, initialDelayMs: 2500, jitter: 0 };
          window.seen = { pill: [], tile: [] };
          const pill = document.getElementById('conn');
          new MutationObserver(() => seen.pill.push(pill.dataset.state)).observe(pill, { attributes: true });
          const tile = document.querySelector('.tile:not([data-self])');
          new MutationObserver(() => seen.tile.push(tile.dataset.quality)).observe(tile, { attributes: true });
        }""")
        before = await seller.evaluate(FRAMES)
        proxy.cut()
        await wait_for(seller, "seen.pill.includes('reconnecting') && seen.tile.includes('reconnecting')")
        # media keeps flowing while the websocket is down
        during = await media_rising(seller, before["video"] + 10)
        await wait_for(seller, "dockcastConsole.client.state === 'connected' && seen.pill.at(-1) === 'connected'")
        await wait_for(seller, "document.querySelector('.tile:not([data-self])').dataset.quality === 'good'")
        assert await seller.evaluate("dockcastConsole.client.participantId") == participant
        await media_rising(seller, during["video"] + 15)
        assert await seller.locator(".notice[data-notice=connection]").count() == 0
        assert seller.problems == []
    finally:
        await camera.context.close()
        await seller.context.close()
        await proxy.close()


def _http(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_dev_page_is_absent_on_real_credentials(node):
    assert _http(node.http + "/dev")[0] == 404
    assert _http(node.http + "/dev/token?identity=a&room=b&grants=admin", "POST")[0] == 404
    status, headers, body = _http(node.http + "/")
    assert status == 200 and b'src="/console/console.js"' in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]


async def test_dev_page_mints_tokens_and_links_the_console(dev_node, browser):  # noqa: F811
    port, secret = dev_node
    base = f"http://127.0.0.1:{port}"
    status, headers, body = _http(base + "/dev")
    assert status == 200 and "default-src 'self'" in headers["Content-Security-Policy"]
    status, _, body = _http(base + "/dev/token?identity=qa&room=dock-9&grants=subscribe,record", "POST")
    minted = json.loads(body)
    claims = jwt.decode(minted["token"], secret, algorithms=["HS256"])
    assert (status, claims["sub"], claims["room"]) == (200, "qa", "dock-9")
    assert claims["grants"]["record"] and not claims["grants"]["publish"]
    assert minted["url"].startswith("/?") and "room=dock-9" in minted["url"]
    assert _http(base + "/dev/token?identity=qa&room=dock-9&grants=root", "POST")[0] == 400
    assert _http(base + "/dev/token?identity=qa&room=dock-9", "POST", {"Origin": "http://evil.example"})[0] == 403
    assert _http(base + "/dev/token")[0] == 405

    context = await browser.new_context(viewport=DESKTOP)
    try:
        page = await context.new_page()
        await page.goto(base + "/dev")
        camera_link = page.locator("a[data-role=camera]")
        await camera_link.wait_for()
        href = await camera_link.get_attribute("href")
        assert href.startswith("/?") and "room=dock-7" in href
        await shoot(page, "dev-page.png")
        await page.goto(base + href)
        await wait_for(page, "window.dockcastConsole && dockcastConsole.room && dockcastConsole.client.state === 'connected'")
        assert await page.evaluate("dockcastConsole.welcome.identity") == "warehouse-cam-1"
        assert "token=" not in page.url  # taken out of the address bar
    finally:
        await context.close()
