"""RTP packets back into codec frames, as they were before packetization.

A `FrameAssembler` takes one RTP stream (one SSRC) in recording order: it puts packets
back in sequence order within a small window (duplicates and very late ones are
dropped), groups them into frames (a frame ends at the marker bit or when the RTP
timestamp changes), and hands each frame's payloads to the codec's payload format:

- `Vp8Format` (RFC 7741): the payload descriptors stripped, partitions joined;
- `Vp9Format` (RFC 9628): the payload descriptors stripped (one spatial layer);
- `H264Format` (RFC 6184): single NAL units, STAP-A and FU-A into an access unit in
  Annex B form (start codes; FFmpeg's MP4 muxer takes the parameter sets from the first
  key frame and rewrites the units as MP4 samples itself);
- `OpusFormat` (RFC 7587): one packet, one frame.

Missing packets are found by sequence number. A frame with a hole is dropped, never
patched, and a video stream then drops every frame until its next key frame (a decoder
would show garbage otherwise). A video stream also starts at its first key frame.
Timestamps are unwrapped (32 bits) into `Frame.timestamp`, so a long recording never
wraps. Malformed payloads raise `DepacketizeError` from a format's ``assemble``; the
assembler counts and drops such frames instead (`AssemblerStats`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sfu import MalformedPacket
from sfu.rtp import parse_header
from sfu.vp8 import Vp8Descriptor

from . import codecs
from .errors import DepacketizeError

__all__ = [
    "DepacketizeError",
    "RtpView",
    "Unwrapper",
    "Frame",
    "AssembledFrame",
    "PayloadFormat",
    "Vp8Format",
    "Vp9Format",
    "H264Format",
    "OpusFormat",
    "payload_format",
    "AssemblerStats",
    "FrameAssembler",
]


@dataclass(frozen=True, slots=True)
class RtpView:
    """The fields of one RTP packet that frame assembly needs; padding is removed."""

    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes

    @classmethod
    def parse(cls, data: bytes) -> RtpView:
        try:
            pt, marker, seq, ts, ssrc, start, end = parse_header(data)[:7]
        except MalformedPacket as exc:
            raise DepacketizeError(f"not an RTP packet: {exc}") from None
        return cls(pt, bool(marker), seq, ts, ssrc, bytes(data[start:end]))


class Unwrapper:
    """Unwraps a counter of ``bits`` bits (RTP: 16 for sequence numbers, 32 for
    timestamps) into an int that keeps growing: each value is placed nearest to the
    previous one. ``start`` fixes the first value, so that two passes over the same
    stream that see it in different orders agree."""

    __slots__ = ("_modulus", "_half", "_last")

    def __init__(self, bits: int, start: int | None = None) -> None:
        self._modulus = 1 << bits
        self._half = 1 << (bits - 1)
        self._last = start

    def unwrap(self, value: int) -> int:
        if self._last is None:
            self._last = value
            return value
        delta = (value - self._last) % self._modulus
        if delta >= self._half:
            delta -= self._modulus
        self._last += delta
        return self._last


@dataclass(frozen=True, slots=True)
class AssembledFrame:
    """What a payload format makes of one frame's payloads; ``size`` (width, height)
    when the frame carries it (key frames)."""

    data: bytes
    keyframe: bool
    size: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Frame:
    """One codec frame of a stream: the bytes a container stores as one packet.

    ``timestamp`` is the unwrapped RTP timestamp, ``arrival`` the recorder's wall clock
    (seconds) for the frame's first packet, ``seq`` the unwrapped sequence number of its
    first packet."""

    data: bytes
    timestamp: int
    keyframe: bool
    arrival: float
    seq: int
    size: tuple[int, int] | None = None


class PayloadFormat(Protocol):
    """A codec's RTP payload format: how one frame's payloads become one frame."""

    kind: str  # "audio" or "video"
    one_packet_per_frame: bool

    def assemble(self, payloads: list[bytes]) -> AssembledFrame:
        """The frame in these payloads (in sequence order); raises DepacketizeError."""
        ...


class Vp8Format:
    """VP8 (RFC 7741): descriptors stripped; a frame must start at partition 0."""

    kind = "video"
    one_packet_per_frame = False

    def assemble(self, payloads: list[bytes]) -> AssembledFrame:
        parts = []
        first = None
        for payload in payloads:
            try:
                d = Vp8Descriptor.parse(payload)
            except MalformedPacket as exc:
                raise DepacketizeError(f"VP8 payload descriptor: {exc}") from None
            if first is None:
                first = d
            parts.append(payload[d.size:])
        if first is None or not (first.start_of_partition and first.partition_id == 0):
            raise DepacketizeError("VP8 frame does not start at the start of partition 0")
        data = b"".join(parts)
        if not data:
            raise DepacketizeError("VP8 frame with no data")
        size = codecs.vp8_keyframe_size(data) if first.is_keyframe else None
        return AssembledFrame(data, first.is_keyframe, size)


def _vp9_descriptor(payload: bytes) -> tuple[int, bool, bool, int]:
    """``(size, begins_frame, inter_predicted, spatial_id)`` of a VP9 payload descriptor
    (RFC 9628 4.2)."""
    n = len(payload)
    if n < 1:
        raise DepacketizeError("empty VP9 payload")
    b0 = payload[0]
    i, p, l, f, b, v = b0 & 0x80, b0 & 0x40, b0 & 0x20, b0 & 0x10, b0 & 0x08, b0 & 0x02
    pos, sid = 1, 0

    def need(k: int) -> None:
        if pos + k > n:
            raise DepacketizeError("VP9 payload descriptor truncated")

    if i:
        need(1)
        pos += 2 if payload[pos] & 0x80 else 1
    if l:
        need(1)
        sid = (payload[pos] >> 1) & 0x07
        pos += 1 if f else 2
    if f and p:
        for _ in range(3):
            need(1)
            more = payload[pos] & 0x01
            pos += 1
            if not more:
                break
    if v:
        need(1)
        ss = payload[pos]
        pos += 1
        if ss & 0x10:  # Y: a resolution per spatial layer
            pos += 4 * ((ss >> 5) + 1)
        if ss & 0x08:  # G: picture group description
            need(1)
            groups = payload[pos]
            pos += 1
            for _ in range(groups):
                need(1)
                pos += 1 + ((payload[pos] >> 2) & 0x03)
    need(0)
    return pos, bool(b), bool(p), sid


class Vp9Format:
    """VP9 (RFC 9628), one spatial layer: descriptors stripped."""

    kind = "video"
    one_packet_per_frame = False

    def assemble(self, payloads: list[bytes]) -> AssembledFrame:
        parts, head = [], None
        for payload in payloads:
            size, begins, inter, sid = _vp9_descriptor(payload)
            head = head or (begins, inter, sid)
            parts.append(payload[size:])
        if head is None or not head[0]:
            raise DepacketizeError("VP9 frame does not start with its beginning-of-frame packet")
        data = b"".join(parts)
        if not data:
            raise DepacketizeError("VP9 frame with no data")
        size = None
        if not head[1] and head[2] == 0:
            size = codecs.vp9_keyframe_size(data)
        return AssembledFrame(data, size is not None, size)


_STAP_A, _FU_A = 24, 28
_SLICE, _IDR, _SPS = 1, 5, 7


def _h264_nals(payloads: list[bytes]) -> list[bytes]:
    """The NAL units of one access unit's RTP payloads (packetization mode 0 or 1)."""
    nals: list[bytes] = []
    fragment: bytearray | None = None
    for payload in payloads:
        if not payload:
            raise DepacketizeError("empty H.264 payload")
        nal_type = payload[0] & 0x1F
        if nal_type == _FU_A:
            if len(payload) < 3:
                raise DepacketizeError("H.264 FU-A shorter than 3 bytes")
            start, end = payload[1] & 0x80, payload[1] & 0x40
            if start:
                if fragment is not None:
                    raise DepacketizeError("H.264 FU-A starts again before it ended")
                fragment = bytearray([(payload[0] & 0xE0) | (payload[1] & 0x1F)])
            elif fragment is None:
                raise DepacketizeError("H.264 FU-A continues a unit whose start is missing")
            fragment += payload[2:]
            if end:
                nals.append(bytes(fragment))
                fragment = None
            continue
        if fragment is not None:
            raise DepacketizeError("H.264 FU-A interrupted before its end")
        if nal_type == _STAP_A:
            pos, n = 1, len(payload)
            while pos < n:
                if pos + 2 > n:
                    raise DepacketizeError("H.264 STAP-A unit size truncated")
                size = (payload[pos] << 8) | payload[pos + 1]
                if size == 0 or pos + 2 + size > n:
                    raise DepacketizeError("H.264 STAP-A unit runs past the packet")
                nals.append(payload[pos + 2:pos + 2 + size])
                pos += 2 + size
        elif 1 <= nal_type <= 23:
            nals.append(payload)
        else:
            raise DepacketizeError(f"H.264 NAL unit type {nal_type} is not supported "
                                   "(packetization mode 1 uses 1-23, STAP-A, FU-A)")
    if fragment is not None:
        raise DepacketizeError("H.264 FU-A not ended at the end of the frame")
    return nals


class H264Format:
    """H.264 (RFC 6184) into Annex B access units; a frame's first slice must start the
    picture."""

    kind = "video"
    one_packet_per_frame = False

    def assemble(self, payloads: list[bytes]) -> AssembledFrame:
        nals = _h264_nals(payloads)
        sps = None
        keyframe = False
        first_slice = True
        for nal in nals:
            nal_type = nal[0] & 0x1F
            if nal_type == _SPS:
                sps = nal
            elif nal_type in (_SLICE, _IDR):
                # first_mb_in_slice is ue(v): 0 is the single bit 1
                if first_slice and (len(nal) < 2 or not nal[1] & 0x80):
                    raise DepacketizeError("H.264 access unit starts after its first slice")
                first_slice = False
                keyframe = keyframe or nal_type == _IDR
        if first_slice:
            raise DepacketizeError("H.264 access unit without a picture slice")
        size = codecs.h264_sps_size(sps) if sps else None
        return AssembledFrame(codecs.annexb_access_unit(nals), keyframe, size)


class OpusFormat:
    """Opus (RFC 7587): each RTP payload is one Opus packet, checked by its TOC."""

    kind = "audio"
    one_packet_per_frame = True

    def assemble(self, payloads: list[bytes]) -> AssembledFrame:
        if len(payloads) != 1:
            raise DepacketizeError("an Opus frame is one RTP payload")
        codecs.opus_packet_samples(payloads[0])
        return AssembledFrame(payloads[0], True)


_FORMATS = {"video/vp8": Vp8Format, "video/vp9": Vp9Format, "video/h264": H264Format,
            "audio/opus": OpusFormat}


def payload_format(codec: str) -> PayloadFormat:
    """The payload format for a codec MIME type (``video/VP8``, ``audio/opus``...;
    case does not matter). Raises DepacketizeError for a codec we cannot depacketize."""
    try:
        return _FORMATS[codec.lower()]()
    except KeyError:
        raise DepacketizeError(f"no depacketizer for codec {codec!r} (known: "
                               f"{', '.join(sorted(_FORMATS))})") from None


@dataclass
class AssemblerStats:
    """What a `FrameAssembler` saw: packets in, duplicates of a waiting packet, packets
    arriving after their place was passed (late, or duplicates of one already used),
    packets missing, frames out, frames dropped (with a hole, malformed, or waiting for a
    key frame)."""

    packets: int = 0
    duplicates: int = 0
    late: int = 0
    lost: int = 0
    frames: int = 0
    dropped_incomplete: int = 0
    dropped_malformed: int = 0
    dropped_before_keyframe: int = 0
    problems: list[str] = field(default_factory=list)

    def note(self, problem: str) -> None:
        if len(self.problems) < 20:  # enough to say what went wrong, bounded
            self.problems.append(problem)


@dataclass
class _Pending:
    timestamp: int
    arrival: float
    seq: int
    payloads: list[bytes] = field(default_factory=list)
    broken: bool = False


class FrameAssembler:
    """Frames out of one RTP stream (one SSRC). Feed packets with `push` in the order
    they were recorded, then call `flush` once at the end of the stream.

    ``reorder_window``: how many packets may wait for a missing one before it counts as
    lost. ``first_timestamp``: the RTP timestamp that unwrapping starts from (the
    stream's first packet as `plugins.playback.timeline` saw it)."""

    def __init__(self, fmt: PayloadFormat, *, reorder_window: int = 64,
                 first_timestamp: int | None = None) -> None:
        self.format = fmt
        self.stats = AssemblerStats()
        self._window = reorder_window
        self._seqs = Unwrapper(16)
        self._stamps = Unwrapper(32, first_timestamp)
        self._waiting: dict[int, tuple[RtpView, float]] = {}
        self._released: int | None = None
        self._frame: _Pending | None = None
        self._last_done: int | None = None  # timestamp of the last finished frame
        self._need_keyframe = fmt.kind == "video"

    def push(self, packet: RtpView, arrival: float) -> list[Frame]:
        """Frames completed by this packet (usually none or one)."""
        self.stats.packets += 1
        seq = self._seqs.unwrap(packet.seq)
        if self._released is not None and seq <= self._released:
            self.stats.late += 1
            return []
        if seq in self._waiting:
            self.stats.duplicates += 1
            return []
        self._waiting[seq] = (packet, arrival)
        out: list[Frame] = []
        while self._waiting:
            lowest = min(self._waiting)
            in_order = self._released is None or lowest == self._released + 1
            if not in_order and len(self._waiting) <= self._window:
                break
            self._release(lowest, *self._waiting.pop(lowest), out)
        return out

    def flush(self) -> list[Frame]:
        """The frames still held: the end of the stream."""
        out: list[Frame] = []
        for seq in sorted(self._waiting):
            self._release(seq, *self._waiting[seq], out)
        self._waiting.clear()
        if self._frame is not None:
            self._finish(out)
        return out

    def _release(self, seq: int, packet: RtpView, arrival: float, out: list[Frame]) -> None:
        hole = self._released is not None and seq != self._released + 1
        if hole:
            self.stats.lost += seq - self._released - 1
        self._released = seq
        ts = self._stamps.unwrap(packet.timestamp)
        frame = self._frame
        if frame is not None and (hole or ts != frame.timestamp):
            if hole:
                frame.broken = True
            self._finish(out)
        elif frame is None and hole and self.format.kind == "video":
            self._need_keyframe = True  # whatever was lost, the references are broken
        if self._frame is None:
            if ts == self._last_done and not self.format.one_packet_per_frame:
                return  # the rest of a frame already finished (dropped, or ended early)
            self._frame = _Pending(ts, arrival, seq)
        self._frame.payloads.append(packet.payload)
        if packet.marker or self.format.one_packet_per_frame:
            self._finish(out)

    def _finish(self, out: list[Frame]) -> None:
        pending, self._frame = self._frame, None
        self._last_done = pending.timestamp
        video = self.format.kind == "video"
        if pending.broken:
            self.stats.dropped_incomplete += 1
            self._need_keyframe = video
            return
        try:
            made = self.format.assemble(pending.payloads)
        except DepacketizeError as exc:
            self.stats.dropped_malformed += 1
            self.stats.note(f"frame at seq {pending.seq & 0xFFFF}: {exc}")
            self._need_keyframe = video
            return
        if self._need_keyframe:
            if not made.keyframe:
                self.stats.dropped_before_keyframe += 1
                return
            self._need_keyframe = False
        self.stats.frames += 1
        out.append(Frame(made.data, pending.timestamp, made.keyframe, pending.arrival,
                         pending.seq, made.size))
