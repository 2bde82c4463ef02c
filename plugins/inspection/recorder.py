"""Recordings of rooms: every published track tapped into a `RecordingWriter`.

A `RoomRecording` is one ``recording.start``..``recording.stop`` span of a room. It taps
every track published in the room (those there when it starts and those published
later) with a `TrackTapSink`, whose ``rtp`` only queues the packet: the writer's thread
writes segments off the packet path. A *recording track* is a logical stream,
``<identity>/<source>/<kind>``: when a publisher drops and comes back, its new track
continues the same recording track after a gap marker.

Each video track must start on a keyframe: the recording asks the publisher for one
when it taps the track, and again every ``KEYFRAME_RETRY_S`` while the writer still
waits for it. Closed segments are handed to ``on_segment`` on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from plugins.recorder import RecordingWriter, SegmentClosed, TrackInfo, TrackSink
from signalling.errors import NotFound
from signalling.hooks import PluginContext, TrackTap

__all__ = ["RoomRecording", "TrackTapSink", "KEYFRAME_RETRY_S"]

log = logging.getLogger(__name__)

KEYFRAME_RETRY_S = 1.0


class TrackTapSink:
    """The `sfu.ProducerTap` of one tapped track: the packet path's side of a recording."""

    __slots__ = ("sink", "track_id", "on_closed")

    def __init__(self, sink: TrackSink, track_id: str, on_closed: Callable[[str], None]) -> None:
        self.sink = sink
        self.track_id = track_id
        self.on_closed = on_closed

    def rtp(self, data: bytes, arrival: float, keyframe: bool) -> None:
        self.sink.rtp(data, arrival, keyframe)

    def sender_report(self, ntp: int, rtp_ts: int, arrival: float) -> None:
        self.sink.sender_report(ntp, rtp_ts, arrival)

    def stream_changed(self, ssrc: int) -> None:
        self.sink.new_stream(self.track_id, "ssrc_changed", time.time())

    def producer_closed(self) -> None:
        self.on_closed(self.track_id)


@dataclass
class _Tapped:
    tap: TrackTap
    sink: TrackSink
    key: str
    video: bool


def track_key(info: dict[str, Any]) -> str:
    """The recording track a published track belongs to."""
    return f"{info.get('identity') or info['participant_id']}/{info['source']}/{info['kind']}"


class RoomRecording:
    """One recording of ``room`` into ``directory``; see the module docstring."""

    def __init__(self, ctx: PluginContext, room: str, shipment_id: str | None, session_id: str,
                 recordings_dir: pathlib.Path, *,
                 on_segment: Callable[[RoomRecording, SegmentClosed], Awaitable[None]],
                 segment_seconds: float = 30.0, max_segment_seconds: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.room = room
        self.shipment_id = shipment_id
        self.session_id = session_id
        self.recording_id = "RC_" + uuid.uuid4().hex[:16]
        self.directory = pathlib.Path(recordings_dir) / self.recording_id
        self.clock = clock
        self.started_at = clock()
        self.stopped_at: float | None = None
        self._on_segment = on_segment
        self._loop = asyncio.get_running_loop()
        self._tapped: dict[str, _Tapped] = {}
        self._keys: set[str] = set()  # the recording tracks so far
        self._keyframes: asyncio.Task | None = None
        self._segment_tasks: set[asyncio.Future] = set()
        self._writer_options = {"segment_seconds": segment_seconds,
                                "max_segment_seconds": max_segment_seconds}
        self.writer: RecordingWriter | None = None  # made by start(), off the loop

    @property
    def state(self) -> str:
        return "recording" if self.stopped_at is None else "stopped"

    def describe(self) -> dict[str, Any]:
        """The ``recording`` reply of ``PROTOCOL.md``."""
        out = {"recording_id": self.recording_id, "room": self.room,
               "shipment_id": self.shipment_id, "state": self.state,
               "session_id": self.session_id, "started_at": round(self.started_at * 1000),
               "tracks": sorted(self._keys)}
        if self.stopped_at is not None:
            out["stopped_at"] = round(self.stopped_at * 1000)
        return out

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the writer and tap every track of the room."""
        # the writer makes the directory and fsyncs the first manifest: not on the loop
        self.writer = await asyncio.to_thread(
            RecordingWriter, self.directory, self.recording_id,
            on_segment_closed=self._segment_closed,
            manifest_fields={"room": self.room, "shipment_id": self.shipment_id,
                             "session_id": self.session_id}, **self._writer_options)
        self.writer.start()
        for track in self.ctx.room_tracks(self.room):
            self.tap(track["track_id"])
        self._keyframes = asyncio.ensure_future(self._ask_for_keyframes())

    async def stop(self) -> None:
        """Untap, close every segment (fsync, hashes), write the manifest; idempotent."""
        if self.stopped_at is not None:
            return
        self.stopped_at = self.clock()
        if self._keyframes is not None:
            self._keyframes.cancel()
        for tapped in self._tapped.values():
            tapped.tap.remove()
        self._tapped.clear()
        if self.writer is not None:
            await asyncio.to_thread(self.writer.stop, self.stopped_at)
        # the last segments' audit entries: written before the stop is told
        while self._segment_tasks:
            await asyncio.gather(*list(self._segment_tasks), return_exceptions=True)

    # -- tracks ----------------------------------------------------------------------

    def tap(self, track_id: str) -> bool:
        """Start recording a published track (``False``: it is gone already)."""
        if self.stopped_at is not None or self.writer is None or track_id in self._tapped:
            return False
        placeholder = TrackTapSink(None, track_id, self._track_closed)  # type: ignore[arg-type]
        try:
            tap = self.ctx.tap_track(self.room, track_id, placeholder)
        except NotFound:
            return False
        info = dict(tap.info)
        key = track_key(info)
        # the same key again (the publisher came back): the writer starts a new stream
        # in the same recording track, after a gap marker
        sink = self.writer.track(key, TrackInfo(
            kind=info["kind"], codec=info["codec"], clock_rate=info["clock_rate"],
            payload_type=info["payload_type"], channels=info.get("channels"),
            track_id=track_id, participant_id=info["participant_id"],
            identity=info.get("identity"), source=info["source"]))
        placeholder.sink = sink
        self._keys.add(key)
        video = info["kind"] == "video"
        self._tapped[track_id] = _Tapped(tap, sink, key, video)
        if video:
            tap.request_keyframe()
        log.info("recording %s: track %s (%s, %s)", self.recording_id, track_id, key, info["codec"],
                 extra={"recording_id": self.recording_id, "room": self.room})
        return True

    def _track_closed(self, track_id: str) -> None:
        tapped = self._tapped.pop(track_id, None)
        if tapped is not None:
            tapped.sink.close(self.clock())

    async def _ask_for_keyframes(self) -> None:
        while True:
            await asyncio.sleep(KEYFRAME_RETRY_S)
            for tapped in list(self._tapped.values()):
                if tapped.video and tapped.sink.waiting_for_keyframe:
                    tapped.tap.request_keyframe()

    # -- segments (told from the writer's thread) ------------------------------------

    def _segment_closed(self, closed: SegmentClosed) -> None:
        self._loop.call_soon_threadsafe(self._schedule_segment, closed)

    def _schedule_segment(self, closed: SegmentClosed) -> None:
        task = asyncio.ensure_future(self._on_segment(self, closed))
        self._segment_tasks.add(task)
        task.add_done_callback(self._segment_tasks.discard)
