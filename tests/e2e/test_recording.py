"""An inspection session through a real node: record, audit, verify, export.

An aiortc publisher sends a flash and a beep at the same instants; an admin records the
room, a member sends messages, the admin gives a verdict and stops. The session's audit
log must verify offline with the node's public key, the recording must export to a WebM
that PyAV decodes from a keyframe with every flash within 40 ms of its beep, and a
SIGKILL in the middle of a recording must leave what was written readable and verified.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess
import sys

import pytest

from .marks import BeepAudioTrack, FlashVideoTrack, MarkClock, beeps, flashes, pair_offsets
from .peer import Participant, ProtocolError
from .waiting import wait_until as _wait

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = pathlib.Path(__file__).resolve().parents[2]




def _dockcast(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dockcast.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


async def _marked_publisher(node, room="dock-1") -> tuple[Participant, dict]:
    pub = Participant(node.url, node.token("warehouse-cam", room=room))
    await pub.connect()
    await pub.join(room)
    marks = MarkClock()
    published = await pub.publish(video_track=FlashVideoTrack(marks), audio_track=BeepAudioTrack(marks))
    return pub, published


async def _admin(node) -> Participant:
    admin = Participant(node.url, node.token("wms", room=None, grants=("admin",)))
    await admin.connect()
    return admin


def _segments(entries: list[dict]) -> list[dict]:
    return [e for e in entries if e["type"] == "segment"]


async def test_a_recorded_session_verifies_offline_and_exports_in_sync(node):
    pub, published = await _marked_publisher(node)
    admin = await _admin(node)
    seller = Participant(node.url, node.token("seller", grants=("message",)))
    await seller.connect()
    await seller.join()
    try:
        await admin.request("events.subscribe", rooms=["dock-1"])
        started = await admin.request("recording.start", room="dock-1")
        assert started["state"] == "recording" and started["room"] == "dock-1"
        recording_id, session_id = started["recording_id"], started["session_id"]
        assert (await admin.next_event("recording_started"))["recording_id"] == recording_id
        # a second start is the same recording, not a second one
        assert (await admin.request("recording.start", room="dock-1"))["recording_id"] == recording_id

        for i in range(3):
            await seller.request("send", topic="note", payload={"text": f"box {i} is dented"},
                                 msg_id=f"m{i}")
        await asyncio.sleep(6)  # six marks
        await admin.request("inspection.verdict", room="dock-1", verdict="partial", refund=12.5,
                            note="corner dented")
        with pytest.raises(ProtocolError) as err:
            await admin.request("inspection.verdict", room="dock-1", verdict="partial")
        assert err.value.code == "bad_request"
        stopped = await admin.request("recording.stop", room="dock-1")
        assert stopped["state"] == "stopped" and stopped["recording_id"] == recording_id
        assert (await admin.next_event("recording_stopped"))["recording_id"] == recording_id
        checkpoint = await admin.next_event("audit_checkpoint")
        assert checkpoint["session_id"] == session_id and checkpoint["size"] >= 1

        listed = (await admin.request("recording.list", room="dock-1"))["recordings"]
        assert [r["recording_id"] for r in listed] == [recording_id]
        assert listed[0]["session_id"] == session_id and listed[0]["state"] == "stopped"

        audit = await admin.request("audit.get", session_id=session_id)
        types = [e["type"] for e in audit["entries"]]
        assert types[0] == "session_started"
        for expected in ("recording_started", "segment", "message", "verdict", "recording_stopped"):
            assert expected in types, types
        assert types.index("recording_started") < types.index("recording_stopped")
        assert len([t for t in types if t == "message"]) == 3
        assert {s["track"].rsplit("/", 1)[-1] for s in _segments(audit["entries"])} == {"audio", "video"}
        assert audit["checkpoints"] and audit["checkpoints"][-1]["size"] <= len(audit["entries"])
    finally:
        for p in (seller, pub, admin):
            await p.close()

    node.stop()  # the room closes: the session gets its last checkpoint
    data = node.data_dir
    key = _dockcast("audit", "public-key", "--data-dir", str(data))
    assert key.returncode == 0, key.stderr
    session_dir = data / "audit" / session_id
    verified = _dockcast("audit", "verify", str(session_dir), "--public-key", key.stdout.strip())
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # every file of the session is the node's alone
    for path in [*session_dir.iterdir(), *(data / "recordings" / recording_id).iterdir()]:
        assert path.stat().st_mode & 0o077 == 0, path

    out = data.parent / "inspection.webm"
    exported = _dockcast("export", recording_id, "--out", str(out), "--data-dir", str(data))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    video_marks, keyframes, frames = flashes(str(out))
    assert keyframes[0] is True
    assert frames >= 5 * 30 * 0.8, frames  # 30 fps for more than five seconds, most decoded
    offsets = pair_offsets(video_marks, beeps(str(out)))
    assert len(offsets) >= 4, (video_marks, offsets)
    assert max(abs(o) for o in offsets) <= 0.040, offsets


async def test_sigkill_while_recording_loses_only_the_tail(node_factory):
    node = node_factory.start()
    pub, _ = await _marked_publisher(node)
    admin = await _admin(node)
    try:
        started = await admin.request("recording.start", room="dock-1")
        await asyncio.sleep(3)
    finally:
        await admin.close(abrupt=True)
        await pub.close(abrupt=True)
    node.kill()

    restarted = node_factory.restart(node)
    admin = await _admin(restarted)
    try:
        listed = (await admin.request("recording.list"))["recordings"]
        [recording] = [r for r in listed if r["recording_id"] == started["recording_id"]]
        assert recording["state"] == "stopped"
        audit = await admin.request("audit.get", session_id=started["session_id"])
        types = [e["type"] for e in audit["entries"]]
        assert "session_recovered" in types or types[-1] == "session_closed", types
        assert _segments(audit["entries"]), "the recovered segments are audited"
    finally:
        await admin.close()
    restarted.stop()
    data = restarted.data_dir
    key = _dockcast("audit", "public-key", "--data-dir", str(data)).stdout.strip()
    verified = _dockcast("audit", "verify", str(data / "audit" / started["session_id"]),
                         "--public-key", key)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    manifest = json.loads((data / "recordings" / started["recording_id"] / "recording.json").read_text())
    assert manifest["state"] == "interrupted"  # closed for good, and says it was cut short
    out = data.parent / "recovered.webm"
    exported = _dockcast("export", started["recording_id"], "--out", str(out), "--data-dir", str(data))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    _, keyframes, frames = flashes(str(out))
    assert keyframes[0] is True and frames >= 30, frames


async def test_recording_needs_the_grant_and_the_room(node):
    member = Participant(node.url, node.token("alice"))
    other = Participant(node.url, node.token("bob", room="dock-2", grants=("record",)))
    admin = await _admin(node)
    await member.connect()
    await member.join()
    await other.connect()
    try:
        with pytest.raises(ProtocolError) as err:
            await member.request("recording.start", room="dock-1")
        assert err.value.code == "forbidden"
        with pytest.raises(ProtocolError) as err:
            await other.request("recording.start", room="dock-1")
        assert err.value.code == "forbidden"
        with pytest.raises(ProtocolError) as err:
            await admin.request("recording.stop", room="dock-1")
        assert err.value.code == "not_found"
        with pytest.raises(ProtocolError) as err:
            await admin.request("audit.get", session_id="AS_0000")
        assert err.value.code == "not_found"
        assert (await admin.request("recording.list"))["recordings"] == []
    finally:
        for p in (member, other, admin):
            await p.close()


async def test_a_recording_played_back_into_a_room_decodes(node):
    pub, _ = await _marked_publisher(node)
    admin = await _admin(node)
    viewer = Participant(node.url, node.token("seller", room="dock-9"))
    try:
        started = await admin.request("recording.start", room="dock-1")
        await asyncio.sleep(4)
        await admin.request("recording.stop", room="dock-1")
        await viewer.connect()
        await viewer.join("dock-9")
        with pytest.raises(ProtocolError) as err:  # only a stopped recording plays
            await admin.request("recording.playback", recording_id="RC_nothing", room="dock-9")
        assert err.value.code == "not_found"
        reply = await admin.request("recording.playback", recording_id=started["recording_id"],
                                    room="dock-9")
        assert len(reply["track_ids"]) == 2
        published = [await viewer.next_event("track_published") for _ in range(2)]
        assert {t["track"]["source"] for t in published} == {"playback"}
        await viewer.request("subscribe", track_ids=reply["track_ids"])
        assert await _wait(lambda: viewer.video() and viewer.video()[0].frames >= 30)
        assert await _wait(lambda: viewer.audio() and viewer.audio()[0].frames >= 50)
        assert viewer.first_video_packet_keyframe is True
        # when the recording ends, the playback participant leaves the room
        left = await viewer.next_event("participant_left", timeout=20)
        assert left["identity"] == f"playback:{started['recording_id']}"
    finally:
        for p in (viewer, pub, admin):
            await p.close()


@pytest.mark.browser
async def test_a_chromium_publisher_is_recorded_and_exports(node_factory):
    from .test_browser import CHROMIUM, CHROMIUM_ARGS, page_url, wait_for

    from playwright.async_api import async_playwright

    from .marks import write_capture_files

    node = node_factory.start()
    # the fake camera and microphone play files with the same marks (a flash, a beep)
    video_file, audio_file = write_capture_files(node.data_dir.parent)
    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={video_file}",
            f"--use-file-for-fake-audio-capture={audio_file}"]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        admin = await _admin(node)
        try:
            page = await browser.new_page()
            await page.goto(page_url(node, "publish", "cam-browser"))
            await wait_for(page, "window.dockcast && (window.dockcast.published || window.dockcast.error)")
            assert await page.evaluate("window.dockcast.error") is None
            started = await admin.request("recording.start", room="dock-1")
            await asyncio.sleep(5)
            await admin.request("recording.stop", room="dock-1")
        finally:
            await admin.close()
            await browser.close()
    node.stop()
    out = node.data_dir.parent / "chromium.webm"
    exported = _dockcast("export", started["recording_id"], "--out", str(out),
                         "--data-dir", str(node.data_dir))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    import av

    with av.open(str(out)) as container:
        assert {s.type for s in container.streams} == {"audio", "video"}
    video_marks, keyframes, frames = flashes(str(out))
    assert keyframes[0] is True
    assert frames >= 3 * 10, frames  # Chromium's camera for about five seconds
    # audio and video in sync: each flash within 40 ms of its beep (Chromium starts both
    # files together; what is left is the recording's and the export's doing)
    offsets = pair_offsets(video_marks, beeps(str(out)))
    assert len(offsets) >= 3, (video_marks, offsets)
    assert max(abs(o) for o in offsets) <= 0.040, offsets
