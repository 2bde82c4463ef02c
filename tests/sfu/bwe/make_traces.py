"""Make the recorded traces of tests/data/bwe/ (run once; the tests replay them).

    .venv/bin/python tests/sfu/bwe/make_traces.py

Each trace is what a node's sender saw on a simulated link (linksim.py), in closed loop
with the estimator as it was when the trace was made: every packet sent (send time,
size, probe cluster) and every transport-cc feedback (arrival time at the sender, the
RTCP bytes in hex). Columns are run-length or delta encoded to keep the files small.
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from linksim import Link, Simulation, steps

from sfu.bwe import Estimator

OUT = pathlib.Path(__file__).resolve().parents[2] / "data" / "bwe"


def encode(sim: Simulation, **meta) -> dict:
    sends = sim.trace.sends
    times = [round(t * 1e6) for t, _, _ in sends]
    return {
        **meta,
        "send_us": [b - a for a, b in zip([0] + times, times)],
        "size": [[k, len(list(g))] for k, g in itertools.groupby(s for _, s, _ in sends)],
        "probe": [[k, len(list(g))] for k, g in itertools.groupby(p for _, _, p in sends)],
        "feedbacks": [[round(t, 6), data.hex()] for t, data in sim.trace.feedbacks],
    }


def make(name: str, link: Link, until: float, **meta) -> None:
    estimator = Estimator(start=300_000, maximum=5_000_000)
    sim = Simulation(link, estimator, media=lambda t, e: e.bitrate, want=lambda t, e: 5_000_000,
                     feedback_interval=0.1)
    sim.run(until)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(encode(sim, **meta), separators=(",", ":")) + "\n")
    os.chmod(path, 0o644)
    print(f"{path}: {path.stat().st_size} bytes, {len(sim.trace.sends)} packets, "
          f"{len(sim.trace.feedbacks)} feedbacks")


if __name__ == "__main__":
    make("drop_3m_300k.json", Link(steps((0, 3e6), (8, 3e5), (14, 3e6))), 24.0,
         description="3 Mbit/s, 300 kbit/s from 8 s, 3 Mbit/s from 14 s; 25 ms each way, 250 ms queue",
         drop_at=8.0, rise_at=14.0)
    make("loss5_3m.json", Link(steps((0, 3e6)), loss=0.05, seed=7), 12.0,
         description="3 Mbit/s, 5% random loss (seed 7); 25 ms each way, 250 ms queue")
