"""A packet corpus of real VP8 and Opus, encoded once and replayed by load publishers.

Load clients do no codec work: :func:`generate` encodes synthetic video (a scrolling
textured test pattern with a moving box) and audio (a warbling tone) with aiortc's own
encoders, which return RTP payloads already packetized (VP8 payload descriptors
included), at a realistic rate: about 500 kbit/s of VP8 at 30 fps with a keyframe every
few seconds, and Opus in 20 ms frames. :func:`load_or_generate` caches the result in the
results folder (never in the repository) under a name derived from the parameters.

Each :class:`CorpusPacket` carries its frame's capture offset (seconds from the
corpus start), its RTP timestamp offset (90 kHz video, 48 kHz audio), the payload,
the RTP marker and whether its frame is a keyframe.
"""

from __future__ import annotations

import fractions
import hashlib
import json
import math
import pathlib
import struct
from dataclasses import asdict, dataclass

from sfu.vp8 import vp8_is_keyframe

__all__ = ["CorpusParams", "CorpusPacket", "Corpus", "generate", "load_or_generate"]

MAGIC = b"DCBCORP1"
_RECORD = struct.Struct("!BBIdIH")  # kind, flags, frame, offset, timestamp, length
_FLAG_MARKER = 1
_FLAG_KEYFRAME = 2
_KINDS = ("video", "audio")


@dataclass(frozen=True)
class CorpusParams:
    seconds: float = 10.0
    width: int = 640
    height: int = 360
    fps: int = 30
    video_bitrate: int = 500_000
    keyframe_interval: float = 3.0
    audio_bitrate: int = 48_000
    seed: int = 1

    def key(self) -> str:
        """A short stable name for the cache file."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class CorpusPacket:
    kind: str          # "video" or "audio"
    frame: int         # frame index within its kind
    offset: float      # the frame's capture time, seconds from the corpus start
    timestamp: int     # RTP timestamp offset of the frame (90 kHz video, 48 kHz audio)
    payload: bytes     # RTP payload (VP8 descriptor + data, or one Opus frame)
    marker: bool       # RTP marker: last packet of a video frame
    keyframe: bool     # the packet belongs to a video keyframe


class Corpus:
    """Packets of both kinds, each list in send order."""

    def __init__(self, params: CorpusParams, packets: list[CorpusPacket]) -> None:
        self.params = params
        self.video = [p for p in packets if p.kind == "video"]
        self.audio = [p for p in packets if p.kind == "audio"]

    def frames(self, kind: str) -> list[list[CorpusPacket]]:
        """The packets of ``kind`` grouped by frame, in order."""
        frames: list[list[CorpusPacket]] = []
        for packet in self.video if kind == "video" else self.audio:
            if not frames or frames[-1][0].frame != packet.frame:
                frames.append([])
            frames[-1].append(packet)
        return frames

    @property
    def duration(self) -> float:
        return self.params.seconds

    def bitrate(self, kind: str) -> float:
        """Mean payload bitrate of ``kind`` in bit/s."""
        packets = self.video if kind == "video" else self.audio
        return 8 * sum(len(p.payload) for p in packets) / self.duration

    def summary(self) -> dict:
        video_frames = self.frames("video")
        return {
            "params": asdict(self.params),
            "video_packets": len(self.video),
            "video_frames": len(video_frames),
            "keyframes": sum(1 for f in video_frames if f[0].keyframe),
            "video_kbps": round(self.bitrate("video") / 1000, 1),
            "audio_packets": len(self.audio),
            "audio_kbps": round(self.bitrate("audio") / 1000, 1),
            "largest_payload": max((len(p.payload) for p in self.video + self.audio), default=0),
        }

    # -- file format: MAGIC, u32 header length, JSON params, then records

    def save(self, path: pathlib.Path) -> None:
        header = json.dumps(asdict(self.params)).encode()
        parts = [MAGIC, struct.pack("!I", len(header)), header]
        for packet in self.video + self.audio:
            flags = (_FLAG_MARKER if packet.marker else 0) | (_FLAG_KEYFRAME if packet.keyframe else 0)
            parts.append(_RECORD.pack(_KINDS.index(packet.kind), flags, packet.frame,
                                      packet.offset, packet.timestamp, len(packet.payload)))
            parts.append(packet.payload)
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(b"".join(parts))
        tmp.replace(path)

    @classmethod
    def load(cls, path: pathlib.Path) -> Corpus:
        data = pathlib.Path(path).read_bytes()
        if not data.startswith(MAGIC):
            raise ValueError(f"{path} is not a Dockcast bench corpus")
        pos = len(MAGIC)
        (length,) = struct.unpack_from("!I", data, pos)
        pos += 4
        params = CorpusParams(**json.loads(data[pos:pos + length]))
        pos += length
        packets = []
        while pos < len(data):
            if pos + _RECORD.size > len(data):
                raise ValueError(f"{path}: truncated record at byte {pos}")
            kind, flags, frame, offset, timestamp, size = _RECORD.unpack_from(data, pos)
            pos += _RECORD.size
            if pos + size > len(data) or kind >= len(_KINDS):
                raise ValueError(f"{path}: bad record at byte {pos}")
            packets.append(CorpusPacket(_KINDS[kind], frame, offset, timestamp,
                                        data[pos:pos + size], bool(flags & _FLAG_MARKER),
                                        bool(flags & _FLAG_KEYFRAME)))
            pos += size
        return cls(params, packets)


def _video_frames(params: CorpusParams, extra: int = 0):
    import numpy as np
    from av import VideoFrame

    rng = np.random.default_rng(params.seed)
    w, h = params.width, params.height
    # a texture twice as wide as the picture, scrolled a few pixels per frame
    texture = rng.integers(0, 256, size=(h, 2 * w), dtype=np.uint8)
    texture = ((texture.astype(np.uint16) + np.roll(texture, 1, axis=1)) // 2).astype(np.uint8)
    bars = np.repeat(np.linspace(16, 235, 8, dtype=np.uint8), w // 8 + 1)[:w]
    count = int(round(params.seconds * params.fps)) + extra
    for i in range(count):
        shift = (3 * i) % w
        y = ((texture[:, shift:shift + w].astype(np.uint16) + bars) // 2).astype(np.uint8)
        bx = int((w - 80) * (0.5 + 0.5 * math.sin(i / 20)))
        by = int((h - 80) * (0.5 + 0.5 * math.cos(i / 27)))
        y[by:by + 80, bx:bx + 80] = 235
        u = np.full((h // 2, w // 2), 128 + int(40 * math.sin(i / 50)), dtype=np.uint8)
        v = np.full((h // 2, w // 2), 128 + int(40 * math.cos(i / 50)), dtype=np.uint8)
        frame = VideoFrame.from_ndarray(np.concatenate([y, u.reshape(-1, w), v.reshape(-1, w)]),
                                        format="yuv420p")
        frame.pts = i * (90000 // params.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        yield i, frame


def _audio_frames(params: CorpusParams):
    import numpy as np
    from av import AudioFrame

    rate, samples = 48000, 960  # 20 ms
    count = int(round(params.seconds * 50))
    for i in range(count):
        t = (np.arange(samples) + i * samples) / rate
        tone = 0.3 * np.sin(2 * math.pi * (440 + 60 * np.sin(2 * math.pi * 0.5 * t)) * t)
        pcm = (tone * 32767).astype(np.int16)
        stereo = np.repeat(pcm, 2).reshape(1, -1)
        frame = AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = rate
        frame.pts = i * samples
        frame.time_base = fractions.Fraction(1, rate)
        yield i, frame


def generate(params: CorpusParams = CorpusParams()) -> Corpus:
    """Encode the synthetic corpus with aiortc's VP8 and Opus encoders (a few seconds)."""
    from aiortc.codecs import get_encoder
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    packets: list[CorpusPacket] = []
    vp8 = get_encoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96))
    vp8.target_bitrate = params.video_bitrate
    keyframe_every = max(1, int(round(params.keyframe_interval * params.fps)))
    # The encoder's first keyframe is several times the size of later ones: warm it up
    # for a second and keep what follows, so a looping publisher sends steady-state frames.
    warmup = params.fps
    for i, frame in _video_frames(params, extra=warmup):
        n = i - warmup
        payloads, timestamp = vp8.encode(frame, force_keyframe=(n % keyframe_every == 0))
        if n < 0:
            continue
        keyframe = bool(payloads) and vp8_is_keyframe(payloads[0])
        for j, payload in enumerate(payloads):
            packets.append(CorpusPacket("video", n, n / params.fps, n * (90000 // params.fps),
                                        payload, j == len(payloads) - 1, keyframe))

    opus = get_encoder(RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000,
                                             channels=2, payloadType=111))
    opus.codec.bit_rate = params.audio_bitrate
    frame_no = 0
    for _, frame in _audio_frames(params):
        payloads, timestamp = opus.encode(frame)
        for payload in payloads:
            packets.append(CorpusPacket("audio", frame_no, frame_no * 0.02, frame_no * 960,
                                        payload, False, False))
            frame_no += 1
    return Corpus(params, packets)


def load_or_generate(cache_dir: pathlib.Path, params: CorpusParams = CorpusParams()) -> Corpus:
    """The corpus for ``params`` from ``cache_dir``, generated and saved there if absent."""
    path = pathlib.Path(cache_dir) / f"corpus-{params.key()}.bin"
    if path.exists():
        try:
            corpus = Corpus.load(path)
            if corpus.params == params:
                return corpus
        except (ValueError, OSError, TypeError):
            pass  # regenerate a damaged or stale file
    corpus = generate(params)
    corpus.save(path)
    return corpus
