"""Watch a Dockcast room with aiortc: subscribe to its tracks, decode them, save a clip.

    .venv/bin/python examples/watch.py --token TOKEN                   # count frames
    .venv/bin/python examples/watch.py --token TOKEN --save clip.webm  # and record them

TOKEN needs the ``subscribe`` grant for the room. The program joins, subscribes to every
track published in the room (now and later), answers each ``offer`` of the node's
subscriber peer connection, and decodes what arrives; ``--save`` records the tracks of the
first offer. It stops after ``--frames`` video
frames (0: Ctrl-C) and prints what it decoded. ``--loopback`` is for a node on
127.0.0.1: see ``docs/python-client.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402 - after the path set-up
from aiortc.contrib.media import MediaRecorder, MediaRelay  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

from _media_options import add_common, rtc_configuration_for  # noqa: E402 - beside this file
from signalling.client import DockcastClient  # noqa: E402


class Watcher:
    def __init__(self, client: DockcastClient, pc: RTCPeerConnection, frames: int,
                 recorder: MediaRecorder | None) -> None:
        self.client, self.pc, self.recorder = client, pc, recorder
        self.relay = MediaRelay()  # one copy of each track to decode, one to record
        self.recording = False
        self.wanted = frames
        self.decoded = {"video": 0, "audio": 0}
        self.first_video: tuple[int, int] | None = None
        self.done = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        pc.on("track", self._on_track)

    def _on_track(self, track) -> None:
        if self.recorder is not None and not self.recording:
            self.recorder.addTrack(self.relay.subscribe(track))
            track = self.relay.subscribe(track)
        task = asyncio.ensure_future(self._decode(track))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _decode(self, track) -> None:
        try:
            while True:
                frame = await track.recv()
                self.decoded[track.kind] += 1
                if track.kind == "video":
                    self.first_video = self.first_video or (frame.width, frame.height)
                    if self.wanted and self.decoded["video"] >= self.wanted:
                        self.done.set()
        except MediaStreamError:
            pass

    async def answer(self, offer: dict) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.client.answer(self.pc.localDescription.sdp)
        if self.recorder is not None and not self.recording:
            self.recording = True  # the tracks of this first offer: a recorder starts once
            await self.recorder.start()

    async def subscribe(self, track_ids: list[str]) -> None:
        if track_ids:
            await self.client.subscribe(track_ids)
            print(f"subscribed to {', '.join(track_ids)}", flush=True)


async def watch(args: argparse.Namespace) -> int:
    pc = RTCPeerConnection(rtc_configuration_for(args))
    recorder = MediaRecorder(args.save) if args.save else None
    client = await DockcastClient.connect(args.url, args.token)
    watcher = Watcher(client, pc, args.frames, recorder)
    client.on("offer", lambda msg: asyncio.ensure_future(watcher.answer(msg)))
    client.on("track_published",
              lambda msg: asyncio.ensure_future(watcher.subscribe([msg["track"]["track_id"]])))
    try:
        joined = await client.join(args.room, name=args.name)
        print(f"joined {joined['room']}: {len(joined['tracks'])} tracks published", flush=True)
        await watcher.subscribe([t["track_id"] for t in joined["tracks"]])
        try:
            await asyncio.wait_for(watcher.done.wait(), args.timeout or None)
        except TimeoutError:
            print(f"gave up after {args.timeout:g} s", file=sys.stderr)
        size = "x".join(map(str, watcher.first_video)) if watcher.first_video else "-"
        print(f"decoded {watcher.decoded['video']} video frames ({size}) and "
              f"{watcher.decoded['audio']} audio frames", flush=True)
        return 0 if watcher.done.is_set() or not args.frames else 1
    finally:
        if recorder is not None and watcher.recording:
            await recorder.stop()
        await client.close()
        await pc.close()


def main() -> int:
    p = argparse.ArgumentParser(description="Subscribe to a room's tracks and decode them.")
    add_common(p, "subscribe", "seller")
    p.add_argument("--frames", type=int, default=0, help="stop after this many video frames")
    p.add_argument("--timeout", type=float, default=0, help="give up after this long (0: never)")
    p.add_argument("--save", help="record what arrives to this file (.webm, .mp4)")
    args = p.parse_args()
    try:
        return asyncio.run(watch(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
