"""Synchronised marks for A/V sync tests: a white video frame and a 1 kHz beep at the
same instants, and the functions that find them again in a decoded file.

Both tracks are paced from one shared start, so mark ``k`` is sent at ``start +
FIRST_MARK_S + k * MARK_PERIOD_S`` on both; a recording that keeps audio and video in
sync shows each flash within a frame of its beep.
"""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy
from aiortc import MediaStreamTrack

FIRST_MARK_S = 0.5
MARK_PERIOD_S = 1.0
BEEP_S = 0.1
VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_FRAME = 960  # 20 ms


def _is_mark(t: float, width: float) -> bool:
    if t < FIRST_MARK_S:
        return False
    phase = (t - FIRST_MARK_S) % MARK_PERIOD_S
    return phase < width


class MarkClock:
    """The start both tracks pace themselves from."""

    def __init__(self) -> None:
        self.start: float | None = None

    def begin(self) -> float:
        if self.start is None:
            self.start = time.monotonic()
        return self.start


class FlashVideoTrack(MediaStreamTrack):
    """Dark frames at ``fps``, a white one at each mark."""

    kind = "video"

    def __init__(self, clock: MarkClock, fps: int = 30, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.clock, self.fps, self.width, self.height = clock, fps, width, height
        self.sent = 0

    async def recv(self) -> av.VideoFrame:
        start = self.clock.begin()
        t = self.sent / self.fps
        await asyncio.sleep(max(0.0, start + t - time.monotonic()))
        value = 255 if _is_mark(t, 1.0 / self.fps) else 16
        image = numpy.full((self.height, self.width, 3), value, numpy.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = self.sent * (VIDEO_CLOCK // self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.sent += 1
        return frame


class BeepAudioTrack(MediaStreamTrack):
    """Silence in 20 ms frames, a 1 kHz beep of ``BEEP_S`` at each mark."""

    kind = "audio"

    def __init__(self, clock: MarkClock) -> None:
        super().__init__()
        self.clock = clock
        self.sent = 0

    async def recv(self) -> av.AudioFrame:
        start = self.clock.begin()
        t0 = self.sent * AUDIO_FRAME / AUDIO_RATE
        await asyncio.sleep(max(0.0, start + t0 - time.monotonic()))
        t = t0 + numpy.arange(AUDIO_FRAME) / AUDIO_RATE
        beeping = numpy.array([_is_mark(x, BEEP_S) for x in t])
        samples = (numpy.sin(2 * numpy.pi * 1000 * t) * 16000 * beeping).astype(numpy.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self.sent * AUDIO_FRAME
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self.sent += 1
        return frame


def flashes(path: str) -> tuple[list[float], list[bool], int]:
    """The times (s) of the bright video frames that start a flash, the keyframe flag of
    every decoded frame, and the number of frames."""
    times, keys, previous = [], [], False
    with av.open(path) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            keys.append(frame.key_frame)
            bright = frame.to_ndarray(format="gray").mean() > 128
            if bright and not previous:
                times.append(float(frame.pts * frame.time_base))
            previous = bright
    return times, keys, len(keys)


def beeps(path: str) -> list[float]:
    """The onset times (s) of the beeps: the first loud 2.5 ms window after silence."""
    onsets, previous = [], False
    with av.open(path) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            data = frame.to_ndarray()
            scale = 32768.0 if numpy.issubdtype(data.dtype, numpy.integer) else 1.0
            channels = frame.layout.nb_channels
            if frame.format.is_planar:
                mono = data.astype(numpy.float64).mean(axis=0) / scale
            else:
                mono = data.astype(numpy.float64).reshape(-1, channels).mean(axis=1) / scale
            window = frame.sample_rate // 400
            start = float(frame.pts * frame.time_base)
            for i in range(0, len(mono) - window + 1, window):
                loud = numpy.sqrt(numpy.mean(mono[i:i + window] ** 2)) > 0.05
                if loud and not previous:
                    onsets.append(start + i / frame.sample_rate)
                previous = loud
    return onsets


def pair_offsets(video: list[float], audio: list[float], tolerance: float = 0.5) -> list[float]:
    """For each flash, the offset (s) to the nearest beep within ``tolerance``."""
    offsets = []
    for v in video:
        nearest = min(audio, key=lambda a: abs(a - v), default=None)
        if nearest is not None and abs(nearest - v) <= tolerance:
            offsets.append(v - nearest)
    return offsets


def write_capture_files(directory, seconds: int = 4, fps: int = 30, width: int = 320,
                        height: int = 240) -> tuple[str, str]:
    """A Y4M video and a WAV audio file with the same marks (a white frame, a beep) for
    Chromium's fake capture (``--use-file-for-fake-video-capture`` and
    ``--use-file-for-fake-audio-capture``), which loops both from the capture's start."""
    import pathlib
    import wave

    directory = pathlib.Path(directory)
    video, audio = directory / "marks.y4m", directory / "marks.wav"
    with open(video, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        chroma = bytes([128]) * (width * height // 2)
        for i in range(seconds * fps):
            luma = 235 if _is_mark(i / fps, 1.0 / fps) else 16
            out.write(b"FRAME\n" + bytes([luma]) * (width * height) + chroma)
    t = numpy.arange(seconds * AUDIO_RATE) / AUDIO_RATE
    beeping = numpy.array([_is_mark(x, BEEP_S) for x in t])
    samples = (numpy.sin(2 * numpy.pi * 1000 * t) * 16000 * beeping).astype("<i2")
    with wave.open(str(audio), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(AUDIO_RATE)
        out.writeframes(samples.tobytes())
    return str(video), str(audio)
