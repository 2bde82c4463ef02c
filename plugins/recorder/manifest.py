"""The recording manifest, ``recording.json``: what a recording holds, and crash recovery.

One manifest per recording directory, beside the segment files::

    {"version": 1, "recording_id", "state": "recording" | "stopped" | "interrupted",
     "started_at", "stopped_at", ...fields (room, shipment_id, session_id...),
     "tracks": [{"key", "kind", "codec", "clock_rate", "payload_type", "channels",
                 "track_ids": [...], "identity", "source",
                 "segments": [{"file", "started_at", "closed_at", "packets", "sha256",
                               "size", "keyframe_first", "track_id", "recovered"?}],
                 "anchors": [{"ntp", "rtp_ts", "arrival", "segment"}],
                 "gaps": [{"from", "to", "reason"}]}],
     "unreadable": [{"file", "problem", "sha256"?, "size"?}]}

Times are wall-clock seconds (``time.time()``). A segment whose ``sha256`` is null is
open: the writer was still appending to it. `Manifest.save` replaces the file
atomically (temporary file, fsync, rename, fsync of the directory), so a reader sees the
previous manifest or the next one, never a mix.

After a crash, `Manifest.load` reads every open or unlisted ``*.mjr`` file with
`read_mjr` and says for each how many packets survived and where it stopped
(``recovered``); the state becomes ``interrupted``. `Manifest.recover` then closes those
segments for good (SHA-256 and size of the files as they are: a torn tail is kept, not
cut, and the reader skips it) and returns them as `SegmentClosed` records to audit.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from dataclasses import asdict, dataclass, field
from typing import Any

from signalling.errors import FixedCodeError

from .mjr import MjrError, read_mjr

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "ManifestError",
    "RecordingNotFound",
    "SegmentClosed",
    "Recovered",
    "SegmentRecord",
    "Anchor",
    "Gap",
    "TrackRecord",
    "Manifest",
    "ntp_to_unix",
    "hash_file",
    "write_atomically",
]

MANIFEST_NAME = "recording.json"
MANIFEST_VERSION = 1
_NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_STATES = frozenset({"recording", "stopped", "interrupted"})
_OWN_KEYS = frozenset({"version", "recording_id", "state", "started_at", "stopped_at",
                       "tracks", "unreadable"})


class ManifestError(FixedCodeError, ValueError):
    """``recording.json`` cannot be read or written; the message names the file."""

    code = "internal"


class RecordingNotFound(ManifestError):
    """The directory holds no ``recording.json``."""

    code = "not_found"


def ntp_to_unix(ntp: int) -> float:
    """A 64-bit NTP timestamp (an RTCP sender report's) as Unix seconds."""
    return (ntp >> 32) - _NTP_UNIX_OFFSET + (ntp & 0xFFFFFFFF) / 2**32


def hash_file(path: pathlib.Path) -> tuple[str, int]:
    """``(sha256 hex, size)`` of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def write_atomically(path: pathlib.Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600): temporary file, fsync, rename, fsync
    of the directory. A crash leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class SegmentClosed:
    """A segment that is complete on disk: what the audit log records."""

    recording_id: str
    track_key: str
    file: str
    sha256: str
    size: int
    packets: int
    started_at: float
    closed_at: float
    keyframe_first: bool


@dataclass
class Recovered:
    """What `Manifest.load` found in a segment the writer never closed: the whole
    packets, the byte offset where reading stopped, why (None: the file ended cleanly
    after a whole frame), and the arrival of the last whole packet."""

    packets: int
    stopped_at: int
    problem: str | None
    last_at: float | None = None


@dataclass
class SegmentRecord:
    file: str
    started_at: float
    track_id: str | None = None
    keyframe_first: bool = True
    closed_at: float | None = None
    packets: int = 0
    sha256: str | None = None
    size: int | None = None
    recovered: Recovered | None = None

    @property
    def open(self) -> bool:
        """True while the writer may still append (no hash yet)."""
        return self.sha256 is None


@dataclass
class Anchor:
    """An RTCP sender report: RTP timestamp ``rtp_ts`` was wall-clock ``ntp`` at the
    sender; it arrived at ``arrival``, while ``segment`` was being written."""

    ntp: int
    rtp_ts: int
    arrival: float
    segment: str | None

    @property
    def wall_clock(self) -> float:
        """The sender's wall clock for ``rtp_ts``, in Unix seconds."""
        return ntp_to_unix(self.ntp)


@dataclass
class Gap:
    """No media for this track from ``start`` to ``end`` (``from``/``to`` in JSON)."""

    start: float
    end: float
    reason: str


@dataclass
class TrackRecord:
    """One recording track: a logical stream (``<identity>/<source>/<kind>``) that may
    span several producers, each new one after a gap."""

    key: str
    kind: str
    codec: str
    clock_rate: int
    payload_type: int
    channels: int | None = None
    track_ids: list[str] = field(default_factory=list)
    identity: str = ""
    source: str = ""
    segments: list[SegmentRecord] = field(default_factory=list)
    anchors: list[Anchor] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["gaps"] = [{"from": g.start, "to": g.end, "reason": g.reason} for g in self.gaps]
        for segment in body["segments"]:
            if segment["recovered"] is None:
                del segment["recovered"]
        return body

    @classmethod
    def parse(cls, body: dict[str, Any]) -> TrackRecord:
        segments = []
        for s in body["segments"]:
            s = dict(s)
            recovered = s.pop("recovered", None)
            segments.append(SegmentRecord(**s, recovered=Recovered(**recovered) if recovered else None))
        return cls(
            key=body["key"], kind=body["kind"], codec=body["codec"],
            clock_rate=body["clock_rate"], payload_type=body["payload_type"],
            channels=body.get("channels"), track_ids=list(body.get("track_ids", [])),
            identity=body.get("identity", ""), source=body.get("source", ""),
            segments=segments, anchors=[Anchor(**a) for a in body.get("anchors", [])],
            gaps=[Gap(g["from"], g["to"], g["reason"]) for g in body.get("gaps", [])],
        )


@dataclass
class Manifest:
    """A recording's ``recording.json`` in memory. ``fields`` are the extra top-level
    keys the caller gave (room, shipment_id, session_id)."""

    recording_id: str
    state: str = "recording"
    started_at: float = 0.0
    stopped_at: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    tracks: list[TrackRecord] = field(default_factory=list)
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    version: int = MANIFEST_VERSION

    def track(self, key: str) -> TrackRecord | None:
        return next((t for t in self.tracks if t.key == key), None)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "recording_id": self.recording_id,
                "state": self.state, "started_at": self.started_at,
                "stopped_at": self.stopped_at, **self.fields,
                "tracks": [t.to_json() for t in self.tracks], "unreadable": self.unreadable}

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), indent=1, sort_keys=False).encode()

    @classmethod
    def parse(cls, body: Any, *, name: str = MANIFEST_NAME) -> Manifest:
        """A manifest from its JSON value; `ManifestError` names what is wrong."""
        if not isinstance(body, dict):
            raise ManifestError(f"{name}: not a JSON object")
        if body.get("version") != MANIFEST_VERSION:
            raise ManifestError(f"{name}: version {body.get('version')!r}, "
                                f"this reader knows {MANIFEST_VERSION}")
        if body.get("state") not in _STATES:
            raise ManifestError(f"{name}: state {body.get('state')!r} is not one of "
                                f"{sorted(_STATES)}")
        try:
            return cls(
                recording_id=str(body["recording_id"]), state=body["state"],
                started_at=float(body["started_at"]),
                stopped_at=None if body.get("stopped_at") is None else float(body["stopped_at"]),
                fields={k: v for k, v in body.items() if k not in _OWN_KEYS},
                tracks=[TrackRecord.parse(t) for t in body["tracks"]],
                unreadable=[dict(u) for u in body.get("unreadable", [])],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"{name}: malformed ({type(exc).__name__}: {exc})") from None

    def save(self, directory: pathlib.Path) -> None:
        """Write ``recording.json`` in ``directory`` atomically."""
        write_atomically(pathlib.Path(directory) / MANIFEST_NAME, self.dumps())

    @classmethod
    def read(cls, directory: pathlib.Path) -> Manifest:
        """The manifest as written, without recovery (for a recording still being
        written: its open segments are simply open)."""
        path = pathlib.Path(directory) / MANIFEST_NAME
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            raise RecordingNotFound(f"no {MANIFEST_NAME} in {directory}") from None
        except OSError as exc:
            raise ManifestError(f"{path}: {exc.strerror}") from None
        try:
            body = json.loads(text)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ManifestError(f"{path}: not JSON ({exc})") from None
        return cls.parse(body, name=str(path))

    @classmethod
    def load(cls, directory: pathlib.Path) -> Manifest:
        """Read a recording that no writer is writing, recovering after a crash.

        Segments listed as open and ``*.mjr`` files the manifest does not list are read
        with `read_mjr`; each gets ``recovered`` (packets, stopped_at, problem), and a
        recording that was not stopped becomes ``interrupted``. Unlisted files are put
        under the track their header names (``x-dockcast``); files that are not MJR go
        to ``unreadable``. Nothing is written: `recover` does that.
        """
        directory = pathlib.Path(directory)
        manifest = cls.read(directory)
        if manifest.state == "recording":
            manifest.state = "interrupted"
        listed = {s.file for t in manifest.tracks for s in t.segments}
        listed.update(u.get("file") for u in manifest.unreadable)
        for track in manifest.tracks:
            for segment in track.segments:
                if segment.open and segment.recovered is None:
                    _recover_listed(directory / segment.file, segment)
        for path in sorted(directory.glob("*.mjr")):
            if path.name not in listed:
                manifest._recover_unlisted(path)
        for track in manifest.tracks:
            track.segments.sort(key=lambda s: (s.started_at, s.file))
        return manifest

    def _recover_unlisted(self, path: pathlib.Path) -> None:
        try:
            found = read_mjr(path)
        except (MjrError, OSError) as exc:
            self.unreadable.append({"file": path.name, "problem": str(exc)})
            return
        tag = found.info.extra.get("x-dockcast")
        if not isinstance(tag, dict) or not isinstance(tag.get("key"), str):
            self.unreadable.append({"file": path.name, "problem": "no x-dockcast track key"})
            return
        track = self.track(tag["key"])
        if track is None:
            track = TrackRecord(
                key=tag["key"], kind=found.info.kind, codec=str(tag.get("mime", found.info.codec)),
                clock_rate=int(tag.get("clock_rate", 0)), payload_type=int(tag.get("payload_type", 0)),
                channels=tag.get("channels"), identity=str(tag.get("identity", "")),
                source=str(tag.get("source", "")))
            self.tracks.append(track)
        track_id = tag.get("track_id")
        if isinstance(track_id, str) and track_id not in track.track_ids:
            track.track_ids.append(track_id)
        segment = SegmentRecord(file=path.name, started_at=found.info.first_us / 1e6,
                                track_id=track_id if isinstance(track_id, str) else None,
                                keyframe_first=bool(tag.get("keyframe_first", True)))
        _set_recovered(segment, found)
        track.segments.append(segment)

    @classmethod
    def recover(cls, directory: pathlib.Path) -> list[SegmentClosed]:
        """Close what a crash left open, for good: `load`, then hash every recovered
        segment file as it is, set ``closed_at`` to its last packet's arrival and
        ``stopped_at`` to the latest, and save. Returns the newly closed segments."""
        directory = pathlib.Path(directory)
        manifest = cls.load(directory)
        closed = []
        for track in manifest.tracks:
            for segment in track.segments:
                if not segment.open or segment.recovered is None:
                    continue
                path = directory / segment.file
                if not path.exists():
                    continue  # nothing to hash; ``recovered.problem`` says so
                segment.sha256, segment.size = hash_file(path)
                segment.closed_at = segment.recovered.last_at or segment.started_at
                segment.packets = segment.recovered.packets
                closed.append(SegmentClosed(
                    manifest.recording_id, track.key, segment.file, segment.sha256,
                    segment.size, segment.packets, segment.started_at, segment.closed_at,
                    segment.keyframe_first))
        for entry in manifest.unreadable:
            path = directory / entry["file"]
            if "sha256" not in entry and path.exists():
                entry["sha256"], entry["size"] = hash_file(path)
        if manifest.stopped_at is None:
            ends = [s.closed_at for t in manifest.tracks for s in t.segments
                    if s.closed_at is not None]
            manifest.stopped_at = max(ends, default=manifest.started_at)
        manifest.save(directory)
        return closed


def _set_recovered(segment: SegmentRecord, found: Any) -> None:
    last = found.packets[-1].offset_ms / 1000 + found.info.first_us / 1e6 if found.packets else None
    segment.recovered = Recovered(len(found.packets), found.stopped_at, found.problem, last)
    segment.packets = len(found.packets)


def _recover_listed(path: pathlib.Path, segment: SegmentRecord) -> None:
    try:
        found = read_mjr(path)
    except FileNotFoundError:
        segment.recovered = Recovered(0, 0, "file missing")
        segment.packets = 0
    except (MjrError, OSError) as exc:
        segment.recovered = Recovered(0, 0, str(exc))
        segment.packets = 0
    else:
        _set_recovered(segment, found)
