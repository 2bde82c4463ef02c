"""Publish a camera, a media file or a test pattern into a Dockcast room with aiortc.

    .venv/bin/python examples/publish.py --token TOKEN                 # a test pattern
    .venv/bin/python examples/publish.py --token TOKEN --file dock.mp4 # a media file
    .venv/bin/python examples/publish.py --token TOKEN --camera /dev/video0

TOKEN needs the ``publish`` grant for the room (``dockcast token ... --grants publish``).
The program joins, offers its tracks (``publish``), applies the node's answer and sends
until Ctrl-C or ``--seconds``. ``--loopback`` is for a node on 127.0.0.1 (aioice leaves
the loopback address out of its candidates otherwise): see ``docs/python-client.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import av  # noqa: E402 - after the path set-up
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack  # noqa: E402
from aiortc.contrib.media import MediaPlayer  # noqa: E402

from _media_options import add_common, rtc_configuration_for  # noqa: E402 - beside this file
from signalling.client import DockcastClient  # noqa: E402


class TestPattern(VideoStreamTrack):
    """Moving colour bars, 320x240 at 15 frames a second."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        import numpy

        shift = (self.count * 4) % 320
        bars = numpy.zeros((240, 320, 3), dtype=numpy.uint8)
        for i, colour in enumerate([(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0),
                                    (255, 0, 255), (255, 0, 0), (0, 0, 255), (16, 16, 16)]):
            bars[:, i * 40:(i + 1) * 40] = colour
        frame = av.VideoFrame.from_ndarray(numpy.roll(bars, shift, axis=1), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.count += 1
        return frame


def media(args: argparse.Namespace) -> tuple[object | None, object | None]:
    """(video track, audio track) from the chosen source."""
    if args.file:
        player = MediaPlayer(args.file, loop=True)
        return player.video, player.audio
    if args.camera:
        player = MediaPlayer(args.camera, format="v4l2", options={"video_size": "640x480"})
        return player.video, None
    return TestPattern(), None


async def publish(args: argparse.Namespace) -> int:
    video, audio = media(args)
    pc = RTCPeerConnection(rtc_configuration_for(args))
    client = await DockcastClient.connect(args.url, args.token)
    try:
        joined = await client.join(args.room, name=args.name)
        print(f"joined {joined['room']} as {joined['participant_id']}", flush=True)
        for track in (video, audio):
            if track is not None:
                pc.addTransceiver(track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        tracks = [{"mid": t.mid, "kind": t.kind,
                   "source": "camera" if t.kind == "video" else "microphone"}
                  for t in pc.getTransceivers()]
        published = await client.publish(pc.localDescription.sdp, tracks)
        await pc.setRemoteDescription(RTCSessionDescription(published["sdp"], "answer"))
        for track in published["tracks"]:
            print(f"publishing {track['kind']} as track {track['track_id']}", flush=True)
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while deadline is None or time.monotonic() < deadline:
            if pc.connectionState in ("failed", "closed"):
                print(f"peer connection {pc.connectionState}", file=sys.stderr)
                return 1
            await asyncio.sleep(0.5)
        return 0
    finally:
        await client.close()
        await pc.close()


def main() -> int:
    p = argparse.ArgumentParser(description="Publish a camera, a file or a test pattern.")
    add_common(p, "publish", "warehouse camera")
    p.add_argument("--file", help="a media file to publish (looped)")
    p.add_argument("--camera", help="a V4L2 device, e.g. /dev/video0")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: Ctrl-C)")
    args = p.parse_args()
    try:
        return asyncio.run(publish(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
