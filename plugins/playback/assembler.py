"""One RTP stream's packets into frames: order, loss, key frames, unwrapped time.

A `FrameAssembler` takes one RTP stream (one SSRC) in recording order: it puts packets
back in sequence order within a small window (duplicates and very late ones are
dropped), groups them into frames (a frame ends at the marker bit or when the RTP
timestamp changes), and hands each frame's payloads to the codec's payload format
(`plugins.playback.depacketize`).

Missing packets are found by sequence number. A frame with a hole is dropped, never
patched, and a video stream then drops every frame until its next key frame (a decoder
would show garbage otherwise). A video stream also starts at its first key frame.
Timestamps are unwrapped (32 bits) into `Frame.timestamp`, so a long recording never
wraps. Frames whose payloads are malformed are counted and dropped (`AssemblerStats`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sfu import MalformedPacket
from sfu.rtp import parse_header

from .depacketize import DepacketizeError, PayloadFormat

__all__ = ["RtpView", "Unwrapper", "Frame", "AssemblerStats", "FrameAssembler"]


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
