"""The errors of ``plugins.playback`` (the tree is drawn in the package docstring)."""

from __future__ import annotations

from signalling.errors import FixedCodeError

__all__ = [
    "PlaybackError",
    "DepacketizeError",
    "ExportError",
    "RecordingNotFound",
    "UnsupportedContainer",
]


class PlaybackError(FixedCodeError, ValueError):
    """Base of this package's errors; the message names the recording, track or file."""

    code = "internal"


class DepacketizeError(PlaybackError):
    """RTP payloads that do not form a frame of their codec (malformed or truncated)."""

    code = "bad_request"


class ExportError(PlaybackError):
    """A recording that cannot be exported: no media, unreadable segments, a failed mux."""

    code = "bad_request"


class RecordingNotFound(ExportError):
    """No recording with that id (no ``recording.json`` in its directory)."""

    code = "not_found"


class UnsupportedContainer(ExportError):
    """An output extension we do not write, or a codec the container cannot hold."""

    code = "bad_request"
