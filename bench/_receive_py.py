"""A load client's receive path, the pure-Python twin of ``bench/_receive.pyx``.

Same API and counts, one ``recvmsg`` and one pylibsrtp call per datagram: what the
compiled one does in C (see its docstring).
"""

from __future__ import annotations

import os
import random
import socket
import struct
import time
from typing import Any

import pylibsrtp

from sfu.rtp import is_rtcp, parse_header
from sfu.vp8 import vp8_is_keyframe

from .stats import OUTAGE_S, StreamStats, read_stamp

__all__ = ["Receiver", "BATCH", "BUFFER", "WINDOW", "MAX_GAP", "MAX_STREAMS", "OUTAGE_NS"]

BATCH = 32
BUFFER = 4096
WINDOW = StreamStats.WINDOW
MAX_GAP = StreamStats.MAX_GAP
MAX_STREAMS = 16
OUTAGE_NS = int(OUTAGE_S * 1e9)

_CONTROL = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("@qq")
_SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", 35)


class _Stream(StreamStats):
    def __init__(self, ssrc: int, video: bool) -> None:
        super().__init__()
        self.ssrc = ssrc
        self.video = video


class Receiver:
    """Counts what arrives on one subscriber's socket (see the compiled module)."""

    def __init__(self, fd: int, session: pylibsrtp.Session, *, video_pts: dict[int, bool] | None = None,
                 nack: bool = True, latency_cap: int = 5000, seed: int = 0) -> None:
        if latency_cap < 1:
            raise ValueError("latency_cap must be at least 1")
        probe = socket.socket(fileno=os.dup(fd))  # ours to close: the caller keeps fd
        probe.setblocking(False)
        self._sock = probe
        self._session = session
        self._kinds = {pt: bool(video) for pt, video in (video_pts or {}).items() if 0 <= pt < 128}
        self.nack = nack
        self._cap = latency_cap
        self._rng = random.Random(seed)
        self._nacks: list[tuple[int, list[int]]] = []
        self._outages: list[tuple[float, float]] = []
        self.first_packet_ns = self.first_keyframe_ns = self.last_video_ns = 0
        self.mark()

    def close(self) -> None:
        self._sock.close()

    def __del__(self) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()

    def mark(self) -> None:
        self._streams: dict[int, _Stream] = {}
        self._samples: list[float] = []
        self.latency_count = 0
        self.stamped = self.rtp = self.bytes = self.srtp_errors = self.malformed = 0
        self.truncated = self.unknown_streams = self.read_errors = 0
        self.nacked = self.recovered = 0
        self._outages = []

    def _add_sample(self, value: float) -> None:
        self.latency_count += 1
        if len(self._samples) < self._cap:
            self._samples.append(value)
            return
        j = self._rng.randrange(self.latency_count)
        if j < self._cap:
            self._samples[j] = value

    def _packet(self, data: bytes, arrival: int) -> None:
        try:
            data = self._session.unprotect(data)
        except pylibsrtp.Error:
            self.srtp_errors += 1
            return
        try:
            pt, _marker, seq, _ts, ssrc, offset, end, *_ = parse_header(data)
        except ValueError:
            self.malformed += 1
            return
        self.rtp += 1
        if self.first_packet_ns == 0:
            self.first_packet_ns = arrival
        stream = self._streams.get(ssrc)
        if stream is None:
            if len(self._streams) == MAX_STREAMS:
                self.unknown_streams += 1
                return
            stream = self._streams[ssrc] = _Stream(ssrc, self._kinds.get(pt, pt >= 96))
        self.bytes += len(data)
        outcome = stream.add(seq)
        if outcome == "dup":
            return
        if stream.missing:
            if self.nack and stream.video:
                self.nacked += len(stream.missing)
                self._nacks.append((ssrc, stream.missing))
            stream.missing = []
        elif outcome == "late" and self.nacked:
            self.recovered += 1
        found = read_stamp(data, end)
        if found is not None:
            sent = found[0]
            self.stamped += 1
            self._add_sample((arrival - sent) / 1000.0)
        if stream.video:
            if self.last_video_ns and arrival - self.last_video_ns > OUTAGE_NS:
                self._outages.append((self.last_video_ns / 1e9, arrival / 1e9))
            self.last_video_ns = arrival
            if self.first_keyframe_ns == 0 and vp8_is_keyframe(data[offset:end]):
                self.first_keyframe_ns = arrival

    def drain(self) -> list[tuple[bytes, Any]]:
        others: list[tuple[bytes, Any]] = []
        now = time.monotonic_ns()
        offset = time.clock_gettime_ns(time.CLOCK_REALTIME) - now
        while True:
            try:
                data, ancillary, flags, address = self._sock.recvmsg(BUFFER, _CONTROL)
            except InterruptedError:
                continue
            except OSError:  # EAGAIN: nothing left; an ICMP error is reported once
                break
            if flags & socket.MSG_TRUNC:
                self.truncated += 1
                continue
            arrival = now
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == _SCM_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    arrival = sec * 1_000_000_000 + nsec - offset
                    break
            if len(data) >= 12 and 127 < data[0] < 192 and not is_rtcp(data):
                self._packet(data, arrival)
            else:
                others.append((data, address))
        return others

    def take_nacks(self) -> list[tuple[int, list[int]]]:
        out, self._nacks = self._nacks, []
        return out

    def take_outages(self) -> list[tuple[float, float]]:
        out, self._outages = self._outages, []
        return out

    def latencies(self) -> list[float]:
        return list(self._samples)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for stream in self._streams.values():
            row = out.setdefault("video" if stream.video else "audio", {})
            for key, value in stream.as_dict().items():
                row[key] = row.get(key, 0) + value
        return out
