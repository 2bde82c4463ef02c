"""The assistant's answer latency on one node (a measurement, not a test).

Starts ``dockcast serve`` on a free port with a fresh data directory and the hub
variables offline, makes a shipment with a status history and an ETA, binds a room to
it, puts ``--members`` clients in the room, and has one of them ask ``--count``
questions one at a time (taken in turn from ``tests/plugins/assistant/questions.json``:
Chinese, English and mixed). For each: the time from ``send`` to the
``assistant.answer`` message at the first member that has it, and at every member. All clients run in this
process (uvloop), so send and receipt times share a clock.

    .venv/bin/python scripts/measure_assistant.py              # 200 questions
    .venv/bin/python scripts/measure_assistant.py --count 50

Reports p50/p95/max of send -> answer at the first member and at the last, and the
answers by intent.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import pathlib
import sys
import tempfile
import time

import uvloop

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from measure_messages import KEY, SECRET, pct, start_node

from plugins.assistant.encoder import OFFLINE_ENV
from signalling.client import DockcastClient
from signalling.tokens import mint_token

QUESTIONS = ROOT / "tests" / "plugins" / "assistant" / "questions.json"
ROOM, SHIPMENT = "dock-measure", "S-MEASURE"


async def measure(url: str, args: argparse.Namespace) -> None:
    texts = [q["text"] for q in json.loads(QUESTIONS.read_text("utf-8"))["questions"]]
    admin = await DockcastClient.connect(url, mint_token(KEY, SECRET, "wms", grants=("admin",)))
    await admin.shipment_upsert(SHIPMENT, carrier="SF Express", tracking_no="SF1234567890",
                                eta="2026-05-10T09:00:00+08:00")
    for status, detail in (("picked_up", None), ("in_transit", None),
                           ("import_customs_hold", "commercial invoice missing")):
        await admin.shipment_event(SHIPMENT, status, detail)
    await admin.room_create(ROOM, shipment_id=SHIPMENT)
    members = []
    arrivals: dict[int, list[float]] = collections.defaultdict(list)
    answered: dict[int, asyncio.Event] = collections.defaultdict(asyncio.Event)
    intents: collections.Counter = collections.Counter()
    for i in range(args.members):
        member = await DockcastClient.connect(
            url, mint_token(KEY, SECRET, f"m{i}", room=ROOM, grants=("message",)),
            subprotocol=args.subprotocol)

        def on_message(event: dict, i: int = i) -> None:
            if event["topic"] != "assistant.answer":
                return
            question = event["payload"]["in_reply_to"]
            arrivals[question].append(time.perf_counter())
            if i == 0:
                intents[event["payload"]["intent"]] += 1
            if len(arrivals[question]) == args.members:
                answered[question].set()

        member.on("message", on_message)
        await member.join(ROOM)
        members.append(member)
    first_ms, all_ms = [], []
    try:
        for n in range(args.warmup + args.count):
            started = time.perf_counter()
            sent = await members[0].send("assistant.ask", {"text": texts[n % len(texts)]})
            await asyncio.wait_for(answered[sent["seq"]].wait(), 30)
            if n >= args.warmup:
                times = arrivals[sent["seq"]]
                first_ms.append((times[0] - started) * 1000)
                all_ms.append((max(times) - started) * 1000)
    finally:
        for client in (admin, *members):
            await client.close()
    print(f"{args.count} questions, {args.members} members ({args.subprotocol}), one at a time")
    for name, values in (("send -> answer, first member", first_ms),
                         ("send -> answer, every member", all_ms)):
        print(f"  {name}: p50 {pct(values, 50):.1f} ms, p95 {pct(values, 95):.1f} ms, "
              f"max {max(values):.1f} ms")
    print(f"  intents: {dict(intents.most_common())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5, help="questions asked before measuring")
    parser.add_argument("--subprotocol", default="msgpack", choices=("msgpack", "json"))
    args = parser.parse_args()
    os.environ.update(OFFLINE_ENV)
    with tempfile.TemporaryDirectory(prefix="dockcast-assistant-") as data_dir:
        proc, url = start_node(data_dir)
        try:
            uvloop.run(measure(url, args))
        finally:
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
