"""Real media for the export tests: a publisher's RTP, recorded by the real writer.

Pictures are black with a white *flash* at given instants; audio is silence with a
1 kHz *beep* starting at the same instants. aiortc's own encoders (VP8, H.264, Opus;
VP9 by PyAV's libvpx-vp9 and the RFC 9628 packetizer below) make the RTP payloads.
Packets get arrival times on the recorder's clock (a network delay per track, a little
jitter), and sender reports map each track's RTP clock to the publisher's NTP clock,
which runs ``clock_skew`` seconds away from the recorder's.
"""

from __future__ import annotations

import fractions
import pathlib
import random
import re
from dataclasses import dataclass, field

import av
import numpy as np
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from plugins.playback.assembler import FrameAssembler, RtpView
from plugins.recorder import RecordingWriter, TrackInfo
from sfu.h264 import h264_is_keyframe
from sfu.vp8 import vp8_is_keyframe

WIDTH, HEIGHT, FPS = 320, 240, 30
BEEP_SECONDS = 0.1
START = 1_700_000_000.0  # the recorder's wall clock when the publisher starts
_NTP_UNIX = 2_208_988_800

CODECS = {
    "VP8": RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
    "VP9": RTCRtpCodecParameters(mimeType="video/VP9", clockRate=90000, payloadType=98),
    "H264": RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102),
    "opus": RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2,
                                  payloadType=111),
}


@dataclass(frozen=True)
class Packet:
    arrival: float
    data: bytes
    keyframe: bool = False


@dataclass
class Stream:
    """One track's RTP as a publisher sent it: packets and sender reports, in arrival
    order, with the ``TrackInfo`` the recorder gets."""

    info: TrackInfo
    packets: list[Packet] = field(default_factory=list)
    reports: list[tuple[float, int, int]] = field(default_factory=list)  # arrival, ntp, rtp_ts
    frames: int = 0


@dataclass
class _Sender:
    """Packetizes one track: sequence numbers, timestamps, a sender report a second."""

    out: Stream
    pt: int
    ssrc: int
    seq: int
    ts: int
    start: float
    clock_skew: float
    report_every: float
    next_report: float = 0.0

    def frame(self, t: float, arrival: float, payloads: list[bytes], stamp: int, *,
              video: bool, codec: str = "") -> None:
        for n, payload in enumerate(payloads):
            marker = video and n == len(payloads) - 1
            self.out.packets.append(Packet(
                arrival + n * 1e-4, rtp(self.pt, marker, self.seq, self.ts + stamp, self.ssrc, payload),
                video and _keyframe(codec, payload)))
            self.seq += 1
        self.out.frames += 1
        if t >= self.next_report:
            self.out.reports.append((arrival, ntp(self.start + t + self.clock_skew),
                                     (self.ts + stamp) & 0xFFFFFFFF))
            self.next_report += self.report_every


def ntp(unix: float) -> int:
    seconds = unix + _NTP_UNIX
    return (int(seconds) << 32) | int((seconds % 1) * 2**32)


def rtp(pt: int, marker: bool, seq: int, ts: int, ssrc: int, payload: bytes) -> bytes:
    return RtpPacket(payload_type=pt, marker=int(marker), sequence_number=seq & 0xFFFF,
                     timestamp=ts & 0xFFFFFFFF, ssrc=ssrc, payload=payload).serialize()


def _picture(i: int, flashes: set[int], texture: bool) -> av.VideoFrame:
    if texture:  # noise: big frames, several packets each
        pixels = np.random.default_rng(i).integers(0, 100, (HEIGHT, WIDTH, 3), np.uint8)
        if i in flashes:
            pixels += 155
    else:
        pixels = np.full((HEIGHT, WIDTH, 3), 255 if i in flashes else 0, np.uint8)
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
    frame.pts, frame.time_base = i, fractions.Fraction(1, FPS)
    return frame


class _Vp9Encoder:
    """libvpx-vp9 (PyAV) and a minimal RFC 9628 packetizer: flexible mode off, one layer."""

    def __init__(self) -> None:
        self.codec = av.CodecContext.create("libvpx-vp9", "w")
        self.codec.width, self.codec.height = WIDTH, HEIGHT
        self.codec.pix_fmt = "yuv420p"
        self.codec.time_base = fractions.Fraction(1, FPS)
        self.codec.options = {"deadline": "realtime", "lag-in-frames": "0", "cpu-used": "8"}
        self.picture_id = 0

    def encode(self, frame: av.VideoFrame, force_keyframe: bool = False):
        frame = frame.reformat(format="yuv420p")
        if force_keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        packets = self.codec.encode(frame)
        data = b"".join(bytes(p) for p in packets)
        inter = not any(p.is_keyframe for p in packets)
        chunks = [data[i:i + 1000] for i in range(0, len(data), 1000)]
        payloads = []
        for n, chunk in enumerate(chunks):
            b0 = (0x80 | (0x40 if inter else 0) | (0x08 if n == 0 else 0)
                  | (0x04 if n == len(chunks) - 1 else 0))  # I, P, B, E
            pid = bytes([0x80 | (self.picture_id >> 8), self.picture_id & 0xFF])
            payloads.append(bytes([b0]) + pid + chunk)
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        return payloads, frame.pts * 3000


def _keyframe(codec: str, payload: bytes) -> bool:
    if codec == "VP8":
        return vp8_is_keyframe(payload)
    if codec == "H264":
        return h264_is_keyframe(payload)
    return bool(payload[0] & 0x08) and not payload[0] & 0x40


def video(seconds: float, marks: list[float], *, codec: str = "VP8", start: float = START,
          delay: float = 0.03, ssrc: int = 0x1111, seq: int = 100, ts: int = 1234,
          report_every: float = 1.0, clock_skew: float = 3.7, track_id: str = "TR_v1",
          identity: str = "alice", seed: int = 1, keyframes: tuple[int, ...] = (0,),
          texture: bool = False) -> Stream:
    """``seconds`` of video at 30 fps, white at each mark (black, or noise with
    ``texture``), RTP from ``seq``/``ts``; key frames at the ``keyframes`` indexes."""
    params = CODECS[codec]
    encoder = _Vp9Encoder() if codec == "VP9" else get_encoder(params)
    rnd = random.Random(seed)
    flashes = {round(m * FPS) for m in marks}
    out = Stream(TrackInfo("video", params.mimeType, 90000, params.payloadType, None,
                           track_id, "PA_" + identity, identity, "camera"))
    sender = _Sender(out, params.payloadType, ssrc, seq, ts, start, clock_skew, report_every)
    for i in range(round(seconds * FPS)):
        t = i / FPS
        payloads, stamp = encoder.encode(_picture(i, flashes, texture), force_keyframe=i in keyframes)
        arrival = start + t + delay + rnd.uniform(0, 0.004)
        sender.frame(t, arrival, payloads, stamp, video=True, codec=codec)
    return out


def audio(seconds: float, marks: list[float], *, start: float = START, delay: float = 0.03,
          ssrc: int = 0x2222, seq: int = 500, ts: int = 98765, report_every: float = 1.0,
          clock_skew: float = 3.7, dtx: list[tuple[float, float]] = (), track_id: str = "TR_a1",
          identity: str = "alice", seed: int = 2) -> Stream:
    """``seconds`` of 20 ms Opus frames, a beep at each mark. Frames whose start falls in
    a ``dtx`` interval (start, end) are not sent (timestamps jump, as with DTX)."""
    params = CODECS["opus"]
    encoder = get_encoder(params)
    rnd = random.Random(seed)
    beeps = [round(m * 48000) for m in marks]
    out = Stream(TrackInfo("audio", params.mimeType, 48000, params.payloadType, 2,
                           track_id, "PA_" + identity, identity, "microphone"))
    sender = _Sender(out, params.payloadType, ssrc, seq, ts, start, clock_skew, report_every)
    for i in range(round(seconds * 50)):
        n = np.arange(i * 960, (i + 1) * 960)
        on = np.zeros(960, bool)
        for b in beeps:
            on |= (n >= b) & (n < b + BEEP_SECONDS * 48000)
        tone = np.where(on, np.sin(2 * np.pi * 1000 * n / 48000) * 12000, 0).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(tone, 2).reshape(1, -1), format="s16",
                                           layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        frame.time_base = fractions.Fraction(1, 48000)
        payloads, stamp = encoder.encode(frame)
        t = i * 0.02
        if payloads and not any(a <= t < b for a, b in dtx):
            sender.frame(t, start + t + delay + rnd.uniform(0, 0.004), payloads[:1], stamp, video=False)
    return out


def encoded_video(codec: str, frames: int = 12, keyframes=(0,)) -> list[av.Packet]:
    """Frames of noise encoded by PyAV (libvpx / libx264), as the encoder wrote them."""
    ctx = av.CodecContext.create({"VP8": "libvpx", "H264": "libx264"}[codec], "w")
    ctx.width, ctx.height, ctx.pix_fmt = 320, 240, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 30)
    ctx.options = {"tune": "zerolatency"} if codec == "H264" else {"deadline": "realtime"}
    packets = []
    for i in range(frames):
        pixels = np.random.default_rng(i).integers(0, 255, (240, 320, 3), np.uint8)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        if i in keyframes:
            frame.pict_type = av.video.frame.PictureType.I
        packets += ctx.encode(frame)
    return packets + list(ctx.encode(None))


def rtp_frames(codec: str, encoded: list[av.Packet], *, seq: int = 100, ts: int = 0,
               ssrc: int = 7) -> list[list[RtpView]]:
    """Each encoded frame packetized by aiortc's own packetizer: RTP packets per frame."""
    packer = get_encoder(CODECS[codec])
    frames = []
    for n, packet in enumerate(encoded):
        payloads, _ = packer.pack(packet)
        packets = []
        for i, payload in enumerate(payloads):
            packets.append(RtpView.parse(rtp(96, i == len(payloads) - 1, seq, ts + 3000 * n, ssrc, payload)))
            seq += 1
        frames.append(packets)
    return frames


def feed(assembler: FrameAssembler, packets: list[RtpView]) -> list:
    """Every frame the assembler makes of these packets, flushed at the end."""
    out = []
    for p in packets:
        out += assembler.push(p, 0.0)
    return out + assembler.flush()


def nals(annexb: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (3- or 4-byte start codes)."""
    return [n for n in re.split(b"\x00\x00\x00\x01|\x00\x00\x01", annexb) if n]


def record(directory: pathlib.Path, tracks: dict[str, list[Stream]], *,
           reports: bool = True, recording_id: str = "REC_1") -> pathlib.Path:
    """Record streams with the real writer. ``tracks``: key -> the streams that follow
    each other on that recording track (a publisher that came back). Returns the
    recording's directory."""
    rec = directory / recording_id
    writer = RecordingWriter(rec, recording_id, segment_seconds=2.0, max_segment_seconds=4.0,
                             manifest_fields={"room": "dock-7", "session_id": "SE_1"})
    events = []
    for key, streams in tracks.items():
        for n, stream in enumerate(streams):
            events.append((stream.packets[0].arrival - 1e-6, 0, key, n, stream, None))
            for p in stream.packets:
                events.append((p.arrival, 2, key, n, stream, p))
            if reports:
                for r in stream.reports:
                    events.append((r[0], 1, key, n, stream, r))
    events.sort(key=lambda e: (e[0], e[1]))
    sinks = {}
    last_drain = None
    for at, tag, key, n, stream, item in events:
        if tag == 0:
            if key in sinks:
                sinks[key].close(at)
            sinks[key] = writer.track(key, stream.info)
        elif tag == 1:
            sinks[key].sender_report(item[1], item[2], item[0])
        else:
            sinks[key].rtp(item.data, item.arrival, item.keyframe)
        if last_drain is None or at - last_drain > 0.5:
            writer.drain_once()
            last_drain = at
    writer.stop(events[-1][0])
    return rec


def decode_marks(path: pathlib.Path) -> dict:
    """Decode an export with PyAV: frame counts, the first frame's key flag, durations,
    flash times (video frames turning white) and beep times (audio rising from silence)."""
    result = {"video_frames": 0, "first_keyframe": None, "flashes": [], "beeps": [],
              "audio_samples": 0, "video_end": 0.0, "audio_end": 0.0}
    with av.open(str(path)) as container:
        result["duration"] = container.duration / 1e6 if container.duration else None
        result["streams"] = [(s.type, s.codec_context.name) for s in container.streams]
        if container.streams.video:
            bright = False
            for frame in container.decode(video=0):
                if result["first_keyframe"] is None:
                    result["first_keyframe"] = frame.key_frame
                result["video_frames"] += 1
                level = frame.to_ndarray(format="gray").mean()
                if level > 128 and not bright:
                    result["flashes"].append(float(frame.time))
                bright = level > 128
                result["video_end"] = float(frame.time)
    with av.open(str(path)) as container:
        if container.streams.audio:
            loud_until = -1.0
            for frame in container.decode(audio=0):
                samples = np.abs(frame.to_ndarray()).max(axis=0)
                result["audio_samples"] += frame.samples
                above = np.nonzero(samples > 0.1)[0]
                for index in above[:1]:
                    at = float(frame.time) + index / frame.sample_rate
                    if at > loud_until:
                        result["beeps"].append(at)
                if len(above):
                    loud_until = float(frame.time) + above[-1] / frame.sample_rate + 0.05
                result["audio_end"] = float(frame.time) + frame.samples / frame.sample_rate
    return result
