"""Utterances out of a stream of audio: an energy voice detector, sans-IO.

`Segmenter.feed` takes mono samples (any rate, float32 in [-1, 1]) with the time of
their first sample, and returns the utterances they complete. A 30 ms frame is speech
when its RMS level is above ``threshold_dbfs``. An utterance starts at its first speech
frame (with ``pre_roll_s`` of what came before, so a soft onset is not cut), ends after
``min_silence_s`` without speech, or is cut at ``max_utterance_s`` (a long speech is
captioned piece by piece instead of all at the end); one with less than
``min_speech_s`` of speech is dropped (a cough, a click). A gap in time between two
feeds longer than ``max_gap_s`` (packets lost, or Opus DTX sending nothing in silence)
counts as silence.

Times are the caller's (seconds on any clock): ``start`` is the first speech frame's,
``end`` the end of the last speech frame; ``samples`` hold the pre-roll and the trailing
silence too.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["Segmenter", "Utterance"]


@dataclass(frozen=True, slots=True)
class Utterance:
    samples: np.ndarray
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


class Segmenter:
    def __init__(self, rate: int = 16_000, threshold_dbfs: float = -40.0, frame_s: float = 0.03,
                 min_silence_s: float = 0.6, min_speech_s: float = 0.3,
                 max_utterance_s: float = 12.0, pre_roll_s: float = 0.2,
                 max_gap_s: float = 0.25) -> None:
        if not (rate > 0 and frame_s > 0 and max_utterance_s > min_speech_s >= 0
                and min_silence_s > 0 and max_gap_s >= 0 and pre_roll_s >= 0):
            raise ValueError("segmenter: rate, frame_s, min_silence_s must be above 0 and "
                             "max_utterance_s above min_speech_s")
        self.rate = rate
        self.frame = max(1, round(frame_s * rate))
        self.frame_s = self.frame / rate
        self.threshold = 10.0 ** (threshold_dbfs / 20.0)
        self.min_silence = math.ceil(min_silence_s / self.frame_s)
        self.min_speech = math.ceil(min_speech_s / self.frame_s)
        self.max_frames = max(1, int(max_utterance_s / self.frame_s))
        self.max_gap_s = max_gap_s
        self._pre: deque[np.ndarray] = deque(maxlen=max(0, round(pre_roll_s / self.frame_s)))
        self._rest = np.zeros(0, np.float32)
        self._rest_t: float | None = None  # time of self._rest[0]
        self._frames: list[np.ndarray] = []  # the open utterance, pre-roll included
        self._start = 0.0
        self._end = 0.0
        self._speech = 0  # speech frames in the open utterance
        self._silence = 0  # silent frames since the last speech frame

    @property
    def open(self) -> bool:
        """Whether an utterance has started and not ended."""
        return bool(self._frames)

    def feed(self, samples: np.ndarray, start: float) -> list[Utterance]:
        """The utterances these samples (beginning at time ``start``) complete."""
        out: list[Utterance] = []
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._rest_t is not None:
            expected = self._rest_t + len(self._rest) / self.rate
            if start - expected > self.max_gap_s:  # nothing arrived for a while: silence
                self._close(out)
                self._pre.clear()
                self._rest = np.zeros(0, np.float32)
        if not len(self._rest):
            self._rest_t = start
        buffer = np.concatenate((self._rest, samples)) if len(self._rest) else samples
        whole = len(buffer) - len(buffer) % self.frame
        for i in range(0, whole, self.frame):
            self._frame(buffer[i:i + self.frame], self._rest_t + i / self.rate, out)
        self._rest = buffer[whole:].copy()
        self._rest_t += whole / self.rate
        return out

    def flush(self) -> list[Utterance]:
        """The open utterance, if it has enough speech: the end of the stream."""
        out: list[Utterance] = []
        self._close(out)
        self._rest, self._rest_t = np.zeros(0, np.float32), None
        self._pre.clear()
        return out

    def _frame(self, frame: np.ndarray, t: float, out: list[Utterance]) -> None:
        loud = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64)))) > self.threshold
        if not self._frames:
            if not loud:
                self._pre.append(frame)
                return
            self._frames = [*self._pre, frame]
            self._pre.clear()
            self._start, self._speech, self._silence = t, 0, 0
        else:
            self._frames.append(frame)
        if loud:
            self._speech += 1
            self._silence = 0
            self._end = t + self.frame_s
        else:
            self._silence += 1
        if self._silence >= self.min_silence or len(self._frames) >= self.max_frames:
            self._close(out)

    def _close(self, out: list[Utterance]) -> None:
        if self._frames and self._speech >= self.min_speech:
            out.append(Utterance(np.concatenate(self._frames), self._start, self._end))
        self._frames = []
        self._speech = self._silence = 0
