"""Janus's MJR recording format, version 2 (``MJR00002``): one RTP stream per file.

Layout (all integers big-endian), as Janus's ``record.c`` writes it and
``janus-pp-rec`` reads it::

    b"MJR00002"  uint16 length  JSON info header (length bytes)
    then, per RTP packet:
    b"MEET"      uint32 offset_ms  uint16 length  the RTP packet (length bytes)

The info header is ``{"t": "v"|"a", "c": codec, "s": created_us, "u": first_us}``
(wall-clock microseconds; ``c`` is ``vp8``, ``vp9``, ``h264`` or ``opus``); other keys
are kept (Dockcast adds ``"x-dockcast"``; ``janus-pp-rec`` ignores keys it does not
know). ``offset_ms`` is the packet's arrival in milliseconds after the first packet of
the file, the moment ``u`` records (Janus measures it from the monotonic time at which
it wrote the header, which is when the first frame arrived). ``janus-pp-rec`` reads the
header into a 1,500-byte buffer, so the encoded header must stay under that; it also
skips frames over 1,500 bytes, which this module still reads and writes.

`read_mjr` never raises for what a crash leaves behind: it returns every whole frame
and says where (byte offset) and why it stopped. Only a file that is not MJR at all (bad
magic, unreadable info header) raises `MjrError`.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from signalling.errors import FixedCodeError

__all__ = [
    "MAGIC",
    "FRAME_MAGIC",
    "MAX_HEADER_BYTES",
    "JANUS_CODECS",
    "MjrError",
    "MjrInfo",
    "MjrPacket",
    "MjrSegment",
    "encode_header",
    "encode_frame",
    "parse_mjr",
    "read_mjr",
]

MAGIC = b"MJR00002"
FRAME_MAGIC = b"MEET"
#: The largest info header ``janus-pp-rec`` reads (its buffer is 1,500 bytes, NUL included).
MAX_HEADER_BYTES = 1499
#: Janus's codec names, by kind.
JANUS_CODECS = {"video": frozenset({"vp8", "vp9", "h264"}), "audio": frozenset({"opus"})}

_KIND_TO_T = {"video": "v", "audio": "a"}
_T_TO_KIND = {t: kind for kind, t in _KIND_TO_T.items()}
_FRAME_HEAD = struct.Struct("!4sIH")  # magic, offset_ms, length
_RTP_HEADER_BYTES = 12


class MjrError(FixedCodeError, ValueError):
    """Not an MJR00002 file (bad magic or info header), or an info header or frame that
    cannot be encoded; the message names the file or field."""

    code = "internal"


@dataclass
class MjrInfo:
    """The JSON info header of a segment.

    ``kind`` is ``"audio"`` or ``"video"``; ``codec`` Janus's name (``vp8``, ``opus``...);
    ``created_us`` and ``first_us`` are wall-clock microseconds (``s`` and ``u``);
    ``extra`` holds every other key (e.g. ``"x-dockcast"``), kept as read.
    """

    kind: str
    codec: str
    created_us: int
    first_us: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """The header as compact JSON, Janus's keys first."""
        if self.kind not in _KIND_TO_T:
            raise MjrError(f"MJR info: kind {self.kind!r} is not audio or video")
        if self.codec not in JANUS_CODECS[self.kind]:
            raise MjrError(f"MJR info: codec {self.codec!r} is not a {self.kind} codec "
                           f"janus-pp-rec converts ({', '.join(sorted(JANUS_CODECS[self.kind]))})")
        clash = {"t", "c", "s", "u"} & set(self.extra)
        if clash:
            raise MjrError(f"MJR info: extra keys {sorted(clash)} would replace Janus's own")
        body = {"t": _KIND_TO_T[self.kind], "c": self.codec, "s": int(self.created_us),
                "u": int(self.first_us), **self.extra}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()

    @classmethod
    def parse(cls, data: bytes) -> MjrInfo:
        """Read an info header; raise `MjrError` naming what is missing or wrong."""
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MjrError(f"MJR info header is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise MjrError("MJR info header is not a JSON object")
        kind = _T_TO_KIND.get(body.get("t"))  # type: ignore[arg-type]
        if kind is None:
            raise MjrError(f"MJR info header: type 't' is {body.get('t')!r}, not 'a' or 'v'")
        codec = body.get("c")
        if not isinstance(codec, str) or not codec:
            raise MjrError("MJR info header: codec 'c' is missing")
        times = {}
        for key in ("s", "u"):
            value = body.get(key)
            if type(value) is not int:  # bool is an int, and not a time
                raise MjrError(f"MJR info header: time {key!r} is {value!r}, not an integer")
            times[key] = value
        extra = {k: v for k, v in body.items() if k not in ("t", "c", "s", "u")}
        return cls(kind, codec.lower(), times["s"], times["u"], extra)


@dataclass(frozen=True)
class MjrPacket:
    """One frame: the RTP packet and its arrival, ms after the segment's first packet."""

    offset_ms: int
    rtp: bytes


@dataclass
class MjrSegment:
    """What `read_mjr` found: the info header, every whole frame, and where it stopped.

    ``complete`` is true when the file ends exactly after a whole frame; otherwise
    ``stopped_at`` is the byte offset of the first incomplete or invalid frame and
    ``problem`` says what is wrong there. ``stopped_at`` is then also the length of the
    file's valid prefix.
    """

    info: MjrInfo
    packets: list[MjrPacket]
    complete: bool
    stopped_at: int
    problem: str | None = None


def encode_header(info: MjrInfo) -> bytes:
    """``MJR00002`` + length + JSON: the start of a segment file."""
    body = info.to_json()
    if len(body) > MAX_HEADER_BYTES:
        raise MjrError(f"MJR info header is {len(body)} bytes; janus-pp-rec reads at most "
                       f"{MAX_HEADER_BYTES}")
    return MAGIC + struct.pack("!H", len(body)) + body


def encode_frame(offset_ms: int, rtp: bytes) -> bytes:
    """``MEET`` + offset + length + packet: one frame."""
    if not 0 <= offset_ms <= 0xFFFFFFFF:
        raise MjrError(f"MJR frame offset {offset_ms} ms does not fit 32 bits")
    if not _RTP_HEADER_BYTES <= len(rtp) <= 0xFFFF:
        raise MjrError(f"MJR frame of {len(rtp)} bytes: an RTP packet is 12 to 65535 bytes")
    return _FRAME_HEAD.pack(FRAME_MAGIC, offset_ms, len(rtp)) + bytes(rtp)


def parse_mjr(data: bytes, *, name: str = "MJR data") -> MjrSegment:
    """Parse a whole segment held in memory (see `read_mjr`); ``name`` goes into errors."""
    view = memoryview(data)
    if len(view) < len(MAGIC) + 2:
        raise MjrError(f"{name}: {len(view)} bytes, too short for an MJR00002 header")
    if bytes(view[:len(MAGIC)]) != MAGIC:
        raise MjrError(f"{name}: magic {bytes(view[:len(MAGIC)])!r} is not {MAGIC!r}")
    (length,) = struct.unpack_from("!H", view, len(MAGIC))
    start = len(MAGIC) + 2
    if length == 0 or start + length > len(view):
        raise MjrError(f"{name}: info header of {length} bytes, {len(view) - start} present")
    try:
        info = MjrInfo.parse(bytes(view[start:start + length]))
    except MjrError as exc:
        raise MjrError(f"{name}: {exc.message}") from None
    return _frames(view, start + length, info)


def _frames(view: memoryview, pos: int, info: MjrInfo) -> MjrSegment:
    packets: list[MjrPacket] = []
    end = len(view)
    head = _FRAME_HEAD.size
    while pos < end:
        if end - pos < head:
            return MjrSegment(info, packets, False, pos,
                              f"incomplete frame header: {end - pos} of {head} bytes")
        magic, offset_ms, length = _FRAME_HEAD.unpack_from(view, pos)
        if magic != FRAME_MAGIC:
            return MjrSegment(info, packets, False, pos, f"frame magic {magic!r} is not b'MEET'")
        if length < _RTP_HEADER_BYTES:
            return MjrSegment(info, packets, False, pos,
                              f"frame of {length} bytes is shorter than an RTP header")
        if end - pos - head < length:
            return MjrSegment(info, packets, False, pos,
                              f"incomplete frame: {end - pos - head} of {length} bytes")
        rtp = bytes(view[pos + head:pos + head + length])
        if rtp[0] >> 6 != 2:
            return MjrSegment(info, packets, False, pos,
                              f"frame is not RTP version 2 (first byte {rtp[0]:#04x})")
        packets.append(MjrPacket(offset_ms, rtp))
        pos += head + length
    return MjrSegment(info, packets, True, pos, None)


def read_mjr(path: str | os.PathLike[str]) -> MjrSegment:
    """Read a segment file: every whole frame up to the first incomplete or invalid one.

    A torn tail (a crash mid-write) is ``complete=False`` with ``stopped_at`` and
    ``problem``, never an exception. Raises `MjrError` for a file that is not MJR00002
    (bad magic, truncated or invalid info header) and `OSError` if it cannot be read.
    """
    with open(path, "rb") as f:
        data = f.read()
    return parse_mjr(data, name=os.fspath(path))
