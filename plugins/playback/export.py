"""A recording into one media file, by remuxing with PyAV: no frame is decoded or encoded.

Two passes over the segments: `plugins.playback.timeline` first works out each
stream's clock, then every track's RTP packets are depacketized into frames
(`plugins.playback.depacketize`), put on the wall clock, merged in time order and
muxed. The export's zero is the earliest first frame across tracks; every track keeps
its place on that clock (a track that starts later starts later in the file, a gap
stays a gap). Each recording track becomes one stream of the file, titled with its key.

Audio holes (Opus DTX, lost packets, a publisher away) are filled with silent Opus
frames, so that every player, also those that ignore timestamps (Ogg has none per
packet), keeps the audio in time; the decoded audio is silent there, as it was. Video
has no such need: a player shows the last frame until the next.

The output is written to a temporary file beside ``out`` (mode 0600: it is evidence)
and renamed into place when complete, so a failed export leaves no partial file.
"""

from __future__ import annotations

import heapq
import os
import pathlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import av

from plugins.recorder import Manifest, ManifestError
from plugins.recorder import RecordingNotFound as _NoManifest

from . import codecs
from .assembler import AssemblerStats, Frame, FrameAssembler
from .depacketize import payload_format
from .errors import ExportError, RecordingNotFound, UnsupportedContainer
from .timeline import TrackTimeline, build_timelines, track_packets

__all__ = ["CONTAINERS", "Container", "ExportedStream", "ExportResult", "export_recording"]


@dataclass(frozen=True)
class Container:
    """An output format: FFmpeg's muxer name and the codecs (MIME type, lower case, to
    FFmpeg's codec name) it holds."""

    name: str
    codecs: dict[str, str]


#: Output file extension -> container.
CONTAINERS: dict[str, Container] = {
    ".webm": Container("webm", {"video/vp8": "vp8", "video/vp9": "vp9", "audio/opus": "opus"}),
    ".mp4": Container("mp4", {"video/h264": "h264", "video/vp9": "vp9", "audio/opus": "opus"}),
    ".ogg": Container("ogg", {"audio/opus": "opus"}),
}

_VIDEO_RATE = 90000  # RTP video clock: the stream time base, so no timestamp is rounded
_OPUS_RATE = 48000
_SNAP_SAMPLES = 120  # audio this close to where the previous frame ended is contiguous
# libopus's look-ahead at 48 kHz: what an RTP Opus packet's content lags its timestamp
# by (browsers' and aiortc's encoders), and the pre-skip in the OpusHead we write. The
# packets go that much earlier in the file, and decoders drop the priming samples.
_OPUS_PRE_SKIP = 312


@dataclass(frozen=True)
class ExportedStream:
    """One stream of the output: the recording track it holds, how many of its frames
    were written (and ``silent_frames`` besides, filling audio holes), how many were dropped
    (incomplete, malformed, or waiting for a key frame), and when it starts and ends
    in the file (seconds)."""

    index: int
    track: str
    kind: str
    codec: str
    frames: int
    silent_frames: int
    dropped: int
    start: float
    end: float
    size: tuple[int, int] | None = None


@dataclass(frozen=True)
class ExportResult:
    """What `export_recording` wrote. ``frames``: track key -> frames written from the
    recording (silent fill not counted: see `ExportedStream`); ``problems``: what was skipped (unreadable segments, tracks with no
    frame), one line each."""

    path: pathlib.Path
    container: str
    streams: tuple[ExportedStream, ...]
    duration: float
    frames: dict[str, int]
    problems: tuple[str, ...] = ()


def container_for(out: pathlib.Path) -> Container:
    """The container an output path asks for, by its extension."""
    try:
        return CONTAINERS[out.suffix.lower()]
    except KeyError:
        raise UnsupportedContainer(
            f"cannot export to {out.name!r}: the extension must be one of "
            f"{', '.join(CONTAINERS)}") from None


def _suggest(codec: str) -> str:
    fits = [ext for ext, c in CONTAINERS.items() if codec.lower() in c.codecs]
    return f"use {' or '.join(fits)}" if fits else "no container here holds it"


def _check_codecs(manifest: Manifest, out: pathlib.Path, container: Container) -> None:
    for track in manifest.tracks:
        if track.segments and track.codec.lower() not in container.codecs:
            raise UnsupportedContainer(
                f"{out.suffix} ({container.name}) cannot hold {track.codec} (track "
                f"{track.key} of recording {manifest.recording_id}); {_suggest(track.codec)}")


@dataclass
class _Track:
    """One output stream while muxing."""

    timeline: TrackTimeline
    frames: Iterator[tuple[float, Frame]]
    stats: AssemblerStats = field(default_factory=AssemblerStats)
    stream: object = None
    size: tuple[int, int] | None = None
    rate: int = _VIDEO_RATE
    written: int = 0
    silent: int = 0
    first_pts: int | None = None
    last_pts: int = -1
    end_pts: int = 0  # audio: where the last frame ends
    held: av.Packet | None = None  # video: waits for the next frame to know its duration
    interval: int = 0  # video: the last frame interval


def _frames(directory: pathlib.Path, timeline: TrackTimeline, stats: AssemblerStats,
            on_segment: Callable) -> Iterator[tuple[float, Frame]]:
    """The track's frames with their wall-clock time, in order (the second pass)."""
    assembler: FrameAssembler | None = None
    clock = None
    last = float("-inf")
    shift = _OPUS_PRE_SKIP / _OPUS_RATE if timeline.track.kind == "audio" else 0.0

    def emitted(frames: list[Frame]) -> Iterator[tuple[float, Frame]]:
        nonlocal last
        for frame in frames:
            last = max(last, clock.wall(frame.timestamp) - shift)  # never backwards in a track
            yield last, frame

    def finished() -> None:
        for name in ("packets", "duplicates", "late", "lost", "frames", "dropped_incomplete",
                     "dropped_malformed", "dropped_before_keyframe"):
            setattr(stats, name, getattr(stats, name) + getattr(assembler.stats, name))
        stats.problems.extend(assembler.stats.problems)

    for item in track_packets(directory, timeline.track, on_segment=on_segment):
        if clock is None or item.stream != clock.index:
            if assembler is not None:
                yield from emitted(assembler.flush())
                finished()
            if item.stream >= len(timeline.streams):
                return  # a segment changed since the first pass
            clock = timeline.streams[item.stream]
            assembler = FrameAssembler(payload_format(timeline.track.codec),
                                       first_timestamp=clock.first_timestamp)
        yield from emitted(assembler.push(item.packet, item.arrival))
    if assembler is not None:
        yield from emitted(assembler.flush())
        finished()


def _add_stream(output: av.container.OutputContainer, container: Container, track: _Track,
                first: Frame) -> None:
    record = track.timeline.track
    name = container.codecs[record.codec.lower()]
    if record.kind == "audio":
        # The libopus encoder is opened, never fed: opening it is how PyAV gives a
        # stream its OpusHead (pre-skip 312) and channel layout.
        stream = output.add_stream("libopus", rate=_OPUS_RATE, time_base=Fraction(1, _OPUS_RATE))
        stream.codec_context.layout = "mono" if record.channels == 1 else "stereo"
        track.rate = _OPUS_RATE
    else:
        if first.size is None:
            raise ExportError(f"track {record.key}: its first frame gives no picture size")
        width, height = track.size = first.size
        if name == "vp9":
            # MP4's vpcC box needs the pixel format, which only a codec context carries:
            # the libvpx-vp9 encoder is opened for it, never fed (VP9 profile 0, 8 bits)
            stream = output.add_stream("libvpx-vp9", width=width, height=height,
                                       time_base=Fraction(1, _VIDEO_RATE))
        else:
            stream = output.add_mux_stream(name, width=width, height=height,
                                           time_base=Fraction(1, _VIDEO_RATE))
    stream.metadata["title"] = record.key
    track.stream = stream


def _packet(track: _Track, data: bytes, pts: int, keyframe: bool, duration: int) -> av.Packet:
    packet = av.Packet(data)
    packet.pts = packet.dts = pts
    packet.time_base = Fraction(1, track.rate)
    packet.duration = duration
    packet.is_keyframe = keyframe
    packet.stream = track.stream
    return packet


def _mux_audio(output, track: _Track, pts: int, frame: Frame) -> None:
    samples = codecs.opus_packet_samples(frame.data)
    if track.first_pts is not None:
        hole = pts - track.end_pts
        if abs(hole) <= _SNAP_SAMPLES:
            pts = track.end_pts  # contiguous: clock rounding, not a hole
        elif hole > 0:
            for offset, silence in codecs.opus_silence(hole):
                fill = track.end_pts + offset
                output.mux(_packet(track, silence, fill, True, codecs.opus_packet_samples(silence)))
                track.silent += 1
        pts = max(pts, track.last_pts + 1)
    else:
        track.first_pts = pts
    output.mux(_packet(track, frame.data, pts, True, samples))
    track.last_pts, track.end_pts = pts, pts + samples
    track.written += 1


def _mux_video(output, track: _Track, pts: int, frame: Frame | None) -> None:
    """Mux the held frame now that the next one (or the end, ``frame`` None) is known:
    its duration lasts until the next frame (the last one keeps the previous duration)."""
    held = track.held
    interval = track.interval
    if frame is not None:
        pts = max(pts, track.last_pts + 1)
        if held is not None:
            interval = track.interval = pts - held.pts
    if held is not None:
        held.duration = interval
        track.end_pts = held.pts + interval
        output.mux(held)  # (which rebases the packet to the stream's time base)
    track.held = None
    if frame is None:
        return
    if track.first_pts is None:
        track.first_pts = pts
    track.held = _packet(track, frame.data, pts, frame.keyframe, 0)
    track.last_pts = pts
    track.written += 1


def _numbered(n: int, first: tuple[float, Frame], rest: Iterator[tuple[float, Frame]]
              ) -> Iterator[tuple[float, int, Frame]]:
    yield (first[0], n, first[1])
    for wall, frame in rest:
        yield wall, n, frame


def _open_output(out: pathlib.Path):
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return tmp, os.fdopen(fd, "w+b")


def export_recording(recording_dir: pathlib.Path, out: pathlib.Path, *,
                     progress: Callable[[int, int], None] | None = None) -> ExportResult:
    """Export the recording in ``recording_dir`` to ``out``; the container follows the
    extension (`CONTAINERS`). ``progress(done, total)`` is called as segments are read
    (each is read twice). Raises `RecordingNotFound`, `UnsupportedContainer` (naming the
    codec and the container) or `ExportError` (nothing to export, a failed mux)."""
    directory, out = pathlib.Path(recording_dir), pathlib.Path(out)
    container = container_for(out)
    try:
        manifest = Manifest.load(directory)
    except _NoManifest:
        raise RecordingNotFound(f"no recording in {directory} (no recording.json)") from None
    except ManifestError as exc:
        raise ExportError(f"recording in {directory} cannot be read: {exc}") from None
    _check_codecs(manifest, out, container)
    total = 2 * sum(len(t.segments) for t in manifest.tracks)
    done = 0

    def tick(_segment) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    timelines = build_timelines(directory, manifest, on_segment=tick)
    problems = [p for t in timelines for p in t.problems]
    heads: list[tuple[_Track, tuple[float, Frame]]] = []
    for timeline in timelines:
        if not timeline.streams:
            if timeline.track.segments:
                problems.append(f"{timeline.track.key}: no readable packet")
            continue
        track = _Track(timeline, iter(()))
        track.frames = _frames(directory, timeline, track.stats, tick)
        first = next(track.frames, None)
        if first is None:
            problems.append(f"{timeline.track.key}: no complete frame"
                            + (" (no key frame)" if timeline.track.kind == "video" else ""))
            continue
        heads.append((track, first))
    if not heads:
        raise ExportError(f"recording {manifest.recording_id} has no frame to export"
                          + (f" ({'; '.join(problems)})" if problems else ""))
    zero = min(first[0] for _, first in heads)
    try:
        tmp, sink = _open_output(out)
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}") from None
    try:
        with sink, av.open(sink, "w", format=container.name) as output:
            output.metadata["title"] = f"Dockcast recording {manifest.recording_id}"
            for track, (_, frame) in heads:
                _add_stream(output, container, track, frame)
            tracks = [track for track, _ in heads]
            merged = heapq.merge(*(_numbered(n, first, track.frames)
                                   for n, (track, first) in enumerate(heads)),
                                 key=lambda item: (item[0], item[1]))
            for wall, n, frame in merged:
                track = tracks[n]
                pts = round((wall - zero) * track.rate)
                if track.timeline.track.kind == "audio":
                    _mux_audio(output, track, pts, frame)
                else:
                    _mux_video(output, track, pts, frame)
            for track in tracks:
                if track.held is not None:
                    _mux_video(output, track, 0, None)
        os.replace(tmp, out)
    except (av.FFmpegError, ValueError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, ExportError):
            raise
        raise ExportError(f"exporting recording {manifest.recording_id} to {out} failed: "
                          f"{exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if progress is not None and done < total:
        progress(total, total)  # segments of tracks with nothing to export were read once
    return _result(out, container, tracks, problems)


def _result(out: pathlib.Path, container: Container, tracks: list[_Track],
            problems: list[str]) -> ExportResult:
    streams = []
    for index, track in enumerate(tracks):
        record = track.timeline.track
        stats = track.stats
        problems.extend(f"{record.key}: {p}" for p in stats.problems)
        streams.append(ExportedStream(
            index, record.key, record.kind, record.codec, track.written, track.silent,
            stats.dropped_incomplete + stats.dropped_malformed + stats.dropped_before_keyframe,
            (track.first_pts or 0) / track.rate, track.end_pts / track.rate,
            track.size))
    return ExportResult(out, container.name, tuple(streams),
                        max(s.end for s in streams), {s.track: s.frames for s in streams},
                        tuple(problems))
