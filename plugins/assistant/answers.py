"""Answers written from the shipment's record, never from anywhere else.

`compose` turns an intent and a shipment's record (`plugins.shipments.ShipmentDetails`)
into an `Answer` in Chinese or English. Every value a template shows is taken through a
`FactSheet`, which lists it in ``facts`` as ``{field, value}`` with the field named as
in the record (`record_facts`: ``eta``, ``status``, ``history.3.detail``...), so an
answer states nothing the record lacks. Where the record has no answer (no ETA yet, no
customs event, no such shipment) the answer says so and hands over (``handoff``).
Status names and times are presented per language (``import_customs_hold`` is "held
at import customs" / "进口海关扣留"); their values stay the record's.
"""

from __future__ import annotations

import datetime
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plugins.shipments import HistoryEntry, ShipmentDetails

from .intents import UNKNOWN, Intent

__all__ = [
    "RECORD_FIELDS",
    "STATUS_LABELS",
    "Answer",
    "FactSheet",
    "compose",
    "no_shipment",
    "record_facts",
]

RECORD_FIELDS = ("shipment_id", "tracking_no", "carrier", "origin", "destination", "stage",
                 "eta", "status")
"""The shipment's own fields, which a seller's answer template may name."""

#: How a known status reads in each language (a custom status shows as it is written).
STATUS_LABELS: Mapping[str, Mapping[str, str]] = {
    "picked_up": {"en": "picked up", "zh": "已揽收"},
    "export_customs": {"en": "in export customs", "zh": "出口报关中"},
    "in_transit": {"en": "in transit", "zh": "运输中"},
    "import_customs_hold": {"en": "held at import customs", "zh": "进口海关扣留"},
    "customs_cleared": {"en": "cleared customs", "zh": "已清关"},
    "warehouse_received": {"en": "received at the warehouse", "zh": "仓库已收货"},
    "put_away": {"en": "put away in the warehouse", "zh": "已上架"},
    "out_for_delivery": {"en": "out for delivery", "zh": "派送中"},
    "delivered": {"en": "delivered", "zh": "已签收"},
    "exception": {"en": "an exception", "zh": "异常"},
    "return_requested": {"en": "return requested", "zh": "已申请退货"},
    "return_received": {"en": "return received", "zh": "退货已收到"},
    "inspected": {"en": "inspected", "zh": "已验货"},
}
_RETURN_STATUSES = ("return_requested", "return_received", "inspected")


@dataclass(frozen=True, slots=True)
class Answer:
    """The ``assistant.answer`` payload, less ``in_reply_to`` (`Answer.payload` adds it)."""

    text: str
    lang: str
    intent: str
    confidence: float
    facts: tuple[tuple[str, Any], ...]
    handoff: bool

    def payload(self, in_reply_to: int) -> dict[str, Any]:
        return {"text": self.text, "lang": self.lang, "intent": self.intent,
                "confidence": self.confidence,
                "facts": [{"field": f, "value": v} for f, v in self.facts],
                "handoff": self.handoff, "in_reply_to": in_reply_to}


def _wire_ms(ts: float) -> int:
    return round(ts * 1000)


def record_facts(details: ShipmentDetails) -> dict[str, Any]:
    """Every fact of the record by field name: the shipment's fields that are set, and
    per history entry ``history.<seq>.status`` / ``.severity`` / ``.detail`` (text
    details only) / ``.ts`` (Unix milliseconds, as on the wire)."""
    wire = details.shipment.to_wire()
    facts = {name: wire[name] for name in RECORD_FIELDS if wire.get(name) not in (None, "")}
    for entry in details.history:
        prefix = f"history.{entry.seq}."
        facts[prefix + "status"] = entry.status
        facts[prefix + "severity"] = entry.severity
        facts[prefix + "ts"] = _wire_ms(entry.ts)
        if isinstance(entry.detail, str) and entry.detail:
            facts[prefix + "detail"] = entry.detail
    return facts


@dataclass
class FactSheet:
    """The record's facts; `take` hands one out and notes it for the answer."""

    details: ShipmentDetails
    lang: str
    record: dict[str, Any] = field(init=False)
    used: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.record = record_facts(self.details)

    def take(self, name: str) -> Any:
        """The record's value of ``name`` (``None`` when the record lacks it)."""
        value = self.record.get(name)
        if value is not None:
            self.used[name] = value
        return value

    def status_label(self, status: str) -> str:
        return STATUS_LABELS.get(status, {}).get(self.lang, status.replace("_", " "))

    def when(self, entry: HistoryEntry) -> str:
        ms = self.take(f"history.{entry.seq}.ts")
        moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
        return moment.strftime("%Y-%m-%d %H:%M UTC")

    def event(self, entry: HistoryEntry) -> str:
        """An entry as "<status> (<time>)[: <detail>]" in the sheet's language."""
        label = self.status_label(self.take(f"history.{entry.seq}.status"))
        text = f"{label}（{self.when(entry)}）" if self.lang == "zh" else f"{label} ({self.when(entry)})"
        detail = self.take(f"history.{entry.seq}.detail")
        if detail:
            text += f"：{detail}" if self.lang == "zh" else f": {detail}"
        return text

    def latest(self, wanted: Callable[[HistoryEntry], bool]) -> HistoryEntry | None:
        return next((e for e in reversed(self.details.history) if wanted(e)), None)


def _pick(lang: str, en: str, zh: str) -> str:
    return zh if lang == "zh" else en


_HANDOFF = {"en": " I have asked a colleague to help.", "zh": "我已请同事来协助。"}


def _where(sheet: FactSheet, sid: str) -> tuple[str, bool]:
    lang = sheet.lang
    entry = sheet.latest(lambda e: True)
    stage = sheet.take("stage")
    if entry is None and stage is None:
        return _pick(lang, f"No tracking status is recorded for shipment {sid} yet.",
                     f"货件 {sid} 还没有物流状态记录。"), True
    parts = []
    if entry is not None:
        parts.append(_pick(lang, f"Shipment {sid}: {sheet.event(entry)}.",
                           f"货件 {sid}：{sheet.event(entry)}。"))
    else:
        parts.append(_pick(lang, f"Shipment {sid} is at stage: {stage}.", f"货件 {sid} 目前阶段：{stage}。"))
        stage = None
    if stage:
        parts.append(_pick(lang, f"Stage: {stage}.", f"阶段：{stage}。"))
    carrier, tracking = sheet.take("carrier"), sheet.take("tracking_no")
    if carrier and tracking:
        parts.append(_pick(lang, f"Carrier {carrier}, tracking number {tracking}.",
                           f"承运商 {carrier}，运单号 {tracking}。"))
    eta = sheet.take("eta")
    if eta:
        parts.append(_pick(lang, f"Expected arrival: {eta}.", f"预计到达：{eta}。"))
    return " ".join(parts) if lang == "en" else "".join(parts), False


def _eta(sheet: FactSheet, sid: str) -> tuple[str, bool]:
    lang = sheet.lang
    eta = sheet.take("eta")
    entry = sheet.latest(lambda e: True)
    status = _pick(lang, f" Its latest status: {sheet.event(entry)}.",
                   f"最新状态：{sheet.event(entry)}。") if entry else ""
    if eta is None:
        return _pick(lang, f"There is no expected arrival time on record for shipment {sid} yet.",
                     f"货件 {sid} 目前还没有预计到达时间的记录。") + status, True
    return _pick(lang, f"Shipment {sid} is expected to arrive {eta}.",
                 f"货件 {sid} 预计 {eta} 到达。") + status, False


def _customs(sheet: FactSheet, sid: str) -> tuple[str, bool]:
    lang = sheet.lang
    entry = sheet.latest(lambda e: "customs" in e.status)
    if entry is None:
        return _pick(lang, f"No customs event is recorded for shipment {sid}.",
                     f"货件 {sid} 没有海关相关的记录。"), True
    text = _pick(lang, f"The latest customs event of shipment {sid}: {sheet.event(entry)}.",
                 f"货件 {sid} 最新的海关记录：{sheet.event(entry)}。")
    held = "hold" in entry.status
    if held and f"history.{entry.seq}.detail" not in sheet.used:
        return text + _pick(lang, " The record gives no reason for the hold.",
                            "记录中没有扣留原因。"), True
    return text, False


def _exception(sheet: FactSheet, sid: str) -> tuple[str, bool]:
    lang = sheet.lang
    entry = sheet.latest(lambda e: e.status == "exception" or e.severity == "critical")
    if entry is None:
        latest = sheet.latest(lambda e: True)
        if latest is None:
            return _pick(lang, f"No event is recorded for shipment {sid}.",
                         f"货件 {sid} 没有任何事件记录。"), True
        return _pick(lang, f"No exception is recorded for shipment {sid}; its latest status: "
                     f"{sheet.event(latest)}.",
                     f"货件 {sid} 没有异常记录；最新状态：{sheet.event(latest)}。"), False
    return _pick(
        lang,
        f"Shipment {sid} has {sheet.event(entry)}. An exception means the parcel was held "
        "up, lost, damaged or refused and a person must act: the staff decide the next step "
        "and will tell you here.",
        f"货件 {sid} 出现{sheet.event(entry)}。异常表示包裹受阻、丢失、破损或被拒收，需要人工处理："
        "下一步由工作人员决定，并会在这里告诉您。"), True


def _return(sheet: FactSheet, sid: str) -> tuple[str, bool]:
    lang = sheet.lang
    entry = sheet.latest(lambda e: e.status in _RETURN_STATUSES or e.status.startswith("return"))
    if entry is None:
        return _pick(lang, f"No return is recorded for shipment {sid}.",
                     f"货件 {sid} 没有退货记录。"), True
    return _pick(lang, f"Return of shipment {sid}: {sheet.event(entry)}.",
                 f"货件 {sid} 的退货：{sheet.event(entry)}。"), False


def _inspection(sheet: FactSheet, sid: str) -> tuple[str, bool]:
    return _pick(
        sheet.lang,
        f"To inspect shipment {sid} on video: stay in this room with your camera on; the "
        "warehouse publishes its camera here and a member with the record grant starts the "
        "recording, kept as evidence with a signed audit log.",
        f"视频验货（货件 {sid}）：请留在本房间并打开摄像头；仓库会在这里开启摄像头，"
        "由有录制权限的成员开始录制，录像连同签名的审计日志留作凭证。"), False


def _human(sheet: FactSheet, sid: str) -> tuple[str, bool]:
    return _pick(sheet.lang, "I have asked a person to join this conversation.",
                 "我已请工作人员来回答您。"), True


def _unknown(sheet: FactSheet, sid: str) -> tuple[str, bool]:
    return _pick(sheet.lang, "I am not sure I understood the question.",
                 "抱歉，我没有理解您的问题。"), True


_BUILTIN: Mapping[str, Callable[[FactSheet, str], tuple[str, bool]]] = {
    "where_is_it": _where,
    "eta": _eta,
    "customs_status": _customs,
    "exception_meaning": _exception,
    "return_status": _return,
    "start_inspection": _inspection,
    "human_please": _human,
    UNKNOWN: _unknown,
}


def _seller(intent: Intent, sheet: FactSheet, sid: str) -> tuple[str, bool]:
    template = intent.answers[sheet.lang]
    names = [n for _, n, _, _ in string.Formatter().parse(template) if n]
    values = {name: sheet.take(name) for name in names}
    if any(v is None for v in values.values()):
        missing = ", ".join(n for n, v in values.items() if v is None)
        return _pick(sheet.lang, f"The record of shipment {sid} has no {missing}.",
                     f"货件 {sid} 的记录中没有 {missing}。"), True
    return template.format(**values), intent.handoff


def compose(intent: Intent | str, details: ShipmentDetails, lang: str,
            confidence: float) -> Answer:
    """The answer to a question of ``intent`` about the shipment of ``details``, in
    ``lang``. A seller's intent (with ``answers``) uses its template; a built-in one
    its writer above; any other name is answered as `UNKNOWN`."""
    name = intent if isinstance(intent, str) else intent.name
    sheet = FactSheet(details, lang)
    sid = sheet.take("shipment_id")
    if not isinstance(intent, str) and intent.answers.get(lang):
        text, handoff = _seller(intent, sheet, sid)
    else:
        text, handoff = _BUILTIN.get(name, _unknown)(sheet, sid)
    if handoff and name not in ("human_please",):
        text += _HANDOFF[lang]
    return Answer(text, lang, name, confidence, tuple(sheet.used.items()), handoff)


def no_shipment(lang: str, intent: str, confidence: float, shipment_id: str | None,
                bound: str | None) -> Answer:
    """The answer when there is no record to answer from: the room has no shipment, the
    question names another one than the room's, or the record does not exist."""
    if bound is None:
        text = _pick(lang, "This room is not bound to a shipment, so I have no record to answer from.",
                     "本房间没有绑定货件，我没有可查的记录。")
    elif shipment_id not in (None, bound):
        text = _pick(lang, f"I can answer only about the shipment of this room ({bound}).",
                     f"我只能回答本房间货件（{bound}）的问题。")
    else:
        text = _pick(lang, f"Shipment {bound} is not on record.", f"没有货件 {bound} 的记录。")
    return Answer(text + _HANDOFF[lang], lang, intent, confidence, (), True)
