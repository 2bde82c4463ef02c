"""`recording.playback`: a recording published back into a room at its original pace.

`RecordingPlayer` reads a recording's segments (`plugins.recorder`), publishes one
track per recording track (source ``playback``, named after the recording track) as
a participant ``playback:<recording_id>`` of the room, and sends every packet at the
moment it arrived at the recorder, relative to the first one: gaps stay gaps, and
audio and video keep the timing they were recorded with. The packets are the
publisher's own RTP, never decoded; each new stream of a recording track (a publisher
that came back) is a new SSRC, so subscribers restart at its keyframe.

Segments are read one at a time per track, so a long recording is not held in memory.
Playback starts ``start_delay_s`` after the tracks are published, so subscribers who
react to ``track_published`` are ready for the first keyframe.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import pathlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from plugins.recorder import Manifest, TrackRecord, read_mjr
from signalling.hooks import LocalPublication

__all__ = ["RecordingPlayer", "packets_in_order"]

log = logging.getLogger(__name__)


def _track_packets(directory: pathlib.Path, index: int, track: TrackRecord) -> Iterator[tuple[float, int, bytes]]:
    """``(arrival, track index, rtp)`` of one recording track, segment by segment."""
    for segment in track.segments:
        path = directory / segment.file
        if not path.exists():
            log.warning("playback: segment %s is missing; skipped", path)
            continue
        read = read_mjr(path)
        first = read.info.first_us / 1e6
        for packet in read.packets:
            yield first + packet.offset_ms / 1000.0, index, packet.rtp


def packets_in_order(directory: pathlib.Path, manifest: Manifest) -> Iterator[tuple[float, int, bytes]]:
    """Every packet of every track, by arrival: ``(arrival, track index, rtp)``."""
    return heapq.merge(*(_track_packets(directory, i, t) for i, t in enumerate(manifest.tracks)),
                       key=lambda item: (item[0], item[1]))


class RecordingPlayer:
    """Plays the recording in ``directory`` through ``publication``; `run` returns when
    the last packet was sent (or the room closed), and leaves the room."""

    def __init__(self, directory: pathlib.Path, publication: LocalPublication, *,
                 start_delay_s: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.directory = pathlib.Path(directory)
        self.manifest = Manifest.load(self.directory)
        self.publication = publication
        self.start_delay_s = start_delay_s
        self.clock = clock
        self.sleep = sleep
        self.tracks: list[Any] = []
        self.sent = 0
        self.refused = 0

    def publish(self) -> list[str]:
        """Publish the tracks (before `run`); their ids."""
        for record in self.manifest.tracks:
            self.tracks.append(self.publication.add_track(
                record.kind, record.codec, record.clock_rate, record.payload_type,
                channels=record.channels, name=record.key))
        return [t.id for t in self.tracks]

    async def run(self) -> None:
        if not self.tracks:
            self.publish()
        try:
            await self.sleep(self.start_delay_s)
            start, first = self.clock(), None
            for arrival, index, rtp in packets_in_order(self.directory, self.manifest):
                if first is None:
                    first = arrival
                wait = start + (arrival - first) - self.clock()
                if wait > 0.002:
                    await self.sleep(wait)
                if self.tracks[index].send(rtp):
                    self.sent += 1
                else:
                    self.refused += 1
                if all(t.closed for t in self.tracks):
                    break  # the room closed under us
        finally:
            await self.publication.close()
        log.info("playback of %s ended: %d packets sent", self.manifest.recording_id, self.sent,
                 extra={"recording_id": self.manifest.recording_id, "refused": self.refused})
