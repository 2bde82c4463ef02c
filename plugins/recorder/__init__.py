"""The recorder: every track of a room, as received, in Janus MJR segments.

Decrypted RTP packets are recorded without transcoding, one file per segment of one
recording track (a logical stream such as ``<identity>/camera/video``), in the Janus
MJR00002 format so that ``janus-pp-rec`` converts them too. A recording is a directory
``<recordings-dir>/<recording_id>/`` holding the segments and ``recording.json``.
``docs/recording.md`` describes the format and what survives a crash.

The parts: ``mjr`` (the file format and a reader that says where a torn file stops),
``sink`` (`TrackSink`: the packet path's side of a track, which only queues),
``writer`` (`RecordingWriter`: a thread that writes and rolls segments) and ``manifest`` (``recording.json``, crash recovery).

    signalling.errors.SignallingError
    ├── MjrError (also ValueError)          internal    not an MJR00002 file, or a header or frame that cannot be encoded
    ├── ManifestError (also ValueError)     internal    recording.json unreadable or malformed
    │   └── RecordingNotFound               not_found   no recording.json in the directory
    └── RecorderError (also ValueError)     internal    a writer argument or call refused
"""

from .manifest import (
    MANIFEST_NAME,
    Anchor,
    Gap,
    Manifest,
    ManifestError,
    RecordingNotFound,
    Recovered,
    SegmentClosed,
    SegmentRecord,
    TrackRecord,
    ntp_to_unix,
)
from .mjr import (
    MjrError,
    MjrInfo,
    MjrPacket,
    MjrSegment,
    encode_frame,
    encode_header,
    parse_mjr,
    read_mjr,
)
from .sink import TrackInfo, TrackSink
from .writer import (
    RecorderError,
    RecordingWriter,
    WriterStats,
    safe_name,
    vp9_starts_keyframe,
)

__all__ = [
    # the writer
    "RecordingWriter",
    "TrackSink",
    "TrackInfo",
    "WriterStats",
    "SegmentClosed",
    "safe_name",
    "vp9_starts_keyframe",
    # the manifest
    "Manifest",
    "TrackRecord",
    "SegmentRecord",
    "Anchor",
    "Gap",
    "Recovered",
    "MANIFEST_NAME",
    "ntp_to_unix",
    # the format
    "MjrInfo",
    "MjrPacket",
    "MjrSegment",
    "encode_header",
    "encode_frame",
    "parse_mjr",
    "read_mjr",
    # errors
    "MjrError",
    "ManifestError",
    "RecordingNotFound",
    "RecorderError",
]
