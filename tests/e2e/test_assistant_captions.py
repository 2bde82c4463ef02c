"""Captions through a real node: an aiortc publisher plays espeak-ng speech (Opus from
aiortc's MediaPlayer on a WAV file), and a member of the room receives an
``assistant.caption`` room message with the words.

A holder of the ``admin`` grant turns captions on with ``assistant.captions`` (the hub
variables offline: nothing is downloaded), and off again.
"""

from __future__ import annotations

import subprocess
import wave

import pytest
from aiortc.contrib.media import MediaPlayer

from plugins.assistant.encoder import OFFLINE_ENV
from signalling.client import DockcastClient, ServerError

from .peer import Participant

pytestmark = [pytest.mark.timeout(120)]

SPEECH = "Where is my parcel? The package is held at customs."


def _clip(tmp_path) -> str:
    """espeak-ng speech with 3 s of silence before it and 1.5 s after, as a WAV file."""
    raw, padded = tmp_path / "raw.wav", tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), SPEECH], check=True)
    with wave.open(str(raw)) as source:
        params, frames = source.getparams(), source.readframes(source.getnframes())
    silence = bytes(params.sampwidth * params.nchannels * params.framerate)  # one second
    with wave.open(str(padded), "wb") as out:
        out.setparams(params)
        # 3 s of silence first: the player starts with the publish, and captions are
        # turned on after it (on a loaded machine that took over a second: the first
        # words were missed, "L-mat Customs" once in CI)
        out.writeframes(silence * 3 + frames + silence + silence[:len(silence) // 2])
    return str(padded)


async def _caption(client: DockcastClient) -> dict:
    while True:
        event = await client.next_event("message", timeout=60)
        if event["topic"] == "assistant.caption":
            return event


async def test_a_published_voice_is_captioned_for_the_room(node_factory, tmp_path):
    node = node_factory.start(env=dict(OFFLINE_ENV))
    admin = await DockcastClient.connect(node.url, node.token("wms", None, ("admin",)))
    listener = await DockcastClient.connect(node.url, node.token("desk", "dock-cc"))
    speaker = Participant(node.url, node.token("warehouse", "dock-cc", ("publish", "subscribe")))
    player = MediaPlayer(_clip(tmp_path))
    try:
        await admin.room_create("dock-cc", shipment_id="S-CC")
        await listener.join("dock-cc")
        await speaker.connect()
        joined = await speaker.join("dock-cc")
        # a member of the room without the record grant may not turn them on
        with pytest.raises(ServerError) as refused:
            await listener.assistant_captions("dock-cc", joined["participant_id"], True)
        assert refused.value.code == "forbidden"
        await speaker.publish(video=False, audio_track=player.audio)
        on = await admin.assistant_captions("dock-cc", joined["participant_id"], True)
        assert on["on"] is True and len(on["track_ids"]) == 1
        caption = await _caption(listener)
        payload = caption["payload"]
        assert caption["from"] == "assistant" and caption["room"] == "dock-cc"
        assert payload["participant_id"] == joined["participant_id"] and payload["lang"] == "en"
        words = payload["text"].lower()  # Opus over the network: stems, two of four
        assert sum(w in words for w in ("parcel", "pack", "held", "custom")) >= 2, payload["text"]
        assert payload["start"] < payload["end"] and payload["translation_unavailable"] is True
        off = await admin.assistant_captions("dock-cc", joined["participant_id"], False)
        assert off["on"] is False and off["track_ids"]
    finally:
        player.audio.stop()
        await speaker.close()
        for client in (admin, listener):
            await client.close()
