"""What the assistant costs the forwarding path: one run, idle, answering, captioning.

The ``forward`` sweep (one VP8 + Opus publisher from the corpus, N subscribers) runs
twice in one run on the same clients: on a plain node, then on a node whose assistant
captions every audio track (``[plugins.assistant] captions_all = true``: the publisher's
Opus is tapped, decoded, cut by the voice detector and, where it is loud enough,
transcribed by Whisper on its own thread). Each row has the server's CPU per forwarded
packet (the whole process: the caption threads included, as a node pays for them) and
the packet latency percentiles; ``captions`` compares the two at each N, and the
node's caption counters (captions posted, seconds of audio dropped) say whether the
captions kept up. The corpus's Opus is a tone, loud enough to be "speech" to the
detector: captions run all the time, the worst case. A third node answers questions
while it forwards (``--ask-rate`` ``assistant.ask`` messages a second, sent from this
process in a room bound to a shipment: the encoder, the record read and the answer's
commit on the node): the assistant busy answering.

    python -m bench.captions --out bench-results/captions [--sizes 1,10,50] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import sys
import urllib.request

from .harness import DockcastSystem, Run, RunOptions, System, Workers, free_port
from .scenarios import _each_system, _grow, _measure_step

__all__ = ["CAPTIONS_CONFIG", "CaptionsSystem", "AskingSystem", "captions", "main"]

CAPTIONS_CONFIG = "[plugins.assistant]\ncaptions_all = true\n"


class CaptionsSystem(DockcastSystem):
    """``dockcast serve`` captioning every audio track; its ``/metrics`` are read after
    each sweep (`caption_counters`)."""

    name = "dockcast-captions"
    label = "Dockcast, captions on"

    def __init__(self) -> None:
        super().__init__()
        self.http = ""

    async def start(self, run: Run) -> None:
        port = free_port()
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.http = f"http://127.0.0.1:{port}"
        config = run.out / f"{self.name}.toml"
        config.write_text(CAPTIONS_CONFIG)
        await self._launch(
            [sys.executable, "-m", "dockcast.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--data-dir", str(run.out / f"{self.name}-data"),
             "--api-key", self.api_key, "--api-secret", self.api_secret,
             "--ice-address", self.ice_address, "--log-level", "warning", "--config", str(config)],
            run.logs / f"{self.name}-server.log", "127.0.0.1", port,
            env=dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))

    def caption_counters(self) -> dict[str, float]:
        """``dockcast_assistant_caption*`` samples from the node's ``/metrics``."""
        with urllib.request.urlopen(self.http + "/metrics", timeout=5) as reply:
            text = reply.read().decode()
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("dockcast_assistant_caption")}


QUESTIONS = ("Where is my parcel?", "我的包裹到哪了？", "When will it arrive?", "海关为什么扣我的货？",
             "What does this exception mean?", "退货处理到哪一步了？")


class AskingSystem(DockcastSystem):
    """A plain node whose assistant answers ``rate`` questions a second while it forwards
    (asked from this process, whose CPU is not the node's)."""

    name = "dockcast-asking"
    label = "Dockcast, answering questions"

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate
        self.asked = self.answered = 0
        self._task: asyncio.Task | None = None
        self._clients: list = []

    async def start(self, run: Run) -> None:
        from signalling.client import DockcastClient
        from signalling.tokens import mint_token

        await super().start(run)
        admin = await DockcastClient.connect(self.url, mint_token(self.api_key, self.api_secret, "wms",
                                                                  grants=("admin",)))
        await admin.shipment_upsert("S-BENCH", carrier="UPS", origin="Shenzhen", destination="Los Angeles")
        await admin.room_create("ask-bench", shipment_id="S-BENCH")
        member = await DockcastClient.connect(self.url, mint_token(
            self.api_key, self.api_secret, "seller", room="ask-bench", grants=("message",)))
        await member.join("ask-bench")
        self._clients = [admin, member]
        self._task = asyncio.ensure_future(self._ask(member))

    async def _ask(self, member) -> None:
        member.on("message", self._answered)
        while True:
            await member.send("assistant.ask", {"text": QUESTIONS[self.asked % len(QUESTIONS)]})
            self.asked += 1
            await asyncio.sleep(1 / self.rate)

    def _answered(self, message: dict) -> None:
        if message.get("topic") == "assistant.answer":
            self.answered += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for client in self._clients:
            await client.close()
        await super().stop()


async def captions(run: Run, sizes: tuple[int, ...] = (1, 10, 50), ask_rate: float = 5.0) -> dict:
    """The forward sweep on a plain node, one answering questions and one captioning
    (see the docstring)."""

    async def body(system: System, workers: Workers) -> dict:
        tracks = (await workers.publish(["captions"]))["captions"]
        rows, have = [], 0
        for n in sorted(sizes):
            await _grow(run, workers, "captions", tracks, have, n)
            have = n
            row = await _measure_step(run, system, workers, "captions", n)
            if isinstance(system, CaptionsSystem):
                row["caption_counters"] = system.caption_counters()
            if isinstance(system, AskingSystem):
                row["questions"] = {"asked": system.asked, "answered": system.answered}
            rows.append(row)
        return {"rows": rows}

    systems = await _each_system(run, "captions", body,
                                 [DockcastSystem(), AskingSystem(ask_rate), CaptionsSystem()])
    return {"scenario": "captions", "params": {"sizes": list(sizes), "ask_rate": ask_rate},
            "systems": systems, "captions": compare(systems)}


def compare(systems: dict) -> list[dict]:
    """Per N: CPU per packet and latency p50/p99 with the assistant idle (``off``),
    answering questions (``asking``) and captioning (``on``)."""
    rows = {key: {r["subscribers"]: r for r in systems.get(name, {}).get("rows", [])}
            for key, name in (("off", "dockcast"), ("asking", "dockcast-asking"),
                              ("on", "dockcast-captions"))}
    out = []
    for n in sorted(set(rows["off"]) & set(rows["on"])):
        have = {key: by_n[n] for key, by_n in rows.items() if n in by_n}
        out.append({"subscribers": n,
                    "cpu_us_per_packet": {k: r["cpu_us_per_packet"] for k, r in have.items()},
                    "latency_p50_ms": {k: r["latency_ms"]["p50"] for k, r in have.items()},
                    "latency_p99_ms": {k: r["latency_ms"]["p99"] for k, r in have.items()}})
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.captions", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=pathlib.Path, required=True, help="results folder")
    p.add_argument("--sizes", default="1,10,50", help="subscriber counts, comma-separated")
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured per step")
    p.add_argument("--ask-rate", type=float, default=5.0, help="questions a second to the answering node")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    run = Run(RunOptions(out=args.out, duration=args.duration, baselines=(),
                         command="python -m bench.captions"))
    run.prepare_corpus()
    result = asyncio.run(captions(run, sizes, args.ask_rate))
    (run.out / "captions.json").write_text(json.dumps(result, indent=2))
    for row in result["captions"]:
        run.console.print(f"N={row['subscribers']}: µs/packet idle / answering / captioning "
                          f"{row['cpu_us_per_packet']}; latency p50 {row['latency_p50_ms']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
