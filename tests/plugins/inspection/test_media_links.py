"""Media links: signing and checking, the key file, and the HTTP handler end to end on
a real recording (VP8/Opus fed through the plugin in-process, exported with PyAV)."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import time
import urllib.parse

import av
import pytest

from plugins.inspection.media_links import (
    KEY_FILE,
    LINK_PATH,
    LINK_TTL_S,
    LinkSigner,
    MediaLinkKeyError,
    load_or_create_link_key,
)
from plugins.recorder import Manifest
from signalling.errors import Conflict, NotFound

from .conftest import Conn
from .test_plugin import publish_and_feed

NOW = 1_800_000_000.0


def query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


# -- signing -----------------------------------------------------------------------------

def test_a_link_checks_until_it_expires():
    signer = LinkSigner(b"k" * 32)
    url, expires_at = signer.sign("RC_0123abcd", NOW)
    assert url.startswith(f"{LINK_PATH}?id=RC_0123abcd&exp={expires_at}&sig=")
    assert expires_at == int(NOW) + LINK_TTL_S == int(NOW) + 600
    assert signer.check(query(url), NOW) == "RC_0123abcd"
    assert signer.check(query(url), expires_at - 0.5) == "RC_0123abcd"
    assert signer.check(query(url), expires_at) is None
    assert signer.check(query(url), expires_at + 3600) is None


def test_a_tampered_link_or_another_keys_is_refused():
    signer = LinkSigner(b"k" * 32)
    url, expires_at = signer.sign("RC_0123abcd", NOW)
    good = query(url)
    other, _ = signer.sign("RC_ffffffff", NOW)
    tampered = [
        {**good, "id": "RC_ffffffff"},  # another recording with this one's signature
        {**good, "sig": query(other)["sig"]},  # this recording with another's signature
        {**good, "exp": str(expires_at + 3600)},  # a longer life
        {**good, "sig": good["sig"][:-1] + ("A" if good["sig"][-1] != "A" else "B")},
        {**good, "sig": ""}, {**good, "sig": "é" * 43}, {"id": good["id"], "exp": good["exp"]},
        {**good, "id": "../../etc/passwd"}, {**good, "exp": "-1"}, {}]
    for fields in tampered:
        assert signer.check(fields, NOW) is None, fields
    assert LinkSigner(b"x" * 32).check(good, NOW) is None
    with pytest.raises(ValueError):
        signer.sign("../RC_1", NOW)


def test_the_key_is_made_once_private_and_refused_when_others_may_read_it(tmp_path):
    key = load_or_create_link_key(tmp_path)
    path = tmp_path / KEY_FILE
    assert len(key) == 32 and load_or_create_link_key(tmp_path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    os.chmod(path, 0o644)
    with pytest.raises(MediaLinkKeyError, match="chmod 600"):
        load_or_create_link_key(tmp_path)
    os.chmod(path, 0o600)
    path.write_bytes(b"short")
    with pytest.raises(MediaLinkKeyError, match="5 bytes"):
        load_or_create_link_key(tmp_path)


# -- end to end --------------------------------------------------------------------------

@pytest.fixture
def clock():
    now = [time.time()]
    return now


async def recorded(ctx, start_plugin, clock, room="dock-1"):
    """A plugin whose clock is ``clock[0]`` and a stopped recording of two seconds of VP8
    and Opus in ``room``."""
    plugin = await start_plugin(clock=lambda: clock[0])
    await ctx.open_room(room, record=True)
    await ctx.events.drain()
    await publish_and_feed(ctx, room)
    stopped = await ctx.request("recording.stop", room=room)
    return plugin, stopped


async def test_a_link_serves_the_export_whole_and_in_ranges(ctx, start_plugin, clock):
    plugin, stopped = await recorded(ctx, start_plugin, clock)
    rid = stopped["recording_id"]
    link = await ctx.request("recording.media", recording_id=rid)
    assert link["type"] == "media_link" and link["container"] == "webm"
    assert link["expires_at"] == int(clock[0]) + 600 and query(link["url"])["id"] == rid
    manifest = Manifest.read(plugin.recordings_dir / rid)
    assert link["media_start"] == min(t.segments[0].started_at for t in manifest.tracks)
    assert stopped["started_at"] / 1000 <= link["media_start"] + 0.001

    whole = await ctx.http("GET", link["url"])
    assert whole.status == 200 and whole.content_type == "video/webm"
    headers = dict(whole.headers)
    assert headers["Accept-Ranges"] == "bytes" and headers["Cache-Control"] == "private, no-store"
    with av.open(io.BytesIO(whole.body)) as media:
        kinds = sorted(s.type for s in media.streams)
        codecs = sorted(s.codec_context.name for s in media.streams)
        video = sum(1 for _ in media.decode(video=0))
    assert kinds == ["audio", "video"] and codecs == ["opus", "vp8"]
    assert video == 60  # every frame the publisher sent
    export = ctx.data_dir / "exports" / f"{rid}.webm"
    assert export.read_bytes() == whole.body
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    assert stat.S_IMODE(export.parent.stat().st_mode) == 0o700

    size = len(whole.body)
    part = await ctx.http("GET", link["url"], {"Range": "bytes=100-1099"})
    assert part.status == 206 and part.body == whole.body[100:1100]
    assert dict(part.headers)["Content-Range"] == f"bytes 100-1099/{size}"
    tail = await ctx.http("GET", link["url"], {"Range": "bytes=-10"})
    assert tail.status == 206 and tail.body == whole.body[-10:]
    outside = await ctx.http("GET", link["url"], {"Range": f"bytes={size}-"})
    assert outside.status == 416 and dict(outside.headers)["Content-Range"] == f"bytes */{size}"
    head = await ctx.http("HEAD", link["url"])
    assert head.status == 200 and head.body == b"" and head.content_type == "video/webm"
    assert (await ctx.http("POST", link["url"])).status == 405


async def test_a_bad_or_expired_link_is_403_without_details(ctx, start_plugin, clock):
    _, stopped = await recorded(ctx, start_plugin, clock)
    link = await ctx.request("recording.media", recording_id=stopped["recording_id"])
    fields = query(link["url"])
    for changed in ({**fields, "sig": fields["sig"][::-1]}, {**fields, "id": "RC_0000000000000000"},
                    {k: v for k, v in fields.items() if k != "sig"}):
        reply = await ctx.http("GET", f"{LINK_PATH}?{urllib.parse.urlencode(changed)}")
        assert (reply.status, reply.body) == (403, b"forbidden\n")
    clock[0] += 601
    reply = await ctx.http("GET", link["url"])
    assert (reply.status, reply.body) == (403, b"forbidden\n")


async def test_links_follow_the_tokens_room_and_the_recordings_state(ctx, start_plugin, clock):
    plugin, stopped = await recorded(ctx, start_plugin, clock)
    rid = stopped["recording_id"]
    await ctx.open_room("dock-2")
    theirs = Conn("desk-2", room="dock-2", record=True)
    with pytest.raises(NotFound):  # as if it did not exist
        await ctx.request("recording.media", conn=theirs, recording_id=rid)
    mine = Conn("desk-1", room="dock-1", record=True)
    assert (await ctx.request("recording.media", conn=mine, recording_id=rid))["type"] == "media_link"
    with pytest.raises(NotFound):
        await ctx.request("recording.media", recording_id="RC_0000000000000000")

    under_way = await ctx.request("recording.start", room="dock-2")
    with pytest.raises(Conflict):
        await ctx.request("recording.media", recording_id=under_way["recording_id"])
    url, _ = plugin.media.signer.sign(under_way["recording_id"], clock[0])
    assert (await ctx.http("GET", url)).status == 409

    # deleted: the link is 404 and the export is gone with the recording
    link = await ctx.request("recording.media", recording_id=rid)
    assert (await ctx.http("GET", link["url"])).status == 200
    await ctx.request("recording.delete", recording_id=rid)
    assert (await ctx.http("GET", link["url"])).status == 404
    assert not (ctx.data_dir / "exports" / f"{rid}.webm").exists()


async def test_an_export_under_way_is_503_then_served(ctx, start_plugin, clock):
    plugin, stopped = await recorded(ctx, start_plugin, clock)
    plugin.media.export_wait_s = 0  # answer at once instead of waiting for the export
    link = await ctx.request("recording.media", recording_id=stopped["recording_id"])
    busy = await ctx.http("GET", link["url"])
    assert busy.status == 503 and dict(busy.headers)["Retry-After"] == "3"
    await asyncio.wait_for(asyncio.gather(*plugin.media._exports.values()), 60)
    assert (await ctx.http("GET", link["url"])).status == 200
