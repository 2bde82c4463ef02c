"""plugins.assistant.intents: the intents file, a seller's additions, the classifier."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.assistant import IntentsError
from plugins.assistant.answers import RECORD_FIELDS
from plugins.assistant.intents import (
    BUILTIN_INTENTS_FILE,
    UNKNOWN,
    IntentClassifier,
    IntentSet,
    load_intents,
)

REQUIRED = {"where_is_it", "eta", "customs_status", "exception_meaning", "return_status",
            "start_inspection", "human_please", UNKNOWN}


def test_builtin_intents_have_examples_in_both_languages():
    intents = load_intents()
    assert set(intents.intents) >= REQUIRED
    for intent in intents.intents.values():
        assert len(intent.examples["zh"]) >= 8 and len(intent.examples["en"]) >= 8, intent.name
        assert not intent.answers  # built-in answers are written in answers.py


def test_a_sellers_file_adds_examples_and_intents(tmp_path):
    extra = tmp_path / "mine.json"
    extra.write_text(json.dumps({"intents": {
        "where_is_it": {"examples": {"en": ["yo where's my stuff"]}},
        "pallet_carrier": {"examples": {"en": ["Who carries my pallet?"], "zh": ["谁在运我的托盘"]},
                           "answers": {"en": "Carrier: {carrier}.", "zh": "承运商：{carrier}。"}},
    }}), encoding="utf-8")
    intents = load_intents([extra], RECORD_FIELDS)
    where = intents.intents["where_is_it"]
    assert where.examples["en"][-1] == "yo where's my stuff"
    assert len(where.examples["en"]) == len(load_intents().intents["where_is_it"].examples["en"]) + 1
    assert intents.intents["pallet_carrier"].answers["zh"] == "承运商：{carrier}。"
    texts, labels = intents.labelled_phrases()
    assert labels[texts.index("谁在运我的托盘")] == "pallet_carrier"


@pytest.mark.parametrize("body, message", [
    ({"intents": {"Bad Name": {"examples": {}}}}, "snake_case"),
    ({"intents": {"x": {"examples": {"fr": ["où"]}}}}, "keys among"),
    ({"intents": {"x": {"examples": {"en": [""]}}}}, "non-empty strings"),
    ({"intents": {"x": {"examples": {"en": ["a"]}, "answers": {"en": "{price}", "zh": "{price}"}}}},
     "may name only the record's fields"),
    ({"intents": {"x": {"examples": {"en": ["a"]}, "answers": {"en": "{", "zh": "x"}}}}, "not a template"),
    ({"intents": {"x": {"examples": {"en": ["a"]}, "answers": {"en": "{eta}"}}}}, "needs answers in"),
    ({"intents": {"x": {"examples": {"en": ["a"]}, "handoff": "yes"}}}, "true or false"),
    ({"intents": []}, "expected"),
])
def test_a_bad_file_is_refused_naming_file_and_intent(tmp_path, body, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    with pytest.raises(IntentsError, match=message) as refused:
        load_intents([path], RECORD_FIELDS)
    assert str(path) in str(refused.value)


def test_unreadable_file(tmp_path):
    with pytest.raises(IntentsError, match="missing.json"):
        load_intents([tmp_path / "missing.json"])
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(IntentsError, match="x.json"):
        load_intents([tmp_path / "x.json"])


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=12)


@given(st.dictionaries(st.sampled_from(["intents", "version"]), json_values | st.dictionaries(
    st.text(max_size=10), st.fixed_dictionaries({}, optional={
        "examples": json_values | st.dictionaries(st.sampled_from(["zh", "en"]),
                                                  st.lists(st.text(max_size=10), max_size=2)),
        "answers": json_values, "handoff": json_values}), max_size=3)))
def test_any_json_is_an_intent_set_or_intents_error(data):
    try:
        parsed = IntentSet.parse(data, "fuzz", RECORD_FIELDS)
    except IntentsError:
        return
    for intent in parsed.intents.values():
        assert all(isinstance(t, str) and t.strip() for t in intent.phrases())


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_classifier_picks_the_nearest_intent_and_refuses_below_thresholds():
    vectors = np.stack([unit(1, 0, 0), unit(1, 0.1, 0), unit(0, 1, 0), unit(0, 1, 0.1)])
    classifier = IntentClassifier(vectors, ["a", "a", "b", "b"], k=2, temperature=0.05,
                                  min_score=0.8, min_confidence=0.6)
    found = classifier.classify(unit(1, 0.05, 0))
    assert (found.intent, found.nearest) == ("a", "a") and found.confidence > 0.99
    far = classifier.classify(unit(0, 0, 1))  # near nothing
    assert far.intent == UNKNOWN and far.score < 0.8
    mirrored = np.stack([unit(1, 0, 0), unit(1, 0, 0.1), unit(0, 1, 0), unit(0, 1, 0.1)])
    lenient = IntentClassifier(mirrored, ["a", "a", "b", "b"], k=2, temperature=0.05,
                               min_score=0.0, min_confidence=0.6)
    between = lenient.classify(unit(1, 1, 0))  # as near one as the other
    assert between.intent == UNKNOWN and between.nearest in ("a", "b")
    assert between.confidence < 0.6 <= lenient.classify(unit(1, 0.05, 0)).confidence


def test_classifier_needs_examples():
    with pytest.raises(IntentsError):
        IntentClassifier(np.zeros((0, 3)), [])
    with pytest.raises(IntentsError):
        IntentClassifier(np.zeros((2, 3)), ["a"])


def test_builtin_file_is_the_one_shipped():
    assert BUILTIN_INTENTS_FILE.name == "intents.json" and BUILTIN_INTENTS_FILE.exists()
