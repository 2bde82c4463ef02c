"""Turning captions on and off, and posting them: ``assistant.captions`` and the
``assistant.caption`` room messages.

``assistant.captions {room, participant_id, on, lang?}`` (grant ``record`` or ``admin``,
`plugins.assistant.access`) taps every audio track ``participant_id`` publishes in
``room`` (and those it publishes later, while on), or stops. ``lang`` (``zh`` or
``en``) says what the participant speaks; without it each utterance's language is
detected between Chinese and English. The answer is ``ok {room, participant_id, on,
track_ids}``. Captions stop when the participant leaves or the room closes. With the
option ``captions_all`` every audio track of every room is captioned from the moment
it is published (no request needed).

Each caption is a room message from the assistant, topic ``assistant.caption``,
payload ``{participant_id, track_id, lang, text, start, end, translation,
translation_unavailable?}`` (`plugins.assistant.captions`, `plugins.assistant.translate`).

The Whisper model (`plugins.assistant.speech`) is loaded at the first captions request
(1-2 s, in a thread; at start with ``captions_all``): a node that never captions never
holds it. Without faster-whisper
or its model the request is answered ``unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from signalling.errors import BadRequest, NotFound
from signalling.events import ParticipantLeft, RoomClosed, TrackPublished, TrackUnpublished

from .access import require_grant
from .errors import AssistantError
from .captions import TOPIC_CAPTION, AudioStream, AudioTap, Caption, CaptionEngine
from .speech import WhisperTranscriber
from .translate import Translator, translation_fields

__all__ = ["LANGS", "CaptionService", "CaptionsRequest", "languages"]

log = logging.getLogger(__name__)

LANGS = ("zh", "en")


@dataclass(frozen=True)
class CaptionsRequest:
    room: str
    participant_id: str
    on: bool
    lang: str | None = None

    @classmethod
    def parse(cls, fields: Mapping[str, Any]) -> CaptionsRequest:
        """Check the request's fields; ``BadRequest`` names the one that is wrong."""
        room, participant_id, on = fields.get("room"), fields.get("participant_id"), fields.get("on")
        if not isinstance(room, str) or not room:
            raise BadRequest("assistant.captions needs room")
        if not isinstance(participant_id, str) or not participant_id:
            raise BadRequest("assistant.captions needs participant_id")
        if not isinstance(on, bool):
            raise BadRequest("assistant.captions needs on: true or false")
        lang = fields.get("lang")
        if lang is not None and lang not in LANGS:
            raise BadRequest("assistant.captions lang must be 'zh' or 'en'")
        return cls(room, participant_id, on, lang)


class CaptionService:
    """See the module docstring. ``transcriber``: an already loaded one (tests share
    one); by default a `WhisperTranscriber` is loaded at the first request."""

    def __init__(self, identity: str, translator: Translator | None = None, *,
                 captions_all: bool = False, transcriber: Any = None,
                 speech: Mapping[str, Any] | None = None,
                 segmenter: Mapping[str, Any] | None = None, max_pending: int = 4) -> None:
        self.identity = identity
        self.translator = translator
        self.captions_all = bool(captions_all)
        self.transcriber = transcriber
        self.speech_options = dict(speech or {})
        self.segmenter_options = dict(segmenter or {})
        self.max_pending = max_pending
        self.ctx: Any = None
        self.engine: CaptionEngine | None = None
        self.wanted: dict[tuple[str, str], str | None] = {}  # (room, participant) -> lang
        self._loading: asyncio.Lock | None = None
        self._sending: set[asyncio.Task] = set()
        self._metrics: dict[str, Any] = {}

    async def start(self, ctx: Any) -> None:
        self.ctx = ctx
        self._loading = asyncio.Lock()
        self._metrics = _metrics(ctx.metrics_registry)
        subscribe = ctx.events.subscribe
        subscribe(TrackPublished, self.on_track_published, name="assistant-captions")
        subscribe((TrackUnpublished, ParticipantLeft, RoomClosed), self.on_gone,
                  name="assistant-captions")
        if self.captions_all:  # every track will need it: not the first speaker's seconds
            await self.ensure_engine()

    async def stop(self) -> None:
        if self.engine is not None:
            await asyncio.to_thread(self.engine.stop)
        await asyncio.gather(*self._sending, return_exceptions=True)

    # -- requests --------------------------------------------------------------------

    async def on_request(self, conn: Any, request: Any) -> dict:
        ask = CaptionsRequest.parse(getattr(request, "fields", request))
        require_grant(conn, ask.room)
        if self.ctx.room_info(ask.room) is None:
            raise NotFound(f"room {ask.room!r} is not open")
        if not ask.on:
            self.wanted.pop((ask.room, ask.participant_id), None)
            stopped = self._stop_where(lambda s: (s.room, s.participant_id) == (ask.room, ask.participant_id))
            return {"type": "ok", "room": ask.room, "participant_id": ask.participant_id,
                    "on": False, "track_ids": stopped}
        tracks = [t for t in self.ctx.room_tracks(ask.room)
                  if t.get("participant_id") == ask.participant_id and t.get("kind") == "audio"]
        if not tracks:
            raise NotFound(f"participant {ask.participant_id!r} publishes no audio in room {ask.room!r}")
        await self.ensure_engine()
        self.wanted[(ask.room, ask.participant_id)] = ask.lang
        track_ids = [self._caption(ask.room, t, ask.lang) for t in tracks]
        return {"type": "ok", "room": ask.room, "participant_id": ask.participant_id,
                "on": True, "track_ids": track_ids}

    async def ensure_engine(self) -> CaptionEngine:
        """The caption threads, the model loaded first (``SpeechUnavailable`` if it cannot be)."""
        async with self._loading:
            if self.engine is None:
                if self.transcriber is None:
                    self.transcriber = await asyncio.to_thread(WhisperTranscriber, **self.speech_options)
                    log.info("assistant: captions model loaded (%s)", self.transcriber.name)
                loop = asyncio.get_running_loop()
                self.engine = CaptionEngine(
                    self.transcriber, lambda caption: loop.call_soon_threadsafe(self._post, caption),
                    max_pending=self.max_pending, dropped=self._dropped)
        return self.engine

    def _caption(self, room: str, track: Mapping[str, Any], lang: str | None) -> str:
        track_id = track["track_id"]
        current = self.engine.streams.get(track_id)
        if current is not None:
            current.lang = lang  # already captioned: only the language hint changes
            return track_id
        tap = AudioTap()
        handle = self.ctx.tap_track(room, track_id, tap)
        self.engine.add(AudioStream(room, track.get("participant_id"), track_id, lang, tap, handle,
                                    clock_rate=handle.info.get("clock_rate") or 48_000,
                                    segmenter=self.segmenter_options))
        log.info("assistant: captions on for track %s in room %s", track_id, room)
        return track_id

    def _stop_where(self, condition: Any) -> list[str]:
        if self.engine is None:
            return []
        stopped = [t for t, s in list(self.engine.streams.items()) if condition(s)]
        for track_id in stopped:
            self.engine.remove(track_id)
        return stopped

    # -- events ----------------------------------------------------------------------

    async def on_track_published(self, event: TrackPublished) -> None:
        track = event.track
        if track.get("kind") != "audio":
            return
        key = (event.room, track.get("participant_id"))
        if key not in self.wanted and not self.captions_all:
            return
        try:
            await self.ensure_engine()
            self._caption(event.room, track, self.wanted.get(key))
        except NotFound:
            pass  # unpublished again meanwhile

    async def on_gone(self, event: Any) -> None:
        if isinstance(event, TrackUnpublished):
            self._stop_where(lambda s: s.track_id == event.track_id)
            return
        if isinstance(event, ParticipantLeft):
            self.wanted.pop((event.room, event.participant_id), None)
            self._stop_where(lambda s: (s.room, s.participant_id) == (event.room, event.participant_id))
            return
        for key in [k for k in self.wanted if k[0] == event.room]:
            del self.wanted[key]
        self._stop_where(lambda s: s.room == event.room)

    # -- posting ---------------------------------------------------------------------

    def _post(self, caption: Caption) -> None:
        task = asyncio.ensure_future(self._send(caption))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, caption: Caption) -> None:
        payload = caption.payload()
        payload.update(await translation_fields(self.translator, caption.text, caption.lang))
        try:
            await self.ctx.send_message(caption.room, TOPIC_CAPTION, payload, sender=self.identity,
                                        msg_id=f"caption-{caption.track_id}-{round(caption.start * 1000)}")
        except Exception:  # noqa: BLE001 - a room closed meanwhile, a full disk: logged
            log.exception("assistant: a caption for room %s could not be sent", caption.room)
            return
        self._metrics["captions"].inc()

    def _dropped(self, stage: str, seconds: float) -> None:
        self._metrics["dropped"].labels(stage).inc(seconds)


def _metrics(registry: Any) -> dict[str, Any]:
    from prometheus_client import Counter

    return {
        "captions": Counter("dockcast_assistant_captions", "Caption messages posted",
                            registry=registry),
        "dropped": Counter("dockcast_assistant_caption_dropped_seconds",
                           "Seconds of audio dropped because captions fell behind, by stage "
                           "(tap: packets the decoder did not take in time; transcription: "
                           "utterances Whisper did not reach)", ["stage"], registry=registry),
    }


def languages(value: Sequence[str] | str) -> tuple[str, ...]:
    """The ``captions_languages`` option checked: some of ``zh``, ``en``."""
    found = (value,) if isinstance(value, str) else tuple(value)
    if not found or any(lang not in LANGS for lang in found):
        raise AssistantError("captions_languages must be some of 'zh', 'en'")
    return found
