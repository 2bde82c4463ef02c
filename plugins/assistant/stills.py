"""Stills from live video, taken on demand beside the forwarding path, and kept as files.

`grab_still` taps a video track only for as long as it takes: it asks the publisher for
a keyframe (throttled with the subscribers' requests), `StillTap.rtp` keeps that
keyframe's packets (on the packet path it only appends them), and the tap is removed.
`decode_keyframe` then depacketizes them with the playback depacketizers (VP8, VP9,
H.264) and decodes the picture with PyAV, in a worker thread, off the event loop.

`store_still` writes a still as ``<root>/<room>/<sha256>.<ext>``, the file mode 0600 and
its directories 0700 (stills show what a warehouse holds); the same picture twice is one
file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pathlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from plugins.playback.assembler import FrameAssembler, RtpView
from plugins.playback.depacketize import DepacketizeError, payload_format
from signalling.errors import NotFound, Unavailable

from .errors import BadPhoto

__all__ = ["Still", "StillTap", "decode_keyframe", "encode_png", "grab_still", "store_still"]

_DECODERS = {"video/vp8": "vp8", "video/vp9": "vp9", "video/h264": "h264"}
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_PACKETS = 2000  # a keyframe of 2,000 packets (2.4 MB) is not a keyframe we wait for


@dataclass(frozen=True)
class Still:
    """A picture to compare: its bytes as stored (``ext`` names the format), where it
    came from (``video`` or ``photo``), and its SHA-256."""

    data: bytes
    ext: str
    source: str
    track_id: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


class StillTap:
    """A `sfu.ProducerTap` that keeps the packets of the first keyframe it sees."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.done: asyncio.Future[list[tuple[bytes, float]]] = loop.create_future()
        self._loop = loop
        self._packets: list[tuple[bytes, float]] = []
        self._timestamp: bytes | None = None

    def rtp(self, data: bytes, arrival: float, keyframe: bool) -> None:
        if self.done.done() or len(data) < 12:
            return
        if self._timestamp is None:
            if not keyframe:
                return
            self._timestamp = bytes(data[4:8])
        elif bytes(data[4:8]) != self._timestamp:  # the next frame began: the keyframe is whole
            self._finish()
            return
        self._packets.append((bytes(data), arrival))
        if data[1] & 0x80 or len(self._packets) >= _MAX_PACKETS:  # marker: last packet
            self._finish()

    def _finish(self) -> None:
        packets, self._packets = self._packets, []
        self._loop.call_soon_threadsafe(_resolve, self.done, packets)

    def sender_report(self, ntp: int, rtp_ts: int, arrival: float) -> None:
        pass

    def stream_changed(self, ssrc: int) -> None:
        self._packets, self._timestamp = [], None

    def producer_closed(self) -> None:
        self._loop.call_soon_threadsafe(_resolve, self.done, None)


def _resolve(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


async def grab_still(ctx: Any, room: str, track: dict[str, Any], timeout_s: float = 5.0) -> Still:
    """A still of the video ``track`` (a ``room_tracks`` entry): its next keyframe,
    decoded and encoded as PNG. Raises ``Unavailable`` when no keyframe comes in time."""
    tap = StillTap(asyncio.get_running_loop())
    handle = ctx.tap_track(room, track["track_id"], tap)
    try:
        handle.request_keyframe()
        packets = await asyncio.wait_for(asyncio.shield(tap.done), timeout_s)
    except asyncio.TimeoutError:
        raise Unavailable(f"track {track['track_id']} sent no keyframe within {timeout_s:g} s") from None
    finally:
        handle.remove()
    if packets is None:
        raise NotFound(f"track {track['track_id']} closed before a keyframe came")
    codec = handle.info.get("codec") or track.get("codec") or ""
    picture = await asyncio.to_thread(decode_keyframe, codec, [p for p, _ in packets])
    return Still(await asyncio.to_thread(encode_png, picture), "png", "video", track["track_id"])


def decode_keyframe(codec: str, packets: Sequence[bytes]) -> np.ndarray:
    """One keyframe's RTP packets (in any order) as a full-size RGB picture."""
    name = _DECODERS.get(codec.lower())
    if name is None:
        raise BadPhoto(f"stills are taken from VP8, VP9 or H.264 video, not {codec!r}")
    try:
        views = sorted((RtpView.parse(p) for p in packets), key=lambda v: v.seq)
        assembler = FrameAssembler(payload_format(codec))
        frames = [f for v in views for f in assembler.push(v, 0.0)] + assembler.flush()
    except DepacketizeError as exc:
        raise BadPhoto(f"the keyframe's packets cannot be depacketized: {exc}") from None
    if not frames:
        raise BadPhoto("the keyframe's packets make no whole frame")
    decoder = av.CodecContext.create(name, "r")
    try:
        pictures = decoder.decode(av.Packet(frames[0].data)) + decoder.decode(None)
    except (av.error.FFmpegError, ValueError) as exc:
        raise BadPhoto(f"the keyframe cannot be decoded: {exc}") from None
    if not pictures:
        raise BadPhoto("the keyframe decoded to no picture")
    return pictures[0].to_ndarray(format="rgb24")


def encode_png(picture: np.ndarray) -> bytes:
    """An RGB picture as PNG bytes (lossless: the still is evidence)."""
    height, width = picture.shape[:2]
    encoder = av.CodecContext.create("png", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "rgb24"
    packets = encoder.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24"))
    packets += encoder.encode(None)
    return b"".join(bytes(p) for p in packets)


def store_still(root: pathlib.Path, room: str, still: Still) -> pathlib.Path:
    """Write ``still`` under ``root/<room>/`` (0700) as ``<sha256>.<ext>`` (0600); an
    existing file of that name already holds these bytes."""
    directory = pathlib.Path(root) / (_SAFE.sub("_", room) or "_")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / f"{still.sha256}.{still.ext}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(still.data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
