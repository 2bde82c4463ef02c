"""When each frame of a recording happened: RTP timestamps onto the recorder's clock.

A recording track (``plugins.recorder`` manifest) is a series of RTP *streams*: a new
one starts when the SSRC changes, when a segment belongs to another producer
(``track_id``), or right after a gap marker (the publisher left and came back). In each
stream, RTP timestamps are unwrapped (32 bits), and mapped to wall-clock seconds on
the recorder's clock (the arrival times it wrote) by *anchors*, pairs (unwrapped RTP
timestamp, wall clock): a frame takes the latest anchor at or before its timestamp (the
first one before that) plus the timestamp difference over the clock rate. Time is never
derived from counting packets, so Opus DTX (timestamps jumping while the sender is
silent) keeps its timing, and a gap between streams stays as long as it was.

Anchors come from:
- RTCP sender reports (the manifest's ``anchors``): the sender's NTP clock for an RTP
  timestamp. One sender's tracks share its clock, which is what keeps its audio and
  video in sync; the sender's clock is put on the recorder's by the smallest
  ``arrival - ntp`` seen among that sender's reports (same identity, offsets within a
  second of each other: a sender that restarted with another clock is kept apart);
- else the arrival times: per segment, the packet that arrived least delayed relative
  to its timestamp (the smallest ``arrival - ts / clock_rate``), which follows a clock
  that drifts and ignores jitter.
"""

from __future__ import annotations

import bisect
import pathlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from plugins.recorder import (
    Manifest,
    MjrError,
    SegmentRecord,
    TrackRecord,
    ntp_to_unix,
    read_mjr,
)

from .assembler import RtpView, Unwrapper
from .depacketize import DepacketizeError

__all__ = [
    "SYNC_CLUSTER_SECONDS",
    "TrackPacket",
    "StreamClock",
    "TrackTimeline",
    "track_packets",
    "build_timelines",
]

#: Sender-report clock offsets of one identity closer than this are one sender's clock.
SYNC_CLUSTER_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class TrackPacket:
    """One recorded RTP packet, with the stream of its track it belongs to."""

    stream: int
    segment: str
    packet: RtpView
    arrival: float


@dataclass
class StreamClock:
    """How the unwrapped RTP timestamps of one stream map to the recorder's clock.

    ``first_timestamp``: the RTP timestamp unwrapping starts from (pass it to
    `FrameAssembler`); ``source``: ``"sender_reports"`` or ``"arrival"``."""

    index: int
    ssrc: int
    track_id: str | None
    clock_rate: int
    first_timestamp: int
    packets: int = 0
    source: str = "arrival"
    anchors: list[tuple[int, float]] = field(default_factory=list)
    # per segment: (first unwrapped timestamp, least-delayed (timestamp, arrival))
    _segments: dict[str, tuple[int, tuple[int, float]]] = field(default_factory=dict, repr=False)
    _sr_offset: float | None = field(default=None, repr=False)
    _stamps: tuple[list, list[int]] | None = field(default=None, repr=False)

    def wall(self, timestamp: int) -> float:
        """Wall-clock seconds (recorder's clock) of an unwrapped RTP timestamp."""
        if self._stamps is None or self._stamps[0] is not self.anchors:
            self._stamps = (self.anchors, [a[0] for a in self.anchors])
        i = max(bisect.bisect_right(self._stamps[1], timestamp) - 1, 0)
        anchor_ts, anchor_wall = self.anchors[i]
        return anchor_wall + (timestamp - anchor_ts) / self.clock_rate


@dataclass
class TrackTimeline:
    """A recording track and the clock of each of its streams, in recording order.
    ``problems``: what could not be read (a missing or torn segment, bad packets)."""

    track: TrackRecord
    streams: list[StreamClock] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def packets(self) -> int:
        return sum(s.packets for s in self.streams)


def _stream_starts(track: TrackRecord) -> set[str]:
    """Segments that start a new stream: another producer's, or right after a gap."""
    starts: set[str] = set()
    gap_ends = [g.end for g in track.gaps]
    previous: SegmentRecord | None = None
    for segment in track.segments:
        if previous is None or segment.track_id != previous.track_id or any(
                abs(segment.started_at - end) < 1e-6 for end in gap_ends):
            starts.add(segment.file)
        previous = segment
    return starts


def track_packets(directory: pathlib.Path, track: TrackRecord, *,
                  problems: list[str] | None = None,
                  on_segment: Callable[[SegmentRecord], None] | None = None,
                  ) -> Iterator[TrackPacket]:
    """Every readable RTP packet of a track, in recording order, with its stream index.

    Segments are read one at a time. A missing or unreadable file, a torn tail (after a
    crash: the whole packets before it are kept) and packets that are not RTP are
    skipped, each noted in ``problems``. ``on_segment`` is called after each segment."""
    notes = problems if problems is not None else []
    starts = _stream_starts(track)
    stream, ssrc = -1, None
    for segment in track.segments:
        path = pathlib.Path(directory) / segment.file
        try:
            found = read_mjr(path)
        except (MjrError, OSError) as exc:
            notes.append(f"{track.key}: segment {segment.file} skipped: {exc}")
            if on_segment is not None:
                on_segment(segment)
            continue
        if not found.complete:
            notes.append(f"{track.key}: segment {segment.file} stops at byte "
                         f"{found.stopped_at} ({found.problem}); "
                         f"{len(found.packets)} packets before it kept")
        if segment.file in starts:
            ssrc = None
        base = found.info.first_us / 1e6
        bad = 0
        for item in found.packets:
            try:
                packet = RtpView.parse(item.rtp)
            except DepacketizeError:
                bad += 1
                continue
            if packet.ssrc != ssrc:
                stream, ssrc = stream + 1, packet.ssrc
            yield TrackPacket(stream, segment.file, packet, base + item.offset_ms / 1000)
        if bad:
            notes.append(f"{track.key}: segment {segment.file}: {bad} packets are not RTP")
        if on_segment is not None:
            on_segment(segment)


def _scan(directory: pathlib.Path, track: TrackRecord,
          on_segment: Callable[[SegmentRecord], None] | None) -> TrackTimeline:
    timeline = TrackTimeline(track)
    rate = track.clock_rate
    unwrap: Unwrapper | None = None
    clock: StreamClock | None = None
    for item in track_packets(directory, track, problems=timeline.problems, on_segment=on_segment):
        if clock is None or item.stream != clock.index:
            clock = StreamClock(item.stream, item.packet.ssrc, None, rate, item.packet.timestamp)
            timeline.streams.append(clock)
            unwrap = Unwrapper(32, item.packet.timestamp)
        ts = unwrap.unwrap(item.packet.timestamp)
        clock.packets += 1
        known = clock._segments.get(item.segment)
        if known is None:
            clock._segments[item.segment] = (ts, (ts, item.arrival))
        elif item.arrival - ts / rate < known[1][1] - known[1][0] / rate:
            clock._segments[item.segment] = (known[0], (ts, item.arrival))
    track_ids = {s.file: s.track_id for s in track.segments}
    for clock in timeline.streams:
        clock.track_id = track_ids.get(next(iter(clock._segments)))
        clock.anchors = [least for _, least in clock._segments.values()]
    return timeline


def _sender_reports(timeline: TrackTimeline) -> None:
    """Give each stream its sender-report anchors (sender's clock, not yet offset)."""
    for clock in timeline.streams:
        reports = []
        for anchor in timeline.track.anchors:
            seen = clock._segments.get(anchor.segment or "")
            if seen is None:
                continue
            ts = Unwrapper(32, seen[0]).unwrap(anchor.rtp_ts)
            if abs(ts - seen[0]) > 3600 * clock.clock_rate:
                continue  # not this stream's clock (another SSRC in the same segment)
            sender = ntp_to_unix(anchor.ntp)
            reports.append((ts, sender, anchor.arrival - sender))
        if reports:
            reports.sort()
            clock.source = "sender_reports"
            clock.anchors = [(ts, sender) for ts, sender, _ in reports]
            clock._sr_offset = min(offset for _, _, offset in reports)


def _put_on_recorder_clock(timelines: list[TrackTimeline]) -> None:
    """Shift sender-report anchors by their sender's offset, one offset per sender."""
    by_identity: dict[str, list[StreamClock]] = {}
    for timeline in timelines:
        for clock in timeline.streams:
            if clock._sr_offset is not None:
                by_identity.setdefault(timeline.track.identity, []).append(clock)
    for clocks in by_identity.values():
        clocks.sort(key=lambda c: c._sr_offset)
        group: list[StreamClock] = []
        for clock in [*clocks, None]:
            if group and (clock is None or clock._sr_offset - group[-1]._sr_offset > SYNC_CLUSTER_SECONDS):
                offset = group[0]._sr_offset  # the least delayed report of that clock
                for member in group:
                    member.anchors = [(ts, wall + offset) for ts, wall in member.anchors]
                group = []
            if clock is not None:
                group.append(clock)


def build_timelines(directory: pathlib.Path, manifest: Manifest, *,
                    on_segment: Callable[[SegmentRecord], None] | None = None,
                    ) -> list[TrackTimeline]:
    """Read every track of a recording once and work out each stream's clock (the
    first of an export's two passes). Tracks without a readable packet come back with
    no streams."""
    timelines = [_scan(pathlib.Path(directory), track, on_segment) for track in manifest.tracks]
    for timeline in timelines:
        _sender_reports(timeline)
    _put_on_recorder_clock(timelines)
    return timelines
