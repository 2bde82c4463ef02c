"""Real VP8 and Opus RTP for the recorder tests: generated pictures and tones, encoded
and packetized by aiortc's own encoders, keyframes found the way the node finds them."""

from __future__ import annotations

import fractions
from dataclasses import dataclass

import av
import numpy as np
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from plugins.recorder import TrackInfo
from sfu.vp8 import vp8_is_keyframe

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
VIDEO_INFO = TrackInfo("video", "video/VP8", 90000, 96, None, "TR_v1", "PA_1", "alice", "camera")
AUDIO_INFO = TrackInfo("audio", "audio/opus", 48000, 111, 2, "TR_a1", "PA_1", "alice", "microphone")
WIDTH, HEIGHT = 160, 120
T0 = 1_700_000_000.0  # the tests' wall clock
VIDEO = "alice/camera/video"
AUDIO = "alice/microphone/audio"


@dataclass(frozen=True)
class Packet:
    data: bytes
    frame: int  # index of the picture or audio frame it carries
    keyframe: bool  # starts a keyframe (the node's detection)
    marker: bool


def vp8_packets(frames: int, *, keyframes: tuple[int, ...] = (), ssrc: int = 0x1234,
                first_seq: int = 1000, start_frame: int = 0) -> list[Packet]:
    """``frames`` pictures (a moving gradient) encoded as VP8; the first is a keyframe,
    and so is every index in ``keyframes``."""
    encoder = get_encoder(VP8)
    packets = []
    seq = first_seq
    for i in range(start_frame, start_frame + frames):
        picture = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        picture[:, :, 0] = (np.arange(WIDTH) + 4 * i) % 256
        picture[:, :, 1] = (np.arange(HEIGHT)[:, None] * 2 + i) % 256
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts = i
        frame.time_base = fractions.Fraction(1, 30)
        payloads, timestamp = encoder.encode(frame, force_keyframe=i in keyframes)
        for n, payload in enumerate(payloads):
            last = n == len(payloads) - 1
            rtp = RtpPacket(payload_type=VP8.payloadType, marker=int(last), sequence_number=seq & 0xFFFF,
                            timestamp=timestamp & 0xFFFFFFFF, ssrc=ssrc, payload=payload)
            packets.append(Packet(rtp.serialize(), i, vp8_is_keyframe(payload[:16]), last))
            seq += 1
    return packets


def opus_packets(frames: int, *, ssrc: int = 0x5678, first_seq: int = 2000) -> list[Packet]:
    """``frames`` 20 ms frames of a 440 Hz tone, encoded as Opus."""
    encoder = get_encoder(OPUS)
    packets = []
    t = np.arange(960) / 48000
    for i in range(frames):
        tone = (np.sin(2 * np.pi * 440 * (t + i * 0.02)) * 8000).astype(np.int16)
        samples = np.repeat(tone, 2).reshape(1, -1)  # interleaved stereo
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = i * 960
        frame.time_base = fractions.Fraction(1, 48000)
        payloads, timestamp = encoder.encode(frame)
        for payload in payloads:
            rtp = RtpPacket(payload_type=OPUS.payloadType, sequence_number=(first_seq + i) & 0xFFFF,
                            timestamp=timestamp & 0xFFFFFFFF, ssrc=ssrc, payload=payload)
            packets.append(Packet(rtp.serialize(), i, False, False))
    return packets


def feed(sink, packets, fps=30.0, start=T0):
    for p in packets:
        sink.rtp(p.data, start + p.frame / fps, p.keyframe)
