"""Live captions on real sfu rooms: Opus RTP from espeak-ng speech through a producer's
tap, decoded, cut, transcribed by Whisper base, posted as ``assistant.caption``."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.assistant.caption_service import CaptionService, CaptionsRequest
from plugins.assistant.captions import AudioTap, CaptionEngine
from plugins.assistant.segmenter import Utterance
from plugins.assistant.speech import Transcript
from signalling.errors import BadRequest, Forbidden, NotFound

from .media import ERROR_LIMIT, Conn, MediaContext, error_rate, opus_rtp, publish_audio, publish_video

pytestmark = pytest.mark.timeout(120)


async def until(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
    return predicate()


@pytest.fixture
async def setup(tmp_path, transcriber):
    ctx = MediaContext(tmp_path / "data")
    ctx.open_room("dock-1", "S-1")
    publisher = ctx.publisher("dock-1", "warehouse")
    service = CaptionService("assistant", transcriber=transcriber)
    await service.start(ctx)
    yield ctx, publisher, service
    await service.stop()


def captions(ctx) -> list:
    return [m for m in ctx.messages if m.topic == "assistant.caption"]


@pytest.mark.parametrize("lang, limit", sorted(ERROR_LIMIT.items()))
async def test_speech_on_a_track_becomes_a_caption_message(setup, clips, lang, limit):
    ctx, publisher, service = setup
    track = publish_audio(publisher)
    reply = await service.on_request(Conn(), {"room": "dock-1", "participant_id": publisher.participant.id,
                                              "on": True, "lang": lang})
    assert reply == {"type": "ok", "room": "dock-1", "participant_id": publisher.participant.id,
                     "on": True, "track_ids": [track.id]}
    before = time.time()
    for packet in opus_rtp(clips[lang]):
        assert track.send(packet)
    await until(lambda: captions(ctx))
    [message] = captions(ctx)
    payload = message.payload
    assert message.sender == "assistant" and message.room == "dock-1"
    assert (payload["participant_id"], payload["track_id"], payload["lang"]) == \
        (publisher.participant.id, track.id, lang)
    assert error_rate(payload["text"], lang) <= limit, payload["text"]
    assert before - 1 <= payload["start"] < payload["end"] <= time.time() + 10
    assert payload["translation"] is None and payload["translation_unavailable"] is True
    assert ctx.metrics_registry.get_sample_value("dockcast_assistant_captions_total") == 1


async def test_captions_off_removes_the_tap(setup):
    ctx, publisher, service = setup
    track = publish_audio(publisher)
    fields = {"room": "dock-1", "participant_id": publisher.participant.id, "on": True}
    await service.on_request(Conn(), fields)
    assert len(track.producer._taps) == 1
    reply = await service.on_request(Conn(), {**fields, "on": False})
    assert reply["track_ids"] == [track.id] and reply["on"] is False
    assert not track.producer._taps and service.engine.streams == {}


async def test_who_may_turn_captions_on(setup):
    ctx, publisher, service = setup
    publish_video(publisher)
    fields = {"room": "dock-1", "participant_id": publisher.participant.id, "on": True}
    with pytest.raises(Forbidden, match="record or admin"):
        await service.on_request(Conn("alice", "dock-1", message=True, publish=True), fields)
    with pytest.raises(Forbidden, match="does not admit"):
        await service.on_request(Conn("bob", "dock-2", record=True), fields)
    with pytest.raises(NotFound, match="publishes no audio"):
        await service.on_request(Conn("carol", "dock-1", record=True), fields)
    with pytest.raises(NotFound, match="not open"):
        await service.on_request(Conn(), {**fields, "room": "nowhere"})


@given(st.dictionaries(st.sampled_from(["room", "participant_id", "on", "lang"]),
                       st.one_of(st.none(), st.booleans(), st.text(max_size=5), st.integers())))
def test_a_captions_request_is_parsed_or_refused_by_name(fields):
    try:
        parsed = CaptionsRequest.parse(fields)
    except BadRequest as exc:
        assert "assistant.captions" in str(exc)
    else:
        assert isinstance(parsed.on, bool) and parsed.room and parsed.lang in (None, "zh", "en")


def test_a_full_tap_drops_its_oldest_packets_and_counts_them():
    tap = AudioTap(limit=3)
    for i in range(5):
        tap.rtp(bytes([i]) * 20, float(i), False)
    assert tap.dropped == 2 and [a for _, a in tap.packets] == [2.0, 3.0, 4.0]


class GatedTranscriber:
    """Transcribes nothing until the test opens the gate: transcription falling behind."""

    def __init__(self) -> None:
        self.entered, self.gate = threading.Event(), threading.Event()

    def transcribe(self, samples, lang):
        self.entered.set()
        self.gate.wait(30)
        return Transcript("en", "", 1.0)


def test_utterances_waiting_beyond_max_pending_are_dropped_oldest_first_and_counted():
    dropped: list[tuple[str, float]] = []
    transcriber = GatedTranscriber()
    engine = CaptionEngine(transcriber, lambda caption: None, max_pending=1,
                           dropped=lambda stage, seconds: dropped.append((stage, seconds)))
    try:
        class Stream:
            track_id, lang = "TR_a", None

        def utterance(start: float) -> Utterance:
            return Utterance(np.zeros(16000, np.float32), start, start + 1.0)

        engine._queue(Stream, [utterance(0.0)])
        assert transcriber.entered.wait(10)  # the speech thread holds the first one
        engine._queue(Stream, [utterance(1.0), utterance(2.0), utterance(3.0)])
        assert dropped == [("transcription", 1.0), ("transcription", 1.0)]
        assert [j.utterance.start for j in engine._jobs] == [3.0]
    finally:
        transcriber.gate.set()
        engine.stop()


async def test_a_track_that_stops_sending_still_gets_its_last_caption(setup, clips):
    ctx, publisher, service = setup
    track = publish_audio(publisher)
    await service.on_request(Conn(), {"room": "dock-1", "participant_id": publisher.participant.id,
                                      "on": True, "lang": "en"})
    for packet in opus_rtp(clips["en"], silence_s=0.0):  # no silence after the speech
        track.send(packet)
    await until(lambda: captions(ctx))
    assert error_rate(captions(ctx)[0].payload["text"], "en") <= 0.2
