"""The assistant on the question set (``questions.json``: 71 questions, 31 in English,
30 in Chinese, 10 mixed; some the record cannot answer), end to end on the plugin
context with the real encoder, shipments plugin and schema.

Accuracy is the share of questions whose intent is the expected one; it was 69/71
(97%) when measured (docs/assistant.md), the floor below leaves a margin for another
encoder build. Whatever the intent, every answer's facts must be the record's own
(field and value), so nothing the record lacks is ever stated.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from plugins.assistant import record_facts
from plugins.shipments import ShipmentsReader

from .support import RECORDS, ask, assistant_alerts, make_records

QUESTIONS = json.loads((pathlib.Path(__file__).with_name("questions.json")).read_text("utf-8"))["questions"]
ACCURACY_FLOOR = 0.85


def test_the_set_is_big_and_mixed_enough():
    assert len(QUESTIONS) >= 60
    langs = [q["lang"] for q in QUESTIONS]
    assert langs.count("zh") >= 30 and langs.count("en") >= 30
    assert sum(1 for q in QUESTIONS if any("\u4e00" <= c <= "\u9fff" for c in q["text"])
               and any(c.isascii() and c.isalpha() for c in q["text"])) >= 10
    assert sum(q["handoff"] for q in QUESTIONS) >= 15  # unanswerable from the record
    assert {q["intent"] for q in QUESTIONS} >= {
        "where_is_it", "eta", "customs_status", "exception_meaning", "return_status",
        "start_inspection", "human_please", "unknown"}


@pytest.fixture
async def answered(ctx, node):
    await make_records(ctx, node)
    results = []
    for q in QUESTIONS:
        payload = {"text": q["text"]}
        if q.get("ask_shipment"):
            payload["shipment_id"] = q["ask_shipment"]
        results.append((q, await ask(ctx, q["shipment"], payload)))
    reader = ShipmentsReader(ctx.data_dir / "shipments.db")
    records = {sid: record_facts(await reader.details(sid)) for sid in RECORDS}
    await reader.close()
    return results, records


async def test_accuracy_and_every_fact_from_the_record(ctx, answered):
    results, records = answered
    right = [q["text"] for q, a in results if a["payload"]["intent"] == q["intent"]]
    accuracy = len(right) / len(results)
    wrong = [(q["text"], q["intent"], a["payload"]["intent"]) for q, a in results
             if a["payload"]["intent"] != q["intent"]]
    print(f"\nassistant accuracy {len(right)}/{len(results)} = {accuracy:.1%}; wrong: {wrong}")
    assert accuracy >= ACCURACY_FLOOR, wrong
    for q, a in results:
        payload = a["payload"]
        record = records.get(q["shipment"], {}) if q["shipment"] and not q.get("ask_shipment") else {}
        for fact in payload["facts"]:
            assert fact["field"] in record and record[fact["field"]] == fact["value"], \
                f"{q['text']!r}: {fact} is not in the record {record}"
        if "eta" not in record:
            assert "eta" not in {f["field"] for f in payload["facts"]}
        assert payload["lang"] == q["lang"], q["text"]
        assert (a["from"], payload["in_reply_to"]) == ("assistant", a["question_seq"])


async def test_right_intents_state_the_expected_facts_and_handoffs(ctx, answered):
    results, _ = answered
    for q, a in results:
        payload = a["payload"]
        if payload["intent"] != q["intent"]:
            continue  # counted by the accuracy
        fields = {f["field"] for f in payload["facts"]}
        assert set(q["facts"]) <= fields, (q["text"], payload)
        assert payload["handoff"] is q["handoff"], (q["text"], payload["text"])
        for field in q["facts"]:
            value = next(f["value"] for f in payload["facts"] if f["field"] == field)
            if field.endswith((".detail", "eta")):
                assert str(value) in payload["text"], (q["text"], payload["text"])
    # an unknown question is always a person's, whatever the record
    assert all(a["payload"]["handoff"] for _, a in results if a["payload"]["intent"] == "unknown")
    # one alert per handoff, in the asking room
    handoffs = [a for _, a in results if a["payload"]["handoff"]]
    assert len(assistant_alerts(ctx)) == len(handoffs)
