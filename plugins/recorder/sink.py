"""The packet path's side of a recording track: `TrackSink` only queues.

The node calls a sink once per RTP packet (and for sender reports, stream changes and
the end of the track) from its event loop. Each call appends one tuple to a deque and
returns: no I/O, no lock, no clock, nothing else allocated. The `RecordingWriter`'s
thread takes the tuples out (``deque.append`` and ``popleft`` are atomic in CPython).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["TrackInfo", "TrackSink"]

_RTP, _SR, _NEW, _CLOSE = range(4)  # the first item of each queued tuple


@dataclass(frozen=True)
class TrackInfo:
    """What the writer needs to know of a recorded producer. ``codec`` is the mime type
    (``video/VP8``, ``video/VP9``, ``video/H264``, ``audio/opus``)."""

    kind: str
    codec: str
    clock_rate: int
    payload_type: int
    channels: int | None = None
    track_id: str = ""
    participant_id: str = ""
    identity: str = ""
    source: str = ""

    @property
    def janus_codec(self) -> str:
        return self.codec.partition("/")[2].lower()


class TrackSink:
    """The packet path's side of one recording track. Every method only queues: call
    them from one thread (the node's event loop). ``data`` must not change afterwards."""

    def __init__(self, key: str, info: TrackInfo, max_pending: int) -> None:
        self.key = key
        self.info = info
        self._queue: deque[tuple] = deque()
        self._max_pending = max_pending
        self._video = info.kind == "video"
        self._stream = 0  # written by the caller's thread only
        self._written = -1  # the stream whose keyframe was written; the writer's thread only
        self._closed_at: float | None = None
        self.overflowed = 0

    def rtp(self, data: bytes, arrival: float, keyframe: bool = False) -> None:
        """One RTP packet; ``arrival`` in wall-clock seconds, ``keyframe`` whether it
        starts a keyframe (video). Beyond ``max_pending`` queued items (a stalled disk)
        and after the writer stopped, packets are counted in ``overflowed`` and dropped."""
        queue = self._queue
        if len(queue) < self._max_pending:
            queue.append((_RTP, data, arrival, keyframe))
        else:
            self.overflowed += 1

    def sender_report(self, ntp: int, rtp_ts: int, arrival: float) -> None:
        """An RTCP sender report of this track: RTP time ``rtp_ts`` is NTP time ``ntp``."""
        self._queue.append((_SR, ntp, rtp_ts, arrival))

    def new_stream(self, track_id: str, reason: str, at: float) -> None:
        """Another producer (or SSRC) continues this track: the current segment closes,
        and a gap ``{from, to, reason}`` is recorded when the next packet is written."""
        self._stream += 1
        self._closed_at = None
        self._queue.append((_NEW, track_id, reason, at))

    def close(self, at: float) -> None:
        """The track ends (the publisher left); its segment closes."""
        self._closed_at = at
        self._queue.append((_CLOSE, at))

    @property
    def waiting_for_keyframe(self) -> bool:
        """Video: true until the current stream's first keyframe was written."""
        return self._video and self._written != self._stream

    @property
    def closed(self) -> bool:
        return self._closed_at is not None
