"""Intents as data, and the classifier that picks one for a question.

An intents file is JSON::

    {"version": 1,
     "intents": {
       "where_is_it": {"examples": {"en": ["Where is my parcel?", ...],
                                   "zh": ["我的包裹在哪里？", ...]}},
       "pallet_count": {"examples": {...},
                        "answers": {"en": "Shipment {shipment_id} ...", "zh": "..."},
                        "handoff": false}}}

The built-in file (``intents.json`` beside this module) holds the intents the assistant
answers from the shipment's record (``answers.py``) and ``unknown`` (off-topic phrases:
a question nearest to them is handed to a person). A seller adds a file of their own
(plugin option ``intents_files``): its examples are added to an intent of the same
name; a new intent needs ``answers``, a template per language that may name only the
record's facts (``{shipment_id}``, ``{status}``, ``{eta}``..., see
`plugins.assistant.answers.RECORD_FIELDS`).

The classifier compares a question's embedding with every example's: an intent scores
the mean of its ``k`` most similar examples, and the confidence is the softmax of the
scores (``temperature``) at the best one. Below ``min_score`` or ``min_confidence`` the
question is ``unknown``: the assistant says it did not understand and hands over.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import IntentsError
from .lang import LANGS

__all__ = [
    "BUILTIN_INTENTS_FILE",
    "UNKNOWN",
    "Classification",
    "Intent",
    "IntentClassifier",
    "IntentSet",
    "load_intents",
]

BUILTIN_INTENTS_FILE = Path(__file__).with_name("intents.json")
UNKNOWN = "unknown"
"""The intent of a question the assistant does not understand well enough."""

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MAX_EXAMPLE_CHARS = 500


@dataclass(frozen=True, slots=True)
class Intent:
    """One intent: example phrases per language (``zh``, ``en``); a seller's intent also
    has ``answers`` (a template per language) and whether it ``handoff``s."""

    name: str
    examples: Mapping[str, tuple[str, ...]]
    answers: Mapping[str, str] = field(default_factory=dict)
    handoff: bool = False

    def phrases(self) -> list[str]:
        return [text for lang in LANGS for text in self.examples.get(lang, ())]


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise IntentsError(f"{where} must be a list of non-empty strings")
    if any(len(v) > _MAX_EXAMPLE_CHARS for v in value):
        raise IntentsError(f"{where} has a phrase longer than {_MAX_EXAMPLE_CHARS} characters")
    return tuple(value)


def _languages(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not set(value) <= set(LANGS):
        raise IntentsError(f"{where} must be a map with keys among {list(LANGS)}")
    return dict(value)


def _template(text: Any, where: str, fields: frozenset[str]) -> str:
    if not isinstance(text, str) or not text.strip():
        raise IntentsError(f"{where} must be a non-empty string")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise IntentsError(f"{where} is not a template: {exc}") from None
    unknown = names - fields
    if unknown:
        raise IntentsError(f"{where} names {sorted(unknown)}: a template may name only the "
                           f"record's fields {sorted(fields)}")
    return text


@dataclass(frozen=True, slots=True)
class IntentSet:
    """Intents by name, in file order."""

    intents: Mapping[str, Intent]

    @classmethod
    def parse(cls, data: Any, source: str, fields: Iterable[str] = ()) -> IntentSet:
        """Check the JSON value of an intents file (``source`` names it in errors);
        ``fields`` are the names an ``answers`` template may use."""
        allowed = frozenset(fields)
        if not isinstance(data, Mapping) or not isinstance(data.get("intents"), Mapping):
            raise IntentsError(f"{source}: expected {{\"intents\": {{name: {{examples}}}}}}")
        intents: dict[str, Intent] = {}
        for name, body in data["intents"].items():
            where = f"{source}: intent {name!r}"
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise IntentsError(f"{where}: a name is snake_case, at most 64 characters")
            if not isinstance(body, Mapping):
                raise IntentsError(f"{where} must be a map")
            examples = {lang: _strings(v, f"{where} examples.{lang}")
                        for lang, v in _languages(body.get("examples", {}), f"{where} examples").items()}
            answers = {lang: _template(v, f"{where} answers.{lang}", allowed)
                       for lang, v in _languages(body.get("answers", {}), f"{where} answers").items()}
            handoff = body.get("handoff", False)
            if not isinstance(handoff, bool):
                raise IntentsError(f"{where} handoff must be true or false")
            intents[name] = Intent(name, MappingProxyType(examples), MappingProxyType(answers), handoff)
        return cls(MappingProxyType(intents))

    @classmethod
    def load(cls, path: str | Path, fields: Iterable[str] = ()) -> IntentSet:
        """Read and check an intents file."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IntentsError(f"intents file {path}: {exc}") from None
        return cls.parse(data, str(path), fields)

    def merged(self, other: IntentSet) -> IntentSet:
        """These intents with ``other``'s added: examples of a shared name are joined,
        ``other``'s answers and handoff win where it gives them."""
        out = dict(self.intents)
        for name, theirs in other.intents.items():
            mine = out.get(name)
            if mine is None:
                out[name] = theirs
                continue
            examples = {lang: mine.examples.get(lang, ()) + theirs.examples.get(lang, ())
                        for lang in LANGS}
            out[name] = Intent(name, MappingProxyType(examples),
                               MappingProxyType({**mine.answers, **theirs.answers}),
                               theirs.handoff or mine.handoff)
        return IntentSet(MappingProxyType(out))

    def labelled_phrases(self) -> tuple[list[str], list[str]]:
        """Every example phrase and, at the same index, its intent's name."""
        texts, labels = [], []
        for intent in self.intents.values():
            for text in intent.phrases():
                texts.append(text)
                labels.append(intent.name)
        return texts, labels


def load_intents(extra_files: Sequence[str | Path] = (), fields: Iterable[str] = ()) -> IntentSet:
    """The built-in intents with each of ``extra_files`` merged in, in order; a new
    intent of an extra file must have ``answers`` in both languages."""
    fields = frozenset(fields)
    intents = IntentSet.load(BUILTIN_INTENTS_FILE)
    for path in extra_files:
        extra = IntentSet.load(path, fields)
        for name, intent in extra.intents.items():
            if name not in intents.intents and set(intent.answers) != set(LANGS):
                raise IntentsError(f"{path}: new intent {name!r} needs answers in {list(LANGS)}")
        intents = intents.merged(extra)
    return intents


@dataclass(frozen=True, slots=True)
class Classification:
    """The intent picked (`UNKNOWN` below the thresholds), the confidence (0-1) and the
    best intent's score (mean cosine similarity of its nearest examples)."""

    intent: str
    confidence: float
    score: float
    nearest: str
    """The intent with the best score, even when the answer is `UNKNOWN`."""


class IntentClassifier:
    """Nearest examples in embedding space (see the module docstring); sans IO: give it
    the examples' vectors, then one question's vector at a time."""

    def __init__(self, vectors: np.ndarray, labels: Sequence[str], *, k: int = 3,
                 temperature: float = 0.02, min_score: float = 0.82,
                 min_confidence: float = 0.3) -> None:
        if len(vectors) != len(labels) or not len(labels):
            raise IntentsError("the classifier needs one vector per example phrase, and some")
        self.names = list(dict.fromkeys(labels))
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self._members = [np.flatnonzero(np.array(labels) == name) for name in self.names]
        self.k = k
        self.temperature = temperature
        self.min_score = min_score
        self.min_confidence = min_confidence

    @classmethod
    def build(cls, intents: IntentSet, encode: Callable[[list[str]], np.ndarray],
              **options: Any) -> IntentClassifier:
        """Embed every example of ``intents`` with ``encode`` (blocking: run it off the
        event loop) and build the classifier."""
        texts, labels = intents.labelled_phrases()
        return cls(encode(texts), labels, **options)

    def scores(self, vector: np.ndarray) -> np.ndarray:
        """Each intent's score (in `names` order) for one L2-normalised vector."""
        sims = self.vectors @ np.asarray(vector, dtype=np.float32)
        return np.array([np.sort(sims[idx])[-self.k:].mean() for idx in self._members])

    def classify(self, vector: np.ndarray) -> Classification:
        scores = self.scores(vector)
        weights = np.exp((scores - scores.max()) / self.temperature)
        best = int(scores.argmax())
        confidence = float(weights[best] / weights.sum())
        name = self.names[best]
        understood = scores[best] >= self.min_score and confidence >= self.min_confidence
        return Classification(name if understood else UNKNOWN, round(confidence, 3),
                              round(float(scores[best]), 4), name)
