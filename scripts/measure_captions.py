"""Live captions through a node: error rate and delay (a measurement, not a test).

Starts ``dockcast serve`` (hub variables offline: every model from its package) on a free
port. For ``--rounds`` rounds, an aiortc publisher plays espeak-ng speech into a room,
English then Mandarin (``tests/plugins/assistant/media.py``: the same clips and the same
error rate as the tests: words for English, toneless pinyin syllables for Mandarin), a
holder of the ``record`` grant turns captions on for it (``lang`` given for Mandarin:
espeak-ng's robotic Mandarin is otherwise heard as another language), and a member of
the room collects the ``assistant.caption`` messages.

- error rate: of all the captions of one clip joined, against the spoken text;
- delay: from the caption's ``end`` (the end of the utterance, on the track's clock in
  Unix seconds) to the caption's arrival at the member (one machine: one clock).

    .venv/bin/python scripts/measure_captions.py              # 5 rounds
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests"), str(ROOT / "tests" / "plugins")]

from aiortc.contrib.media import MediaPlayer  # noqa: E402
from assistant.media import SPEECH, error_rate, speak  # noqa: E402
from e2e.peer import Participant  # noqa: E402
from measure_messages import KEY, SECRET, start_node  # noqa: E402

from plugins.assistant.encoder import OFFLINE_ENV  # noqa: E402
from signalling.client import DockcastClient  # noqa: E402
from signalling.tokens import mint_token  # noqa: E402



def token(identity: str, room: str | None, grants: tuple[str, ...]) -> str:
    return mint_token(KEY, SECRET, identity, room=room, grants=grants, ttl=3600)


async def one_clip(url: str, room: str, lang: str, clip: pathlib.Path, admin: DockcastClient) -> dict:
    listener = await DockcastClient.connect(url, token("desk", room, ("message",)))
    await listener.join(room)
    speaker = Participant(url, token(f"warehouse-{lang}", room, ("publish",)))
    player = MediaPlayer(str(clip))
    captions = []
    try:
        await speaker.connect()
        joined = await speaker.join(room)
        await speaker.publish(video=False, audio_track=player.audio)
        await admin.assistant_captions(room, joined["participant_id"], True, lang="zh" if lang == "zh" else None)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                event = await listener.next_event("message", timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            if event["topic"] != "assistant.caption":
                continue
            captions.append((time.time() - event["payload"]["end"], event["payload"]["text"]))
            if time.monotonic() > deadline - 24:  # the clip is a few seconds: its last words are in
                deadline = min(deadline, time.monotonic() + 3)
    finally:
        player.audio.stop()
        await speaker.close()
        await listener.close()
    text = " ".join(t for _, t in captions)
    return {"lang": lang, "text": text, "error_rate": error_rate(text, lang) if text else 1.0,
            "delays": [d for d, _ in captions]}


async def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_node(tmp + "/node", env=dict(OFFLINE_ENV), args=("--ice-address", "127.0.0.1"))
        clips = {lang: speak(pathlib.Path(tmp), lang) for lang in SPEECH}
        admin = await DockcastClient.connect(url, token("wms", None, ("admin",)))
        results = []
        try:
            for n in range(args.rounds):
                for lang in SPEECH:
                    room = f"captions-{lang}-{n}"
                    await admin.room_create(room)
                    result = await one_clip(url, room, lang, clips[lang], admin)
                    results.append(result)
                    print(f"round {n + 1} {lang}: error rate {result['error_rate']:.2f}, delays "
                          f"{[round(d, 2) for d in result['delays']]} s: {result['text']!r}", flush=True)
        finally:
            await admin.close()
            proc.terminate()
            proc.wait(30)
    for lang in SPEECH:
        mine = [r for r in results if r["lang"] == lang]
        delays = sorted(d for r in mine for d in r["delays"])
        rates = [r["error_rate"] for r in mine]
        p50 = delays[len(delays) // 2] if delays else float("nan")
        print(f"{lang}: {len(mine)} clips, error rate mean {sum(rates) / len(rates):.2f} "
              f"(min {min(rates):.2f}, max {max(rates):.2f}), caption delay p50 {p50:.2f} s "
              f"over {len(delays)} captions (max {max(delays, default=float('nan')):.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="clips of each language")
    args = parser.parse_args()
    import uvloop

    uvloop.run(measure(args))


if __name__ == "__main__":
    main()
