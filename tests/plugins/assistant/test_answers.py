"""plugins.assistant.answers: every fact from the record, and a handoff where it has none."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.assistant.answers import compose, no_shipment, record_facts
from plugins.assistant.intents import Intent
from plugins.shipments import HistoryEntry, Shipment, ShipmentDetails

INTENTS = ["where_is_it", "eta", "customs_status", "exception_meaning", "return_status",
           "start_inspection", "human_please", "unknown", "no_such_intent"]


def details(history=(), **fields) -> ShipmentDetails:
    base = {"shipment_id": "S1", "tracking_no": None, "carrier": None, "origin": None, "destination": None,
                "stage": None, "eta": None, "status": history[-1][0] if history else None,
                "created_at": 1.0, "updated_at": 2.0}
    base.update(fields)
    entries = tuple(HistoryEntry("S1", i + 1, status, severity, detail, 1_778_000_000.0 + i * 3600)
                    for i, (status, severity, detail) in enumerate(history))
    return ShipmentDetails(Shipment(**base), entries, (), ())


HELD = details([("in_transit", "info", None), ("import_customs_hold", "warning", "x-ray check")],
               eta="2026-05-10T09:00:00+08:00", carrier="SF", tracking_no="SF1")


def facts(answer) -> dict:
    return dict(answer.facts)


def test_where_states_the_latest_event_and_eta_in_english_and_chinese():
    en = compose("where_is_it", HELD, "en", 0.9)
    assert en.text.startswith("Shipment S1: held at import customs (2026-05-05 ")
    assert "x-ray check" in en.text and "2026-05-10T09:00:00+08:00" in en.text and not en.handoff
    assert facts(en)["history.2.status"] == "import_customs_hold" and facts(en)["eta"] == HELD.shipment.eta
    zh = compose("where_is_it", HELD, "zh", 0.9)
    assert "进口海关扣留" in zh.text and "预计到达：2026-05-10T09:00:00+08:00" in zh.text
    assert (zh.lang, zh.intent, zh.confidence) == ("zh", "where_is_it", 0.9)


def test_no_eta_is_said_and_handed_over_never_guessed():
    record = details([("in_transit", "info", None)])
    for lang in ("en", "zh"):
        answer = compose("eta", record, lang, 0.8)
        assert answer.handoff and "eta" not in facts(answer)
        assert ("no expected arrival time" in answer.text) if lang == "en" else ("还没有预计到达时间" in answer.text)


def test_a_hold_without_a_reason_says_so_and_hands_over():
    record = details([("import_customs_hold", "warning", None)])
    answer = compose("customs_status", record, "en", 0.8)
    assert "gives no reason" in answer.text and answer.handoff
    assert compose("customs_status", HELD, "en", 0.8).handoff is False
    assert compose("customs_status", details([("in_transit", "info", None)]), "zh", 0.8).handoff


def test_an_exception_is_explained_and_always_a_persons():
    record = details([("exception", "critical", {"code": 17})])  # a map detail is not stated
    answer = compose("exception_meaning", record, "en", 0.8)
    assert answer.handoff and "a person must act" in answer.text
    assert set(facts(answer)) == {"shipment_id", "history.1.status", "history.1.ts"}
    calm = compose("exception_meaning", HELD, "en", 0.8)
    assert not calm.handoff and "No exception is recorded" in calm.text


def test_a_sellers_template_uses_record_fields_or_hands_over():
    intent = Intent("carrier_q", {"en": ("who carries it",)}, {"en": "Carried by {carrier}.",
                                                                "zh": "承运商 {carrier}。"})
    assert compose(intent, HELD, "en", 0.7).text == "Carried by SF."
    missing = compose(intent, details(), "zh", 0.7)
    assert missing.handoff and "carrier" in missing.text and missing.facts == (("shipment_id", "S1"),)


@pytest.mark.parametrize("bound, asked, says", [
    (None, None, "not bound to a shipment"),
    ("S1", "S2", "only about the shipment of this room (S1)"),
    ("S1", None, "Shipment S1 is not on record"),
])
def test_no_record_to_answer_from(bound, asked, says):
    answer = no_shipment("en", "eta", 0.9, asked, bound)
    assert says in answer.text and answer.handoff and answer.facts == ()


def test_payload_has_the_contracts_fields():
    payload = compose("where_is_it", HELD, "en", 0.9).payload(7)
    assert set(payload) == {"text", "lang", "intent", "confidence", "facts", "handoff", "in_reply_to"}
    assert payload["in_reply_to"] == 7
    assert all(set(f) == {"field", "value"} for f in payload["facts"])


statuses = st.sampled_from(["picked_up", "in_transit", "import_customs_hold", "customs_cleared",
                            "exception", "return_requested", "return_received", "inspected",
                            "pallet_damaged", "export_customs"])
entries = st.tuples(statuses, st.sampled_from(["info", "warning", "critical"]),
                    st.none() | st.text(min_size=1, max_size=30) | st.just({"k": 1}))
optional = st.none() | st.text(min_size=1, max_size=20)


@given(st.lists(entries, max_size=6), optional, optional, optional,
       st.sampled_from(INTENTS), st.sampled_from(["en", "zh"]))
def test_every_fact_of_every_answer_is_the_records(history, eta, carrier, stage, intent, lang):
    record = details(history, eta=eta, carrier=carrier, stage=stage)
    answer = compose(intent, record, lang, 0.5)
    known = record_facts(record)
    for field, value in answer.facts:
        assert known[field] == value
    assert answer.lang == lang and answer.text
    if eta is None:
        assert "eta" not in facts(answer)
