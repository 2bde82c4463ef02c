"""`InspectionPlugin`: recordings and the audit log of inspection sessions.

- routes ``recording.start`` / ``recording.stop`` / ``recording.list`` (``record`` or
  ``admin`` grant), ``inspection.verdict`` and ``audit.get`` (admin); a token scoped to
  a room reaches only that room's recordings and sessions;
- ``room.create {record: true}`` starts recording as the room opens; a room that closes
  stops its recording and closes its session;
- while a room has a session, its joins, leaves, publications, messages (their hashes,
  from a durable log follower), shipment events, verdicts, recordings and each closed
  segment (SHA-256, size) are audit entries; checkpoints are published as
  ``audit_checkpoint`` events;
- at start, recordings and sessions a crash left open are recovered: the segments'
  whole frames kept, audited, and the sessions closed.

Options (``[plugins.inspection]``): ``recordings_dir`` (default
``<data-dir>/recordings``), ``segment_seconds`` (30), ``max_segment_seconds`` (60),
``checkpoint_interval_s`` (10), ``record_all`` (false: every room records from the
moment it opens, as if created with ``record: true``), ``retention_days`` (0: keep
recordings forever), ``sweep_interval_s`` (600) and an ``s3`` table
(``[plugins.inspection.s3]``: closed segments also go to S3-compatible storage,
``docs/storage.md``); ``tsa_url``, ``tsa_ca_file``, ``tsa_timeout_s`` (10): an RFC 3161
time-stamping authority whose tokens the checkpoints carry (``docs/audit.md``). ``recording.delete {recording_id}`` (admin) deletes a recording
here and in the store; every deletion, by request or by retention, is an entry
``recording_deleted`` in the node's operations session of the audit log.
``recording.media {recording_id}`` answers a signed, short-lived link to the recording
exported as one media file, served at ``/recordings/media`` (`media_links`; the playback
page, ``docs/playback.md``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import pathlib
import time
from collections.abc import Callable
from typing import Any

from plugins.audit import TimestampAuthority, load_or_create_signing_key
from plugins.playback.player import RecordingPlayer
from plugins.recorder import Manifest, SegmentClosed
from plugins.recorder.storage import fetch_missing, store_from_options
from signalling.errors import BadRequest, Conflict, Forbidden, NotFound
from signalling.events import (MessageStored, ParticipantJoined, ParticipantLeft, RecordingStarted,
                               RecordingStopped, RoomClosed, RoomCreated, ShipmentStatus,
                               TrackPublished, TrackUnpublished)
from signalling.hooks import Plugin, PluginContext
from signalling.session import require_room

from .archive import Archive
from .media_links import LINK_PATH, MediaLinks
from .recorder import RoomRecording
from .sessions import AuditSessions

__all__ = ["InspectionPlugin"]

log = logging.getLogger(__name__)


def _payload_hash(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=repr)
    return hashlib.sha256(canonical.encode()).hexdigest()


class InspectionPlugin(Plugin):
    name = "inspection"

    def __init__(self, recordings_dir: str | None = None, segment_seconds: float = 30.0,
                 max_segment_seconds: float = 60.0, checkpoint_interval_s: float = 10.0,
                 record_all: bool = False, retention_days: float = 0.0,
                 sweep_interval_s: float = 600.0, s3: dict | None = None,
                 tsa_url: str | None = None, tsa_ca_file: str | None = None,
                 tsa_timeout_s: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        if not 1.0 <= float(segment_seconds) <= float(max_segment_seconds):
            raise ValueError("segment_seconds must be at least 1 and at most max_segment_seconds")
        self.recordings_option = recordings_dir
        self.segment_seconds = float(segment_seconds)
        self.max_segment_seconds = float(max_segment_seconds)
        self.checkpoint_interval_s = float(checkpoint_interval_s)
        self.record_all = bool(record_all)
        if float(retention_days) < 0 or float(sweep_interval_s) <= 0:
            raise ValueError("retention_days must be 0 (forever) or more, sweep_interval_s above 0")
        self.max_age_s = float(retention_days) * 86400.0
        self.sweep_interval_s = float(sweep_interval_s)
        self.store = store_from_options({"s3": s3} if s3 is not None else {})
        self.archive: Archive | None = None
        self.tsa = None
        if tsa_url is not None:  # a bad URL, CA file or a missing client: refused at start
            ca = pathlib.Path(tsa_ca_file).read_bytes() if tsa_ca_file else None
            self.tsa = TimestampAuthority(tsa_url, timeout_s=float(tsa_timeout_s), ca_certs=ca)
        self.clock = clock
        self.ctx: PluginContext | None = None
        self.sessions: AuditSessions | None = None
        self.recordings_dir: pathlib.Path | None = None
        self.recording: dict[str, RoomRecording] = {}  # by room, while it records
        self.catalog: dict[str, dict[str, Any]] = {}  # recording_id -> its `recording` fields
        self.players: set[asyncio.Task] = set()
        self.media: MediaLinks | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, ctx: PluginContext) -> None:
        self.ctx = ctx
        data_dir = pathlib.Path(ctx.data_dir)
        self.recordings_dir = pathlib.Path(self.recordings_option or data_dir / "recordings")
        self.recordings_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        signer = await asyncio.to_thread(load_or_create_signing_key, data_dir)
        self.sessions = AuditSessions(data_dir / "audit", signer, ctx.events.publish,
                                      checkpoint_interval_s=self.checkpoint_interval_s,
                                      clock=self.clock, tsa=self.tsa)
        pending = await asyncio.to_thread(self._recover_recordings)
        await self.sessions.start(pending)
        self.media = MediaLinks(data_dir, self.recordings_dir, self.catalog.get,
                                prepare=self._fetch_missing, clock=self.clock)
        await self.media.start()
        ctx.http_route(LINK_PATH, self.media.handle)
        self.archive = Archive(self.store, self.recordings_dir, max_age_s=self.max_age_s,
                               sweep_interval_s=self.sweep_interval_s,
                               on_deleted=self._deleted, clock=self.clock,
                               keep=lambda: {r.recording_id for r in self.recording.values()})
        self.archive.start()
        for route, handler in (("recording.start", self.on_start), ("recording.stop", self.on_stop),
                               ("recording.list", self.on_list),
                               ("recording.playback", self.on_playback),
                               ("recording.delete", self.on_delete),
                               ("recording.media", self.on_media),
                               ("inspection.verdict", self.on_verdict),
                               ("audit.get", self.on_audit_get)):
            ctx.route(route, handler)
        subscribe = ctx.events.subscribe
        subscribe(RoomCreated, self.on_room_created, name=self.name)
        subscribe(RoomClosed, self.on_room_closed, name=self.name)
        subscribe(TrackPublished, self.on_track_published, name=self.name)
        subscribe((TrackUnpublished, ParticipantJoined, ParticipantLeft, ShipmentStatus),
                  self.on_room_event, name=self.name)
        ctx.follow_messages("inspection-audit", self.on_message)

    async def stop(self) -> None:
        for player in list(self.players):
            player.cancel()
        await asyncio.gather(*self.players, return_exceptions=True)
        for room in list(self.recording):
            await self._stop_recording(room, "node_stopping")
        if self.media is not None:
            await self.media.stop()
        if self.archive is not None:
            await self.archive.stop()
        if self.sessions is not None:
            await self.sessions.stop()

    # -- routes ----------------------------------------------------------------------

    async def on_start(self, conn: Any, request: Any) -> dict:
        room = request["room"]
        require_room(conn, room)
        current = self.recording.get(room)
        if current is None:
            current = await self._start_recording(room)
        return {"type": "recording", **current.describe()}

    async def on_stop(self, conn: Any, request: Any) -> dict:
        room = request["room"]
        require_room(conn, room)
        if room not in self.recording:
            raise NotFound(f"room {room!r} is not recording")
        stopped = await self._stop_recording(room, "requested")
        return {"type": "recording", **stopped.describe()}

    async def on_list(self, conn: Any, request: Any) -> dict:
        claims = getattr(conn, "claims", None)
        scope = getattr(claims, "room", None)
        room, shipment_id = request.get("room"), request.get("shipment_id")
        if scope is not None and room not in (None, scope):
            raise Forbidden(f"the token does not admit room {room!r}")
        found = [r for r in self.catalog.values()
                 if (room or scope) in (None, r["room"])
                 and shipment_id in (None, r.get("shipment_id"))]
        found.sort(key=lambda r: r.get("started_at") or 0)
        return {"type": "recordings", "recordings": found}

    async def on_playback(self, conn: Any, request: Any) -> dict:
        room, recording_id = request["room"], request["recording_id"]
        require_room(conn, room)
        recording = self.catalog.get(recording_id)
        scope = getattr(getattr(conn, "claims", None), "room", None)
        if recording is None or (scope is not None and recording["room"] != scope):
            raise NotFound(f"recording {recording_id!r} does not exist")
        if recording["state"] != "stopped":
            raise Conflict(f"recording {recording_id!r} is still recording")
        await asyncio.to_thread(self._fetch_missing, self.recordings_dir / recording_id)
        publication = self.ctx.publish_local(room, f"playback:{recording_id}")
        try:
            player = RecordingPlayer(self.recordings_dir / recording_id, publication)
            track_ids = player.publish()
        except Exception:
            await publication.close()
            raise
        task = asyncio.ensure_future(player.run())
        self.players.add(task)
        task.add_done_callback(self._player_done)
        log.info("playback of %s into room %s", recording_id, room,
                 extra={"recording_id": recording_id, "room": room})
        return {"type": "ok", "track_ids": track_ids}

    def _player_done(self, task: asyncio.Task) -> None:
        self.players.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("playback failed", exc_info=task.exception())

    async def on_media(self, conn: Any, request: Any) -> dict:
        return {"type": "media_link", **await self.media.link(conn, request["recording_id"])}

    def _fetch_missing(self, directory: pathlib.Path) -> None:
        if self.archive.remote:  # segments kept only in the store come back first
            fetch_missing(directory, self.store)

    async def on_delete(self, conn: Any, request: Any) -> dict:
        recording_id = request["recording_id"]
        recording = self.catalog.get(recording_id)
        scope = getattr(getattr(conn, "claims", None), "room", None)
        if recording is None or (scope is not None and recording["room"] != scope):
            raise NotFound(f"recording {recording_id!r} does not exist")
        if recording["state"] != "stopped":
            raise Conflict(f"recording {recording_id!r} is still recording: stop it first")
        deleted = await self.archive.delete(recording_id, f"requested by {conn.identity}")
        return {"type": "ok", "files": len(deleted.files), "bytes": deleted.bytes}

    async def _deleted(self, deleted: Any, reason: str) -> None:
        """A recording is gone: out of the catalog, and an entry in the audit log."""
        recording = self.catalog.pop(deleted.recording_id, None) or {}
        self.media.forget(deleted.recording_id)
        session = await self.sessions.open("", None, purpose="node operations")
        await self.sessions.append_to(session, "recording_deleted", {
            "recording_id": deleted.recording_id, "session_id": recording.get("session_id"),
            "reason": reason, "files": len(deleted.files), "bytes": deleted.bytes,
            "objects": len(deleted.objects)})
        await self.sessions.checkpoint(session)

    async def on_verdict(self, conn: Any, request: Any) -> dict:
        room = request["room"]
        require_room(conn, room)
        info = self.ctx.room_info(room)
        if info is None:
            raise NotFound(f"room {room!r} is not open")
        refund = request.get("refund")
        if request["verdict"] == "partial" and (refund is None or isinstance(refund, bool)
                                                 or refund <= 0):
            raise BadRequest("a partial verdict needs a refund amount above 0")
        session = await self.sessions.open(room, info.get("shipment_id"),
                                           participants=info.get("participants", []),
                                           tracks=self.ctx.room_tracks(room))
        await self.sessions.append_to(session, "verdict", {
            "verdict": request["verdict"], "refund": refund, "note": request.get("note"),
            "by": getattr(conn, "identity", None)})
        await self.sessions.checkpoint(session)
        return {"type": "ok", "session_id": session.session_id}

    async def on_audit_get(self, conn: Any, request: Any) -> dict:
        audit = await self.sessions.read(request["session_id"])
        scope = getattr(getattr(conn, "claims", None), "room", None)
        if scope is not None:
            started = audit["entries"][0] if audit["entries"] else {}
            if started.get("room") != scope:  # no existence leak to a scoped token
                raise Forbidden(f"the token does not admit the room of {request['session_id']!r}")
        return {"type": "audit", **audit}

    # -- events ----------------------------------------------------------------------

    async def on_room_created(self, event: RoomCreated) -> None:
        info = self.ctx.room_info(event.room)
        if (info is not None and (info.get("record") or self.record_all)
                and event.room not in self.recording):
            await self._start_recording(event.room)

    async def on_room_closed(self, event: RoomClosed) -> None:
        if event.room in self.recording:
            await self._stop_recording(event.room, event.reason)
        await self.sessions.close(event.room)

    async def on_track_published(self, event: TrackPublished) -> None:
        track = event.track
        await self.sessions.append(event.room, "track_published", {
            k: track.get(k) for k in ("track_id", "participant_id", "kind", "source", "codec")})
        recording = self.recording.get(event.room)
        if recording is not None:
            recording.tap(track["track_id"])

    async def on_room_event(self, event: Any) -> None:
        if event.room is None:
            return
        if isinstance(event, TrackUnpublished):
            entry = ("track_unpublished", {"track_id": event.track_id})
        elif isinstance(event, ParticipantJoined):
            entry = ("participant_joined", {"participant_id": event.participant.get("participant_id"),
                                            "identity": event.participant.get("identity")})
        elif isinstance(event, ParticipantLeft):
            entry = ("participant_left", {"participant_id": event.participant_id,
                                          "identity": event.identity})
        else:
            entry = ("shipment_event", {"shipment_id": event.shipment_id, "status": event.status,
                                        "detail": event.detail})
        await self.sessions.append(event.room, *entry)

    async def on_message(self, event: MessageStored) -> None:
        message = event.message
        await self.sessions.append(event.room, "message", {
            "seq": message.seq, "from": message.sender, "topic": message.topic,
            "sha256": _payload_hash(message.payload)})

    # -- recordings ------------------------------------------------------------------

    async def _start_recording(self, room: str) -> RoomRecording:
        info = self.ctx.room_info(room)
        if info is None:
            raise NotFound(f"room {room!r} is not open")
        session = await self.sessions.open(room, info.get("shipment_id"),
                                           participants=info.get("participants", []),
                                           tracks=self.ctx.room_tracks(room))
        recording = RoomRecording(self.ctx, room, info.get("shipment_id"), session.session_id,
                                  self.recordings_dir, on_segment=self._segment_closed,
                                  segment_seconds=self.segment_seconds,
                                  max_segment_seconds=self.max_segment_seconds, clock=self.clock)
        self.recording[room] = recording
        await recording.start()
        await self.sessions.append_to(session, "recording_started",
                                      {"recording_id": recording.recording_id})
        self.catalog[recording.recording_id] = recording.describe()
        self.ctx.events.publish(RecordingStarted(room=room, shipment_id=recording.shipment_id,
                                                 recording_id=recording.recording_id))
        log.info("recording %s of room %s started", recording.recording_id, room,
                 extra={"recording_id": recording.recording_id, "room": room,
                        "session_id": session.session_id})
        return recording

    async def _stop_recording(self, room: str, reason: str) -> RoomRecording:
        recording = self.recording.pop(room)
        await recording.stop()
        await self.archive.recording_stopped(recording.recording_id)
        await self.sessions.append(room, "recording_stopped",
                                   {"recording_id": recording.recording_id, "reason": reason})
        self.catalog[recording.recording_id] = recording.describe()
        self.ctx.events.publish(RecordingStopped(room=room, shipment_id=recording.shipment_id,
                                                 recording_id=recording.recording_id))
        log.info("recording %s of room %s stopped (%s)", recording.recording_id, room, reason,
                 extra={"recording_id": recording.recording_id, "room": room})
        return recording

    async def _segment_closed(self, recording: RoomRecording, closed: SegmentClosed) -> None:
        session = self.sessions.session_of(recording.room)
        if session is None or session.session_id != recording.session_id:
            log.error("segment %s of recording %s closed after its session", closed.file,
                      recording.recording_id)
            return
        await self.sessions.append_to(session, "segment", _segment_fields(closed))
        await self.sessions.checkpoint(session)
        await self.archive.segment_closed(closed)

    def _recover_recordings(self) -> dict[str, list[tuple[str, dict]]]:
        """Read every recording's manifest into the catalog; close those a crash left
        open (their whole frames kept) and return, by session, the entries to audit."""
        pending: dict[str, list[tuple[str, dict]]] = {}
        for directory in sorted(p for p in self.recordings_dir.iterdir() if p.is_dir()):
            try:
                manifest = Manifest.load(directory)
                if manifest.state != "stopped":
                    closed = Manifest.recover(directory)
                    entries = pending.setdefault(manifest.fields.get("session_id"), [])
                    entries += [("segment", _segment_fields(c)) for c in closed]
                    entries.append(("recording_stopped", {"recording_id": manifest.recording_id,
                                                          "reason": "node_restarted"}))
                    manifest = Manifest.load(directory)
                    log.warning("recording %s was interrupted; %d segment(s) recovered",
                                manifest.recording_id, len(closed),
                                extra={"recording_id": manifest.recording_id})
                self.catalog[manifest.recording_id] = _describe_manifest(manifest)
            except Exception:  # noqa: BLE001 - one bad directory must not stop the node
                log.exception("recording directory %s could not be read", directory)
        return pending


def _segment_fields(closed: SegmentClosed) -> dict[str, Any]:
    return {"recording_id": closed.recording_id, "track": closed.track_key, "file": closed.file,
            "sha256": closed.sha256, "size": closed.size, "packets": closed.packets}


def _describe_manifest(manifest: Manifest) -> dict[str, Any]:
    fields = manifest.fields
    out = {"recording_id": manifest.recording_id, "room": fields.get("room"),
           "shipment_id": fields.get("shipment_id"), "state": "stopped",
           "session_id": fields.get("session_id"),
           "started_at": round(manifest.started_at * 1000),
           "tracks": sorted(t.key for t in manifest.tracks)}
    if manifest.stopped_at is not None:
        out["stopped_at"] = round(manifest.stopped_at * 1000)
    return out
