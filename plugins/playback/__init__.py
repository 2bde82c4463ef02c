"""Playback of recordings: export to a media file by remuxing, never transcoding.

`export_recording` reads a recording written by ``plugins.recorder`` (MJR segments and
``recording.json``) and writes WebM (VP8/VP9 + Opus), MP4 (H.264/VP9 + Opus) or Ogg
(Opus only) with PyAV: each RTP stream is depacketized back into codec frames, each
frame placed on the recording's wall clock, audio and video in sync
(``docs/export.md``). The parts: ``assembler`` (a stream's packets into frames:
order, loss, key frames), ``depacketize`` (each codec's payloads into its frame),
``codecs`` (the bitstream facts a muxer needs), ``timeline`` (RTP timestamps to wall
clock) and ``export`` (containers and muxing).

`export_bundle` writes an evidence bundle (``bundle``): the media, the segments, the
session's audit log, the public key, the standalone verifier and a README, in one zip.
``content_credentials`` signs MP4 exports with a C2PA manifest (`export_signed_mp4`,
with the node's own certificate, `node_credentials`, or a deployment's,
`load_credentials`); WebM is not signed.

    signalling.errors.SignallingError
    └── PlaybackError (also ValueError)   internal      base of the errors below
        ├── DepacketizeError              bad_request   payloads that do not form a frame
        │   └── codecs.CodecDataError     bad_request   a codec header that cannot be read
        └── ExportError                   bad_request   the recording cannot be exported
            ├── RecordingNotFound         not_found     no recording.json there
            ├── UnsupportedContainer      bad_request   unknown extension, or a codec the
            │                                           container cannot hold
            ├── bundle.BundleError        not_found     no session or audit log to bundle
            └── content_credentials.ContentCredentialsError
                                          internal      C2PA credentials unusable, or the
                                                        SDK refused to sign
"""

from .bundle import BundleError, BundleResult, export_bundle, media_extension
from .content_credentials import (
    ASSERTION_LABEL,
    C2paCredentials,
    ContentCredentialsError,
    export_signed_mp4,
    load_credentials,
    node_credentials,
)
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
    "export_bundle",
    "BundleResult",
    "media_extension",
    "export_signed_mp4",
    "C2paCredentials",
    "node_credentials",
    "load_credentials",
    "ASSERTION_LABEL",
    "PlaybackError",
    "DepacketizeError",
    "ExportError",
    "RecordingNotFound",
    "UnsupportedContainer",
    "BundleError",
    "ContentCredentialsError",
]
