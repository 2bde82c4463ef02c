"""The recording writer: RTP packets in on the packet path, MJR segments out on a thread.

The node calls a `TrackSink` once per RTP packet of a recorded track. That call only
appends a tuple to the sink's deque: no I/O, no lock, no clock. One background thread
per `RecordingWriter` drains every sink each ``flush_interval`` seconds
(`RecordingWriter.drain_once`, which tests call directly instead of sleeping): it turns
the packets into MJR frames, writes them with one ``write`` per file per drain (the
bytes are then in the OS, so a SIGKILL loses at most what was not drained yet), rolls
segments, and rewrites the manifest at the end of a drain in which a segment opened or
closed, a gap or an anchor was recorded.

Rolling: a video segment rolls at the first keyframe after ``segment_seconds`` of
packets (by arrival time), or at ``max_segment_seconds`` regardless (the next segment
then has ``keyframe_first: false``); an audio segment rolls at ``segment_seconds``.
Video packets before the first keyframe of a stream are dropped, so every stream's
first segment starts on a keyframe. A closed segment is fsynced, hashed (SHA-256 of the
bytes written) and reported to ``on_segment_closed(SegmentClosed)``, which runs on the
writer's thread (or on the thread calling `RecordingWriter.drain_once` or
`RecordingWriter.stop`): a caller on an event loop must hop to it itself
(``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sfu import MalformedPacket
from sfu.rtp import parse_header
from signalling.errors import FixedCodeError

from .manifest import (
    MANIFEST_NAME,
    Anchor,
    Gap,
    Manifest,
    SegmentClosed,
    SegmentRecord,
    TrackRecord,
)
from .mjr import JANUS_CODECS, MjrError, MjrInfo, encode_frame, encode_header
from .sink import _NEW, _RTP, _SR, TrackInfo, TrackSink

__all__ = ["RecordingWriter", "WriterStats", "RecorderError", "ANCHOR_INTERVAL", "safe_name",
           "vp9_starts_keyframe"]

logger = logging.getLogger(__name__)

#: After a segment's first sender report, keep at most one per this many seconds.
ANCHOR_INTERVAL = 5.0
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")


class RecorderError(FixedCodeError, ValueError):
    """A writer argument or call refused: unsupported codec, a track after `stop`, a
    directory that already holds a recording, manifest fields that clash."""

    code = "internal"


def safe_name(key: str) -> str:
    """A track key as a file name, one to one: ``/`` becomes ``+``; letters, digits,
    ``.`` and ``-`` stay; every other byte (``_`` included) becomes ``_xx`` (hex)."""
    out = []
    for i, byte in enumerate(key.encode()):
        char = chr(byte)
        if char == "/":
            out.append("+")
        elif char in _SAFE and not (i == 0 and char == "."):
            out.append(char)
        else:
            out.append(f"_{byte:02x}")
    return "".join(out)


def vp9_starts_keyframe(data: bytes) -> bool:
    """Whether an RTP packet starts a VP9 keyframe (the node detects VP8 and H.264
    keyframes; VP9's is found here, off the packet path): the payload descriptor's B
    bit set, P (inter-picture predicted) clear, and spatial layer 0 when layers are
    signalled."""
    try:
        pos, end = parse_header(data)[5:7]
    except MalformedPacket:
        return False
    if pos >= end:
        return False
    first = data[pos]
    if first & 0x40 or not first & 0x08:
        return False
    if not first & 0x20:
        return True
    pos += 1
    if first & 0x80:  # I: a 7- or 15-bit picture id
        pos += 2 if pos < end and data[pos] & 0x80 else 1
    return pos < end and (data[pos] >> 1) & 0x07 == 0


@dataclass
class WriterStats:
    packets: int = 0  # written to a segment file (not only taken from a sink)
    bytes: int = 0
    segments_closed: int = 0
    dropped_before_keyframe: int = 0
    dropped_after_close: int = 0
    overflowed: int = 0
    errors: int = 0


class _OpenSegment:
    __slots__ = ("fd", "record", "started_at", "last_at", "buffer", "digest", "size",
                 "last_anchor", "buffered")

    def __init__(self, fd: int, record: SegmentRecord, started_at: float, header: bytes):
        self.fd = fd
        self.record = record
        self.started_at = started_at
        self.last_at = started_at
        self.buffer = bytearray(header)
        self.digest = hashlib.sha256()
        self.size = 0
        self.last_anchor: float | None = None
        self.buffered = 0  # packets in buffer, not written yet


class _TrackState:
    """The writer thread's state of one track (the sink is the packet path's)."""

    def __init__(self, sink: TrackSink, record: TrackRecord) -> None:
        self.sink = sink
        self.record = record
        self.name = safe_name(sink.key)
        self.track_id = sink.info.track_id
        self.segment: _OpenSegment | None = None
        self.next_n = 1
        self.stream = 0
        self.ended = False
        self.last_at: float | None = None
        self.pending_gap: tuple[float, str] | None = None
        self.pending_sr: tuple[int, int, float] | None = None
        self.vp9 = sink.info.janus_codec == "vp9"
        self.listed = False  # in the manifest's tracks
        self.overflow_seen = 0


class RecordingWriter:
    """Writes one recording: a directory of MJR segments and ``recording.json``.

    ``directory`` is the recording's own directory (created mode 0700; it must not hold
    a recording already); segment files are ``<safe key>-<n:04d>.mjr``, mode 0600.
    ``manifest_fields`` are extra top-level manifest keys (room, shipment_id,
    session_id). Call `start` for the thread, `track` per recorded stream, `stop` at the
    end.
    """

    def __init__(self, directory: pathlib.Path, recording_id: str, *,
                 segment_seconds: float = 30.0, max_segment_seconds: float = 60.0,
                 flush_interval: float = 0.25,
                 on_segment_closed: Callable[[SegmentClosed], Any] | None = None,
                 manifest_fields: dict[str, Any] | None = None,
                 max_pending: int = 50_000, started_at: float | None = None) -> None:
        if not 0 < segment_seconds <= max_segment_seconds:
            raise RecorderError(f"segment_seconds {segment_seconds} must be positive and at "
                                f"most max_segment_seconds {max_segment_seconds}")
        fields = dict(manifest_fields or {})
        clash = set(fields) & set(Manifest(recording_id).to_json())
        if clash:
            raise RecorderError(f"manifest_fields {sorted(clash)} clash with the manifest's own keys")
        self.directory = pathlib.Path(directory)
        self.recording_id = recording_id
        self.segment_seconds = segment_seconds
        self.max_segment_seconds = max_segment_seconds
        self.flush_interval = flush_interval
        self.on_segment_closed = on_segment_closed
        self.stats = WriterStats()
        self._max_pending = max_pending
        self._tracks: dict[str, _TrackState] = {}  # replaced, never mutated: read lock-free
        self._lock = threading.RLock()  # one drain at a time; guards the manifest
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._dirty = False
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        if (self.directory / MANIFEST_NAME).exists():
            raise RecorderError(f"{self.directory} already holds a recording")
        self.manifest = Manifest(recording_id, "recording",
                                 time.time() if started_at is None else started_at, fields=fields)
        self.manifest.save(self.directory)

    # -- the caller's side ---------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (drains every ``flush_interval`` seconds)."""
        if self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"recorder-{self.recording_id}")
            self._thread.start()

    def track(self, key: str, info: TrackInfo) -> TrackSink:
        """The sink of recording track ``key`` (e.g. ``"<identity>/camera/video"``).

        The same key again (the publisher came back, or another producer continues the
        stream) returns the same sink: if its producer changed or it was closed, a new
        stream starts (reason ``republished``), with a gap marker before it. A key keeps
        its codec: another codec under the same key is a `RecorderError`.
        """
        if self._stopped:
            raise RecorderError(f"recording {self.recording_id} is stopped")
        if info.kind not in JANUS_CODECS or info.janus_codec not in JANUS_CODECS[info.kind]:
            raise RecorderError(f"track {key}: cannot record {info.kind} codec {info.codec!r}")
        state = self._tracks.get(key)
        if state is not None:
            sink = state.sink
            if info.codec.lower() != sink.info.codec.lower() or info.kind != sink.info.kind:
                # a track's segments share one codec: exports and players rely on it
                raise RecorderError(f"track {key} was recorded as {sink.info.codec}, not "
                                    f"{info.codec}: record this one under another key")
            if sink.closed or info.track_id != sink.info.track_id:
                at = sink._closed_at if sink._closed_at is not None else time.time()
                sink.info = info
                sink.new_stream(info.track_id, "republished", at)
            return sink
        sink = TrackSink(key, info, self._max_pending)
        record = TrackRecord(key, info.kind, info.codec, info.clock_rate, info.payload_type,
                             info.channels, [info.track_id] if info.track_id else [],
                             info.identity, info.source)
        self._tracks = {**self._tracks, key: _TrackState(sink, record)}
        return sink

    def update_fields(self, **fields: Any) -> None:
        """Set extra manifest keys (e.g. the session id once known); saved at the next drain."""
        with self._lock:
            self.manifest.fields.update(fields)
            self._dirty = True

    def stop(self, at: float | None = None) -> None:
        """Drain what is queued, close every segment (fsync, hash, callback), and write
        the final manifest (state ``stopped``). Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for state in self._tracks.values():
            state.sink._max_pending = 0  # packets still tapped after this are dropped
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        at = time.time() if at is None else at
        closed: list[SegmentClosed] = []
        with self._lock:
            self._drain(closed)
            for state in self._tracks.values():
                self._close_segment(state, at, closed)
            self.manifest.state = "stopped"
            self.manifest.stopped_at = at
            self.manifest.save(self.directory)
            self._dirty = False
        self._notify(closed)

    def drain_once(self) -> None:
        """One drain in the caller's thread: what the writer thread does in a loop."""
        closed: list[SegmentClosed] = []
        with self._lock:
            if self._stopped:
                return  # stop() drained for the last time
            self._drain(closed)
            if self._dirty:
                self.manifest.save(self.directory)
                self._dirty = False
        self._notify(closed)

    # -- the writer's side ---------------------------------------------------------

    def _run(self) -> None:
        while not self._wake.wait(self.flush_interval):
            try:
                self.drain_once()
            except Exception:  # a full disk must not end the recording thread
                self.stats.errors += 1
                logger.exception("recording %s: drain failed", self.recording_id)

    def _notify(self, closed: list[SegmentClosed]) -> None:
        for event in closed:
            if self.on_segment_closed is not None:
                try:
                    self.on_segment_closed(event)
                except Exception:
                    logger.exception("recording %s: on_segment_closed failed for %s",
                                     self.recording_id, event.file)

    def _drain(self, closed: list[SegmentClosed]) -> None:
        for state in self._tracks.values():
            if not state.listed:
                self.manifest.tracks.append(state.record)
                state.listed = self._dirty = True
            queue = state.sink._queue
            for _ in range(len(queue)):  # only what is there now; the rest next time
                item = queue.popleft()
                tag = item[0]
                if tag == _RTP:
                    self._packet(state, item[1], item[2], item[3], closed)
                elif tag == _SR:
                    self._sender_report(state, item[1], item[2], item[3])
                elif tag == _NEW:
                    self._new_stream(state, item[1], item[2], item[3], closed)
                else:
                    self._close_segment(state, item[1], closed)
                    state.ended = True
            overflowed = state.sink.overflowed
            self.stats.overflowed += overflowed - state.overflow_seen
            state.overflow_seen = overflowed
            if state.segment is not None:
                self._write(state.segment)

    def _packet(self, state: _TrackState, data: bytes, arrival: float, keyframe: bool,
                closed: list[SegmentClosed]) -> None:
        if state.ended:
            self.stats.dropped_after_close += 1
            return
        video = state.record.kind == "video"
        if state.vp9 and not keyframe:
            keyframe = vp9_starts_keyframe(data)
        if video and state.sink._written != state.stream and not keyframe:
            self.stats.dropped_before_keyframe += 1
            return
        segment = state.segment
        if segment is not None:
            age = arrival - segment.started_at
            if age >= self.max_segment_seconds or (
                    age >= self.segment_seconds and (keyframe or not video)):
                self._close_segment(state, arrival, closed)
                segment = None
        if segment is None:
            segment = self._open_segment(state, arrival, keyframe or not video)
        if video and keyframe:
            state.sink._written = state.stream
        offset = max(0, min(round((arrival - segment.started_at) * 1000), 0xFFFFFFFF))
        try:
            segment.buffer += encode_frame(offset, data)
        except MjrError:
            self.stats.errors += 1  # not RTP (shorter than a header): nothing to record
            return
        segment.record.packets += 1
        segment.last_at = state.last_at = arrival
        segment.buffered += 1

    def _sender_report(self, state: _TrackState, ntp: int, rtp_ts: int, arrival: float) -> None:
        segment = state.segment
        if segment is None:
            state.pending_sr = (ntp, rtp_ts, arrival)  # anchors the next segment
        elif segment.last_anchor is None or arrival - segment.last_anchor >= ANCHOR_INTERVAL:
            state.record.anchors.append(Anchor(ntp, rtp_ts, arrival, segment.record.file))
            segment.last_anchor = arrival
            self._dirty = True

    def _new_stream(self, state: _TrackState, track_id: str, reason: str, at: float,
                    closed: list[SegmentClosed]) -> None:
        self._close_segment(state, at, closed)
        state.stream += 1
        state.ended = False
        state.track_id = track_id
        if track_id and track_id not in state.record.track_ids:
            state.record.track_ids.append(track_id)
        state.pending_gap = (state.last_at if state.last_at is not None else at, reason)
        state.pending_sr = None  # the old stream's clock mapping
        self._dirty = True

    def _open_segment(self, state: _TrackState, arrival: float, keyframe_first: bool) -> _OpenSegment:
        n = state.next_n
        state.next_n += 1
        name = f"{state.name}-{n:04d}.mjr"
        info = state.sink.info
        first_us = round(arrival * 1_000_000)
        tag = {"recording_id": self.recording_id, "key": state.sink.key, "n": n,
               "track_id": state.track_id, "keyframe_first": keyframe_first,
               "mime": info.codec, "clock_rate": info.clock_rate,
               "payload_type": info.payload_type, "channels": info.channels,
               "identity": info.identity, "source": info.source}
        try:
            header = encode_header(MjrInfo(info.kind, info.janus_codec, first_us, first_us,
                                           {"x-dockcast": tag}))
        except MjrError:  # very long names: keep what recovery needs
            tag = {k: tag[k] for k in ("key", "n", "track_id", "keyframe_first")}
            header = encode_header(MjrInfo(info.kind, info.janus_codec, first_us, first_us,
                                           {"x-dockcast": tag}))
        fd = os.open(self.directory / name,
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        record = SegmentRecord(name, arrival, state.track_id, keyframe_first)
        state.record.segments.append(record)
        state.segment = segment = _OpenSegment(fd, record, arrival, header)
        if state.pending_gap is not None:
            start, reason = state.pending_gap
            state.record.gaps.append(Gap(start, arrival, reason))
            state.pending_gap = None
        if state.pending_sr is not None:
            ntp, rtp_ts, at = state.pending_sr
            state.record.anchors.append(Anchor(ntp, rtp_ts, at, name))
            segment.last_anchor = at
            state.pending_sr = None
        self._dirty = True
        return segment

    def _write(self, segment: _OpenSegment) -> None:
        """One write of everything buffered (looping only on a short write)."""
        if not segment.buffer:
            return
        data = bytes(segment.buffer)
        segment.buffer.clear()
        view = memoryview(data)
        while view:
            view = view[os.write(segment.fd, view):]
        segment.digest.update(data)
        segment.size += len(data)
        self.stats.bytes += len(data)
        self.stats.packets += segment.buffered  # counted once in the file
        segment.buffered = 0

    def _close_segment(self, state: _TrackState, at: float, closed: list[SegmentClosed]) -> None:
        segment = state.segment
        if segment is None:
            return
        state.segment = None
        try:
            self._write(segment)
            os.fsync(segment.fd)
        finally:
            os.close(segment.fd)
        record = segment.record
        record.closed_at = max(at, segment.last_at)
        record.sha256 = segment.digest.hexdigest()
        record.size = segment.size
        self.stats.segments_closed += 1
        self._dirty = True
        closed.append(SegmentClosed(self.recording_id, state.sink.key, record.file,
                                    record.sha256, record.size, record.packets,
                                    record.started_at, record.closed_at, record.keyframe_first))
