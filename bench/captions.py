"""What live captions cost the forwarding path: one run, captions off and on.

The ``forward`` sweep (one VP8 + Opus publisher from the corpus, N subscribers) runs
twice in one run on the same clients: on a plain node, then on a node whose assistant
captions every audio track (``[plugins.assistant] captions_all = true``: the publisher's
Opus is tapped, decoded, cut by the voice detector and, where it is loud enough,
transcribed by Whisper on its own thread). Each row has the server's CPU per forwarded
packet (the whole process: the caption threads included, as a node pays for them) and
the packet latency percentiles; ``captions`` compares the two at each N, and the
node's caption counters (captions posted, seconds of audio dropped) say whether the
captions kept up. The corpus's Opus is a tone, loud enough to be "speech" to the
detector: captions run all the time, the worst case.

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

__all__ = ["CAPTIONS_CONFIG", "CaptionsSystem", "captions", "main"]

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


async def captions(run: Run, sizes: tuple[int, ...] = (1, 10, 50)) -> dict:
    """The forward sweep on a plain node and on a captioning one (see the docstring)."""

    async def body(system: System, workers: Workers) -> dict:
        tracks = (await workers.publish(["captions"]))["captions"]
        rows, have = [], 0
        for n in sorted(sizes):
            await _grow(run, workers, "captions", tracks, have, n)
            have = n
            row = await _measure_step(run, system, workers, "captions", n)
            if isinstance(system, CaptionsSystem):
                row["caption_counters"] = system.caption_counters()
            rows.append(row)
        return {"rows": rows}

    systems = await _each_system(run, "captions", body, [DockcastSystem(), CaptionsSystem()])
    return {"scenario": "captions", "params": {"sizes": list(sizes)}, "systems": systems,
            "captions": compare(systems)}


def compare(systems: dict) -> list[dict]:
    """Per N: CPU per packet and latency p50/p99 with captions off and on."""
    off = {r["subscribers"]: r for r in systems.get("dockcast", {}).get("rows", [])}
    on = {r["subscribers"]: r for r in systems.get("dockcast-captions", {}).get("rows", [])}
    out = []
    for n in sorted(set(off) & set(on)):
        a, b = off[n], on[n]
        out.append({"subscribers": n,
                    "cpu_us_per_packet": {"off": a["cpu_us_per_packet"], "on": b["cpu_us_per_packet"]},
                    "latency_p50_ms": {"off": a["latency_ms"]["p50"], "on": b["latency_ms"]["p50"]},
                    "latency_p99_ms": {"off": a["latency_ms"]["p99"], "on": b["latency_ms"]["p99"]}})
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.captions", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=pathlib.Path, required=True, help="results folder")
    p.add_argument("--sizes", default="1,10,50", help="subscriber counts, comma-separated")
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured per step")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    run = Run(RunOptions(out=args.out, duration=args.duration, baselines=(),
                         command="python -m bench.captions"))
    run.prepare_corpus()
    result = asyncio.run(captions(run, sizes))
    (run.out / "captions.json").write_text(json.dumps(result, indent=2))
    for row in result["captions"]:
        run.console.print(f"N={row['subscribers']}: µs/packet off {row['cpu_us_per_packet']['off']} "
                          f"on {row['cpu_us_per_packet']['on']}; latency p50 "
                          f"{row['latency_p50_ms']['off']} / {row['latency_p50_ms']['on']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
