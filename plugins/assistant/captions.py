"""Live captions: a participant's audio decoded beside the forwarding path, transcribed,
and posted to the room as ``assistant.caption`` messages.

The path of a caption, and who runs each step:

1. `AudioTap.rtp` (the packet path, on the event loop) appends the packet to a bounded
   deque and returns; when the deque is full the oldest packet is dropped and counted.
   Nothing else runs there: forwarding never waits for captions.
2. The thread ``assistant-audio`` polls every captioned track's deque
   (`AudioStream.pump`): RTP to Opus frames (`plugins.playback.assembler.FrameAssembler`
   with the playback depacketizer), Opus decoded by PyAV, resampled to 16 kHz mono, cut
   into utterances by the energy detector (`plugins.assistant.segmenter`).
3. The thread ``assistant-speech`` transcribes one utterance at a time
   (`plugins.assistant.speech.WhisperTranscriber`). At most ``max_pending`` utterances
   wait for it; when transcription falls behind, the oldest waiting one is dropped and
   its seconds counted (``dockcast_assistant_caption_dropped_seconds_total{stage}``).
4. Back on the event loop, `CaptionEngine`'s ``post`` callback receives the `Caption`
   (the plugin translates it if configured and sends the room message).

``start`` and ``end`` are wall-clock Unix seconds (the node's clock): the arrival time of
the track's first decoded packet plus RTP time since then, so jitter does not move them.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import av

from plugins.playback.assembler import FrameAssembler, RtpView
from plugins.playback.depacketize import DepacketizeError, OpusFormat

from .segmenter import Segmenter, Utterance
from .speech import SAMPLE_RATE, Transcript

__all__ = ["IDLE_S", "TOPIC_CAPTION", "AudioStream", "AudioTap", "Caption", "CaptionEngine"]

log = logging.getLogger(__name__)

TOPIC_CAPTION = "assistant.caption"
_PACKET_SECONDS = 0.02  # what a dropped Opus packet is counted as (WebRTC's ptime)
IDLE_S = 1.0  # a track silent (no packets) this long ends its open utterance


@dataclass(frozen=True, slots=True)
class Caption:
    """One transcribed utterance of ``participant_id``'s track ``track_id``."""

    room: str
    participant_id: str
    track_id: str
    lang: str
    text: str
    start: float
    end: float

    def payload(self) -> dict[str, Any]:
        """The ``assistant.caption`` payload (translation fields are added by the caller)."""
        return {"participant_id": self.participant_id, "track_id": self.track_id,
                "lang": self.lang, "text": self.text, "start": round(self.start, 3),
                "end": round(self.end, 3)}


class AudioTap:
    """The `sfu.ProducerTap` of a captioned track: queues packets, never blocks."""

    __slots__ = ("packets", "limit", "dropped", "closed", "restarted")

    def __init__(self, limit: int = 500) -> None:
        self.packets: collections.deque[tuple[bytes, float]] = collections.deque()
        self.limit = limit  # 500 packets: 10 s of 20 ms Opus
        self.dropped = 0
        self.closed = False
        self.restarted = False

    def rtp(self, data: bytes, arrival: float, keyframe: bool) -> None:
        if len(self.packets) >= self.limit:
            self.packets.popleft()
            self.dropped += 1
        self.packets.append((bytes(data), arrival))

    def sender_report(self, ntp: int, rtp_ts: int, arrival: float) -> None:
        pass

    def stream_changed(self, ssrc: int) -> None:
        self.restarted = True  # new sequence numbers and timestamps: start over

    def producer_closed(self) -> None:
        self.closed = True


class AudioStream:
    """One captioned track's decoding state; only the ``assistant-audio`` thread uses it
    (after construction)."""

    def __init__(self, room: str, participant_id: str, track_id: str, lang: str | None,
                 tap: AudioTap, handle: Any, clock_rate: int = 48_000,
                 segmenter: Mapping[str, Any] | None = None) -> None:
        self.room, self.participant_id, self.track_id, self.lang = room, participant_id, track_id, lang
        self.tap = tap
        self.handle = handle  # the TrackTap: removed when captions stop
        self.clock_rate = clock_rate
        self.segmenter_options = dict(segmenter or {})
        self.bad_frames = 0
        self.last_arrival = 0.0
        self._reset()

    def _reset(self) -> None:
        self.assembler = FrameAssembler(OpusFormat(), reorder_window=8)
        self.decoder = av.CodecContext.create("opus", "r")
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self.segmenter = Segmenter(SAMPLE_RATE, **self.segmenter_options)
        self.anchor: tuple[float, int] | None = None  # (arrival, unwrapped RTP timestamp)

    def pump(self, now: float | None = None) -> list[Utterance]:
        """Decode what the tap queued; the utterances it completes. With ``now`` (wall
        clock), an utterance left open by a track that went quiet for ``IDLE_S`` (the
        publisher stopped sending: muted, or DTX) ends there."""
        out: list[Utterance] = []
        if now is not None and not self.tap.packets and self.segmenter.open \
                and now - self.last_arrival > IDLE_S:
            out += self.segmenter.flush()
        if self.tap.restarted:
            self.tap.restarted = False
            out += self.segmenter.flush()
            self._reset()
        while True:
            try:
                data, arrival = self.tap.packets.popleft()
            except IndexError:
                break
            self.last_arrival = arrival
            try:
                frames = self.assembler.push(RtpView.parse(data), arrival)
            except DepacketizeError:
                self.bad_frames += 1
                continue
            for frame in frames:
                out += self._decode(frame.data, frame.timestamp, frame.arrival)
        return out

    def finish(self) -> list[Utterance]:
        """The end of the track: what is still held."""
        out: list[Utterance] = []
        for frame in self.assembler.flush():
            out += self._decode(frame.data, frame.timestamp, frame.arrival)
        return out + self.segmenter.flush()

    def _decode(self, data: bytes, timestamp: int, arrival: float) -> list[Utterance]:
        if self.anchor is None:
            self.anchor = (arrival, timestamp)
        t = self.anchor[0] + (timestamp - self.anchor[1]) / self.clock_rate
        try:
            decoded = self.decoder.decode(av.Packet(data))
            chunks = [r.to_ndarray().reshape(-1) for f in decoded for r in self.resampler.resample(f)]
        except (av.error.FFmpegError, ValueError):
            self.bad_frames += 1
            return []
        out: list[Utterance] = []
        for chunk in chunks:
            out += self.segmenter.feed(chunk, t)
            t += len(chunk) / SAMPLE_RATE
        return out


@dataclass(frozen=True, slots=True)
class _Job:
    stream: AudioStream
    utterance: Utterance


class CaptionEngine:
    """The two caption threads (see the module docstring) and the tracks they serve.

    ``transcriber``: a loaded `plugins.assistant.speech.WhisperTranscriber` (anything
    with ``transcribe(samples, lang) -> Transcript``). ``post(caption)`` is called from
    the speech thread and must only hand the caption over (to the event loop).
    ``dropped(stage, seconds)`` counts audio dropped (``tap`` or ``transcription``).
    """

    def __init__(self, transcriber: Any, post: Callable[[Caption], None], *,
                 max_pending: int = 4, poll_s: float = 0.05,
                 dropped: Callable[[str, float], None] = lambda stage, seconds: None) -> None:
        self.transcriber = transcriber
        self.post = post
        self.max_pending = max(1, int(max_pending))
        self.poll_s = poll_s
        self.dropped = dropped
        self.streams: dict[str, AudioStream] = {}  # by track id
        self._lock = threading.Lock()
        self._jobs: collections.deque[_Job] = collections.deque()
        self._finish_later: collections.deque[AudioStream] = collections.deque()  # removed, to flush
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._audio, name="assistant-audio", daemon=True),
                         threading.Thread(target=self._speech, name="assistant-speech", daemon=True)]
        for thread in self._threads:
            thread.start()

    def add(self, stream: AudioStream) -> None:
        with self._lock:
            self.streams[stream.track_id] = stream

    def remove(self, track_id: str) -> AudioStream | None:
        """Stop captioning a track (its tap removed); what it still held is transcribed."""
        with self._lock:
            stream = self.streams.pop(track_id, None)
        if stream is not None:
            stream.handle.remove()
            stream.tap.closed = True  # the audio thread finishes it
            self._finish_later.append(stream)
        return stream

    def stop(self) -> None:
        """Stop both threads (the utterances still waiting are not transcribed)."""
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)
        with self._lock:
            for stream in self.streams.values():
                stream.handle.remove()
            self.streams.clear()

    # -- the audio thread ------------------------------------------------------------

    def _audio(self) -> None:
        while not self._stopping.wait(self.poll_s):
            with self._lock:
                streams = list(self.streams.values())
            for stream in streams:
                try:
                    utterances = stream.pump(time.time())
                    if stream.tap.closed:
                        utterances += stream.finish()
                        with self._lock:
                            if self.streams.get(stream.track_id) is stream:
                                del self.streams[stream.track_id]
                except Exception:  # noqa: BLE001 - one broken track must not stop the others
                    log.exception("assistant: captions of track %s failed", stream.track_id)
                    self.remove(stream.track_id)
                    continue
                self._queue(stream, utterances)
                if stream.tap.dropped:
                    dropped, stream.tap.dropped = stream.tap.dropped, 0
                    self.dropped("tap", dropped * _PACKET_SECONDS)
            while self._finish_later:
                stream = self._finish_later.popleft()
                self._queue(stream, stream.pump() + stream.finish())

    def _queue(self, stream: AudioStream, utterances: list[Utterance]) -> None:
        if not utterances:
            return
        with self._wake:
            for utterance in utterances:
                if len(self._jobs) >= self.max_pending:
                    lost = self._jobs.popleft()
                    self.dropped("transcription", lost.utterance.seconds)
                    log.warning("assistant: captions fall behind; %.1f s of %s dropped",
                                lost.utterance.seconds, lost.stream.track_id)
                self._jobs.append(_Job(stream, utterance))
            self._wake.notify()

    # -- the speech thread -----------------------------------------------------------

    def _speech(self) -> None:
        while True:
            with self._wake:
                while not self._jobs and not self._stopping.is_set():
                    self._wake.wait()
                if self._stopping.is_set():
                    return
                job = self._jobs.popleft()
            try:
                transcript: Transcript = self.transcriber.transcribe(job.utterance.samples,
                                                                     job.stream.lang)
            except Exception:  # noqa: BLE001 - a failed utterance is logged, the next one runs
                log.exception("assistant: transcription of %s failed", job.stream.track_id)
                continue
            if transcript.text:
                s = job.stream
                self.post(Caption(s.room, s.participant_id, s.track_id, transcript.lang,
                                  transcript.text, job.utterance.start, job.utterance.end))

