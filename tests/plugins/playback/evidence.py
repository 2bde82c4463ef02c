"""A node's data directory after an inspection: a real recording and its session's
audit log, for the bundle and C2PA tests.

The recording is made by the recorder's writer from aiortc-encoded RTP (``media``); the
audit log by ``plugins.audit.AuditLog`` with the node's key in ``<data>/keys/``, with a
``segment`` entry for every segment file the writer closed, as the node writes them.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

from plugins.audit import AuditLog, load_or_create_signing_key, public_key_text
from plugins.recorder import Manifest

from . import media

SESSION = "SE_1"  # what media.record puts in recording.json
VIDEO, AUDIO = "alice/camera/video", "alice/microphone/audio"


@dataclass
class Evidence:
    data: pathlib.Path
    recording: pathlib.Path  # <data>/recordings/<recording_id>
    public_key: str

    @property
    def audit(self) -> pathlib.Path:
        return self.data / "audit" / SESSION


def record(data: pathlib.Path, codec: str = "VP8", recording_id: str = "REC_1",
           seconds: float = 2.0) -> pathlib.Path:
    """A recording of one camera (``codec``) and one microphone, in ``<data>/recordings``."""
    return media.record(data / "recordings",
                        {VIDEO: [media.video(seconds, [0.5], codec=codec)],
                         AUDIO: [media.audio(seconds, [0.5])]}, recording_id=recording_id)


def log_session(data: pathlib.Path, recordings: list[pathlib.Path], *,
                close: bool = True) -> AuditLog | None:
    """Session ``SE_1``'s audit log covering ``recordings``: started, their segments,
    stopped, a checkpoint after each recording; closed (None returned) or left open."""
    key = load_or_create_signing_key(data)
    t = media.START
    log = AuditLog.create(data / "audit", SESSION, key, t, room="dock-7", shipment_id="SH-1")
    for directory in recordings:
        manifest = Manifest.load(directory)
        log.append("recording_started", {"recording_id": manifest.recording_id}, t + 1)
        for track in manifest.tracks:
            for s in track.segments:
                log.append("segment", {"recording_id": manifest.recording_id, "track": track.key,
                                       "file": s.file, "sha256": s.sha256, "size": s.size,
                                       "packets": s.packets}, t + 2)
        log.append("recording_stopped", {"recording_id": manifest.recording_id}, t + 3)
        log.checkpoint(t + 4)
        t += 10
    if not close:
        return log
    log.close(t)
    return None


def of(data: pathlib.Path, recording: pathlib.Path) -> Evidence:
    """The evidence of ``recording`` in the data directory ``data`` (the node's key is made
    if there is none yet)."""
    return Evidence(data, recording, public_key_text(load_or_create_signing_key(data)))


def make(data: pathlib.Path, codec: str = "VP8") -> Evidence:
    """One recording, ``REC_1``, and its closed session."""
    recording = record(data, codec)
    log_session(data, [recording])
    return of(data, recording)
