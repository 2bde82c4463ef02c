"""Captions through a real node: an aiortc publisher plays espeak-ng speech (Opus from
aiortc's MediaPlayer on a WAV file), and a member of the room receives an
``assistant.caption`` room message with the words.

The node runs with ``[plugins.assistant] captions_all = true`` (every audio track
captioned, no request needed), the hub variables offline. The ``assistant.captions``
request path runs once the node's schema has that type (``plugins.assistant.access``).
"""

from __future__ import annotations

import subprocess
import wave

import pytest
from aiortc.contrib.media import MediaPlayer

from plugins.assistant.encoder import OFFLINE_ENV
from signalling.client import DockcastClient
from signalling.schema import SPECS

from .peer import Participant

pytestmark = [pytest.mark.timeout(120)]

SPEECH = "Where is my parcel? The package is held at customs."


def _clip(tmp_path) -> str:
    """espeak-ng speech with 1 s of silence before it and 1.5 s after, as a WAV file."""
    raw, padded = tmp_path / "raw.wav", tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), SPEECH], check=True)
    with wave.open(str(raw)) as source:
        params, frames = source.getparams(), source.readframes(source.getnframes())
    silence = bytes(params.sampwidth * params.nchannels * params.framerate)  # one second
    with wave.open(str(padded), "wb") as out:
        out.setparams(params)
        out.writeframes(silence + frames + silence + silence[:len(silence) // 2])
    return str(padded)


async def _caption(client: DockcastClient) -> dict:
    while True:
        event = await client.next_event("message", timeout=60)
        if event["topic"] == "assistant.caption":
            return event


async def test_a_published_voice_is_captioned_for_the_room(node_factory, tmp_path):
    config = tmp_path / "node.toml"
    config.write_text("[plugins.assistant]\ncaptions_all = true\n")
    node = node_factory.start(env=dict(OFFLINE_ENV), args=("--config", str(config)))
    admin = await DockcastClient.connect(node.url, node.token("wms", None, ("admin",)))
    listener = await DockcastClient.connect(node.url, node.token("desk", "dock-cc"))
    speaker = Participant(node.url, node.token("warehouse", "dock-cc", ("publish", "subscribe")))
    player = MediaPlayer(_clip(tmp_path))
    try:
        await admin.room_create("dock-cc", shipment_id="S-CC")
        await listener.join("dock-cc")
        await speaker.connect()
        joined = await speaker.join("dock-cc")
        await speaker.publish(video=False, audio_track=player.audio)
        caption = await _caption(listener)
        payload = caption["payload"]
        assert caption["from"] == "assistant" and caption["room"] == "dock-cc"
        assert payload["participant_id"] == joined["participant_id"] and payload["lang"] == "en"
        words = payload["text"].lower()  # Opus over the network: stems, two of four
        assert sum(w in words for w in ("parcel", "pack", "held", "custom")) >= 2, payload["text"]
        assert payload["start"] < payload["end"] and payload["translation_unavailable"] is True
        if "assistant.captions" in SPECS:  # the request path, once the schema has it
            off = await admin.request("assistant.captions", room="dock-cc",
                                      participant_id=joined["participant_id"], on=False)
            assert off["on"] is False and off["track_ids"]
    finally:
        player.audio.stop()
        await speaker.close()
        for client in (admin, listener):
            await client.close()
