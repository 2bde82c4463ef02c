"""The ``failover`` scenario: a node dies under its publisher (issue 12).

Three Dockcast nodes and Redis (``scripts/cluster.py --nodes 3 --keep-going``, the WAN
emulator between them with ``--trunk-wan``): a publisher (VP8 + Opus from the corpus)
on node 0, ``--subscribers`` on node 1 receiving it over a trunk. Node 0 is SIGKILLed;
at once the publisher's phone publishes again, with the same identity, on node 2 (what
the JS client does by itself through ``welcome.nodes``). Node 1's consumers wait for
it and are re-pointed to the new route without renegotiating.

Measured per trial, from the SIGKILL: when the publisher's new publication was
answered, and when each subscriber's video flowed again (the first packet after its
outage, stamped on arrival by its load client; every process here reads the same
monotonic clock). A subscriber that renegotiated (a new offer) is counted as such: the
point is that none does. ``--trials`` runs start a fresh cluster each.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from .cascade import CascadeSystem
from .harness import Run, WorkerProcess, Workers
from .stats import percentiles

__all__ = ["failover", "GOAL_S"]

GOAL_S = 3.0
"""Media again at the subscribers within this long after the SIGKILL (issue 12)."""
WAIT_S = 20.0
"""A subscriber whose video has not come back this long after the kill failed the trial."""


class _FailoverCluster(CascadeSystem):
    name = "failover"
    label = "Dockcast, 3 nodes, one killed"


async def failover(run: Run, *, subscribers: int = 10, trials: int = 3) -> dict:
    """Kill the publisher's node ``trials`` times (a fresh cluster each); the rows."""
    rows = []
    for trial in range(1, trials + 1):
        run.console.rule(f"failover trial {trial}/{trials}")
        system = _FailoverCluster(run.options.trunk_wan, nodes=3, extra_args=("--keep-going",))
        workers = Workers(run, system, sub_wan=None, pub_wan=None, label=f"failover{trial}")
        try:
            await system.start(run)
            rows.append(await _trial(run, system, workers, trial, subscribers))
        except Exception as exc:  # noqa: BLE001 - a failed trial is reported, the next runs
            rows.append({"trial": trial, "error": f"{type(exc).__name__}: {exc}"})
            run.console.print(f"[red]failover trial {trial} failed: {exc}")
        finally:
            await workers.close()
            await system.stop()
    ok = [r for r in rows if "error" not in r]
    resumed = [r["resumed_ms"]["max"] for r in ok if r["resumed_ms"]]
    summary = {"trials": len(rows), "failed": len(rows) - len(ok),
               "worst_subscriber_ms": percentiles(resumed) if resumed else {},
               "goal_ms": GOAL_S * 1000}
    return {"scenario": "failover", "params": {"subscribers": subscribers, "trials": trials,
                                               "trunk_wan": run.options.trunk_wan},
            "systems": {"dockcast": {"label": system.label, "how": system.how, "rows": rows,
                                     "summary": summary}}}


async def _trial(run: Run, system: _FailoverCluster, workers: Workers, trial: int,
                 subscribers: int) -> dict:
    room, identity = f"failover-{trial}", "warehouse-cam"
    publisher = await workers.publisher()
    tracks = (await publisher.call("publish", rooms=[room], identity=identity))["tracks"][room]
    started = await workers.add_subscribers([{"room": room, "tracks": tracks, "count": subscribers}],
                                            per_worker=subscribers)
    if started["failed"]:
        raise RuntimeError(f"{started['failed']} subscribers did not start: {started['errors'][:2]}")
    await run.sleep(3.0)  # media flowing through the trunk
    offers_before = await _offers(workers)
    pid = system.node_pid(0)
    if pid is None:
        raise RuntimeError("the publisher's node is not running")
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    # the phone publishes again on the node that is left in its region (node 2)
    back = WorkerProcess({**workers._config(None), "url": system.node_url(2)},
                         run.logs / f"failover{trial}-pub-again.log", f"failover{trial}-pub-again")
    workers.publishers.append(await back.start())
    await back.call("publish", rooms=[room], identity=identity, timeout=60)
    republished = time.monotonic()
    deadline = killed + WAIT_S
    while True:
        report = await _outages(workers, killed)
        if all(s["back_at"] is not None for s in report) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    back_ms = [1000 * (s["back_at"] - killed) for s in report if s["back_at"] is not None]
    row = {"trial": trial, "subscribers": len(report),
           "republished_ms": round(1000 * (republished - killed), 1),
           "resumed": len(back_ms), "never_resumed": len(report) - len(back_ms),
           "resumed_ms": ({"p50": percentiles(back_ms)["p50"], "max": round(max(back_ms), 1)}
                          if back_ms else {}),
           "renegotiated": await _offers(workers) - offers_before}
    run.console.print(f"  trial {trial}: publication again after {row['republished_ms']:.0f} ms; "
                      f"video back at {row['resumed']}/{row['subscribers']} subscribers, "
                      f"p50 {row['resumed_ms'].get('p50', float('nan')):.0f} ms, "
                      f"worst {row['resumed_ms'].get('max', float('nan')):.0f} ms after the SIGKILL; "
                      f"{row['renegotiated']} new offers")
    return row


async def _outages(workers: Workers, killed: float) -> list[dict]:
    """Per subscriber: when its video came back after the kill (None: not yet)."""
    out = []
    for worker in workers.subscribers:
        reply = await worker.call("outages", since=killed)
        for sub in reply["subscribers"]:
            ends = [b for a, b in sub["outages"] if b > killed]
            out.append({"back_at": min(ends) if ends else None})
    return out


async def _offers(workers: Workers) -> int:
    total = 0
    for worker in workers.subscribers:
        total += (await worker.call("report"))["offers"]
    return total
