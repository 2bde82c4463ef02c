"""Playback of recordings: export to a media file by remuxing, never transcoding.

`export_recording` reads a recording written by ``plugins.recorder`` (MJR segments and
``recording.json``) and writes WebM (VP8/VP9 + Opus), MP4 (H.264/VP9 + Opus) or Ogg
(Opus only) with PyAV: each RTP stream is depacketized back into codec frames, each
frame placed on the recording's wall clock, audio and video in sync
(``docs/export.md``). The parts: ``assembler`` (a stream's packets into frames:
order, loss, key frames), ``depacketize`` (each codec's payloads into its frame),
``codecs`` (the bitstream facts a muxer needs), ``timeline`` (RTP timestamps to wall
clock) and ``export`` (containers and muxing).

    signalling.errors.SignallingError
    └── PlaybackError (also ValueError)   internal      base of the errors below
        ├── DepacketizeError              bad_request   payloads that do not form a frame
        │   └── codecs.CodecDataError     bad_request   a codec header that cannot be read
        └── ExportError                   bad_request   the recording cannot be exported
            ├── RecordingNotFound         not_found     no recording.json there
            └── UnsupportedContainer      bad_request   unknown extension, or a codec the
                                                        container cannot hold
"""

from .errors import (
    DepacketizeError,
    ExportError,
    PlaybackError,
    RecordingNotFound,
    UnsupportedContainer,
)
from .export import CONTAINERS, ExportedStream, ExportResult, export_recording

__all__ = [
    "export_recording",
    "ExportResult",
    "ExportedStream",
    "CONTAINERS",
    "PlaybackError",
    "DepacketizeError",
    "ExportError",
    "RecordingNotFound",
    "UnsupportedContainer",
]
