"""InspectionPlugin on real media rooms: recordings, the audit log, verdicts, scopes,
deletion and retention. Tracks are fed real VP8/Opus RTP inside the process."""

from __future__ import annotations

import asyncio
import json

import pytest

from plugins.audit import verify_path, public_key_text, load_or_create_signing_key
from plugins.recorder import Manifest
from recorder.media import opus_packets, vp8_packets
from audit.local_tsa import local_tsa, tsa_authority  # noqa: F401 - fixtures
from recorder.stores import ACCESS_KEY, SECRET_KEY, bucket, s3_client, s3_endpoint  # noqa: F401 - fixtures
from signalling.errors import BadRequest, Conflict, Forbidden, NotFound
from signalling.events import AuditCheckpoint, RecordingStarted, RecordingStopped

from .conftest import OPUS, VP8, Conn, Publication


async def publish_and_feed(ctx, room: str, identity: str = "warehouse-cam", frames: int = 60) -> None:
    """A publisher in ``room`` sends two seconds of VP8 and Opus, as they would arrive."""
    publication = Publication(ctx.media[room], identity)
    video = publication.publisher.publish("video", VP8, source="camera")
    audio = publication.publisher.publish("audio", OPUS, source="microphone")
    await ctx.events.drain()  # the plugin taps the tracks it hears of
    for packet in vp8_packets(frames, keyframes=(0,)):
        video.send(packet.data)
    for packet in opus_packets(frames * 2 // 3):
        audio.send(packet.data)
    return publication


async def test_a_room_created_with_record_records_every_track(ctx, start_plugin):
    plugin = await start_plugin()
    await ctx.open_room("dock-1", shipment_id="S-1", record=True)
    await ctx.events.drain()
    [started] = [e for e in ctx.published if isinstance(e, RecordingStarted)]
    assert started.room == "dock-1" and started.shipment_id == "S-1"
    await publish_and_feed(ctx, "dock-1")
    stopped = await ctx.request("recording.stop", room="dock-1")
    assert stopped["state"] == "stopped" and stopped["recording_id"] == started.recording_id
    assert stopped["tracks"] == ["warehouse-cam/camera/video", "warehouse-cam/microphone/audio"]

    manifest = Manifest.read(plugin.recordings_dir / started.recording_id)
    assert manifest.state == "stopped" and manifest.fields["session_id"] == stopped["session_id"]
    assert {t.key: sum(s.packets for s in t.segments) for t in manifest.tracks} == {
        "warehouse-cam/camera/video": len(vp8_packets(60, keyframes=(0,))),
        "warehouse-cam/microphone/audio": 40}

    audit = await ctx.request("audit.get", session_id=stopped["session_id"])
    types = [e["type"] for e in audit["entries"]]
    assert types[:5] == ["session_started", "recording_started", "participant_joined",
                         "track_published", "track_published"]
    segments = [e for e in audit["entries"] if e["type"] == "segment"]
    assert {s["track"] for s in segments} == set(stopped["tracks"])
    files = {s["file"]: s["sha256"] for s in segments}
    assert files == {s.file: s.sha256 for t in manifest.tracks for s in t.segments}
    assert any(isinstance(e, AuditCheckpoint) and e.session_id == stopped["session_id"]
               for e in ctx.published)
    await ctx.events.drain()
    assert sum(isinstance(e, RecordingStopped) for e in ctx.published) == 1

    # the room closes: the session closes and verifies offline, segments and all
    await ctx.close_room("dock-1")
    await ctx.events.drain()
    key = public_key_text(load_or_create_signing_key(ctx.data_dir))
    report = verify_path(str(ctx.data_dir / "audit" / stopped["session_id"]), key)
    assert report.ok, report.difference
    assert report.segments == len(segments)


async def test_a_publisher_that_comes_back_continues_its_recording_track(ctx, start_plugin):
    plugin = await start_plugin()
    await ctx.open_room("dock-1")
    started = await ctx.request("recording.start", room="dock-1")
    first = await publish_and_feed(ctx, "dock-1", frames=30)
    await first.close()  # the phone dropped
    await ctx.events.drain()
    await publish_and_feed(ctx, "dock-1", frames=30)  # and came back as a new participant
    await ctx.request("recording.stop", room="dock-1")
    manifest = Manifest.read(plugin.recordings_dir / started["recording_id"])
    video = manifest.track("warehouse-cam/camera/video")
    assert len(video.track_ids) == 2 and len(video.segments) == 2
    assert len(video.gaps) == 1
    assert all(s.keyframe_first for s in video.segments)


async def test_verdicts_open_a_session_and_partial_needs_an_amount(ctx, start_plugin):
    await start_plugin()
    await ctx.open_room("dock-2")
    with pytest.raises(BadRequest):
        await ctx.request("inspection.verdict", room="dock-2", verdict="partial")
    with pytest.raises(NotFound):
        await ctx.request("inspection.verdict", room="dock-9", verdict="resellable")
    reply = await ctx.request("inspection.verdict", room="dock-2", verdict="partial", refund=12.5,
                              note="corner dented")
    audit = await ctx.request("audit.get", session_id=reply["session_id"])
    verdict = audit["entries"][-1]
    assert (verdict["type"], verdict["verdict"], verdict["refund"], verdict["by"]) == (
        "verdict", "partial", 12.5, "wms")
    assert audit["checkpoints"][-1]["size"] == len(audit["entries"])


async def test_a_token_for_one_room_reaches_only_that_rooms_recordings(ctx, start_plugin):
    await start_plugin()
    await ctx.open_room("dock-1")
    await ctx.open_room("dock-2")
    mine = Conn("desk-1", room="dock-1", record=True)
    theirs = await ctx.request("recording.start", room="dock-2")
    with pytest.raises(Forbidden):
        await ctx.request("recording.start", conn=mine, room="dock-2")
    ours = await ctx.request("recording.start", conn=mine, room="dock-1")
    listed = await ctx.request("recording.list", conn=mine)
    assert [r["recording_id"] for r in listed["recordings"]] == [ours["recording_id"]]
    with pytest.raises(Forbidden):
        await ctx.request("recording.list", conn=mine, room="dock-2")
    room_admin = Conn("desk-1", room="dock-1", admin=True)
    with pytest.raises(Forbidden):
        await ctx.request("audit.get", conn=room_admin, session_id=theirs["session_id"])
    assert (await ctx.request("audit.get", conn=room_admin, session_id=ours["session_id"]))["entries"]
    with pytest.raises(NotFound):
        await ctx.request("audit.get", session_id="AS_nothing")


async def test_deleting_a_recording_is_itself_audited(ctx, start_plugin):
    plugin = await start_plugin()
    await ctx.open_room("dock-1")
    started = await ctx.request("recording.start", room="dock-1")
    await publish_and_feed(ctx, "dock-1", frames=15)
    with pytest.raises(Conflict):
        await ctx.request("recording.delete", recording_id=started["recording_id"])
    await ctx.request("recording.stop", room="dock-1")
    reply = await ctx.request("recording.delete", recording_id=started["recording_id"])
    assert reply["files"] >= 3 and reply["bytes"] > 0
    assert not (plugin.recordings_dir / started["recording_id"]).exists()
    assert (await ctx.request("recording.list"))["recordings"] == []
    with pytest.raises(NotFound):
        await ctx.request("recording.delete", recording_id=started["recording_id"])
    operations = [s for s in plugin.sessions._by_room.values() if s.room == ""]
    [session] = operations
    audit = await ctx.request("audit.get", session_id=session.session_id)
    deleted = audit["entries"][-1]
    assert deleted["type"] == "recording_deleted"
    assert (deleted["recording_id"], deleted["session_id"]) == (started["recording_id"],
                                                                started["session_id"])
    assert deleted["reason"] == "requested by wms"


async def test_retention_deletes_what_is_older_than_the_limit(ctx, start_plugin):
    now = [1_900_000_000.0]
    plugin = await start_plugin(retention_days=1, clock=lambda: now[0])
    await ctx.open_room("dock-1")
    old = await ctx.request("recording.start", room="dock-1")
    await ctx.request("recording.stop", room="dock-1")
    now[0] += 2 * 86400
    new = await ctx.request("recording.start", room="dock-1")
    await ctx.request("recording.stop", room="dock-1")
    assert await plugin.archive.sweep() == [old["recording_id"]]
    remaining = (await ctx.request("recording.list"))["recordings"]
    assert [r["recording_id"] for r in remaining] == [new["recording_id"]]


async def test_closed_segments_and_the_manifest_go_to_the_object_store(ctx, start_plugin, s3_endpoint, bucket):
    plugin = await start_plugin(s3={"endpoint_url": s3_endpoint, "bucket": bucket, "prefix": "node-1/",
                                    "access_key": ACCESS_KEY, "secret_key": SECRET_KEY})
    await ctx.open_room("dock-1")
    started = await ctx.request("recording.start", room="dock-1")
    await publish_and_feed(ctx, "dock-1", frames=15)
    await ctx.request("recording.stop", room="dock-1")
    directory = plugin.recordings_dir / started["recording_id"]
    local = sorted(p.name for p in directory.iterdir())
    listed = s3_client(s3_endpoint).list_objects_v2(Bucket=bucket, Prefix="node-1/")
    stored = sorted(o["Key"].rsplit("/", 1)[-1] for o in listed["Contents"])
    assert stored == local  # every segment, and recording.json
    assert plugin.archive.pending == []
    # deleting the recording deletes the stored copies too
    await ctx.request("recording.delete", recording_id=started["recording_id"])
    listed = s3_client(s3_endpoint).list_objects_v2(Bucket=bucket, Prefix="node-1/")
    assert listed.get("KeyCount", 0) == 0


async def test_checkpoints_carry_the_time_stamping_authoritys_token(ctx, start_plugin, local_tsa,
                                                                   tsa_authority, tmp_path):
    ca = tmp_path / "tsa-ca.pem"
    ca.write_bytes(tsa_authority.ca_pem)
    await start_plugin(tsa_url=local_tsa.url, tsa_ca_file=str(ca))
    await ctx.open_room("dock-1")
    reply = await ctx.request("inspection.verdict", room="dock-1", verdict="resellable")
    audit = await ctx.request("audit.get", session_id=reply["session_id"])
    assert audit["checkpoints"][-1].get("tst") and local_tsa.queries >= 1
    await ctx.close_room("dock-1")
    await ctx.events.drain()
    key = public_key_text(load_or_create_signing_key(ctx.data_dir))
    report = verify_path(str(ctx.data_dir / "audit" / reply["session_id"]), key,
                         tsa_cert=tsa_authority.ca_pem)
    assert report.ok, report.difference
