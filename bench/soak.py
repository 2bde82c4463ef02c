"""The ``soak`` scenario: minutes of join/publish/subscribe/message/leave churn, and
whether the node's memory, file descriptors, threads and asyncio tasks stay flat.

``churn_rooms`` slots run at once, each in a load-client process of its own; a slot
loops on *cycles*: a fresh room (a new name every cycle, so rooms are created and torn
down), one publisher sending the corpus (VP8 + Opus), ``room_size - 1`` subscribers
that wait for their first keyframe, every member sending ``messages`` room messages
(:mod:`signalling.client`) that every member must receive, ``hold_s`` of media, then
everybody leaves: with ``leave`` on even cycles, by closing the websocket without a
word on odd ones. A cycle starts every ``cycle_s`` seconds per slot (later if the
previous one took longer). Every ``sample_s`` the harness records the server process's
RSS (``VmRSS`` of ``/proc/PID/status``) and what its ``/metrics`` says of open fds,
threads, asyncio tasks, rooms and participants, with the churn counters so far (also
appended to ``soak-samples.jsonl`` as it goes, for a run that is interrupted).

**Flat** (:func:`analyze`), over the samples taken while the churn ran:

- RSS: the slope of a least-squares line through the second half of the run is at most
  ``flat_rss_mib_per_hour`` (default 10 MiB/h);
- fds, threads, tasks: the mean of the last quarter is at most the mean of the second
  quarter times ``1 + flat_pct/100`` (default 10%) plus a small absolute slack
  (:data:`SLACK`: a sample catches the churn at any phase).

The first quarter is left out of both (warm-up: caches, the allocator's arenas, the
message store). With fewer than :data:`MIN_SAMPLES` samples, or under
:data:`MIN_SPAN_S` (10 minutes) of churn, the verdict is ``None`` (too short to tell).
``threads`` is what ``/metrics`` says (Python threads); ``proc_threads`` (the kernel's
count, native threads included) is judged as well.
Dockcast only: no baseline is run (``--baselines`` is ignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import urllib.request
from collections import Counter
from typing import Any

__all__ = ["run_cycle", "soak", "analyze", "read_proc", "parse_metrics", "soak_markdown",
           "soak_plot", "RESOURCES"]

RESOURCES = ("rss_mib", "fds", "threads", "tasks", "proc_threads")
LABELS = {"rss_mib": "RSS (MiB)", "fds": "open fds", "threads": "threads", "tasks": "asyncio tasks",
          "proc_threads": "OS threads (/proc)"}
SLACK = {"rss_mib": 2.0, "fds": 4.0, "threads": 1.0, "tasks": 10.0, "proc_threads": 1.0}
MIN_SAMPLES = 8
MIN_SPAN_S = 600.0  # a shorter churn is a smoke check: its verdict is "too short to tell"
METRICS = {"dockcast_open_fds": "fds", "dockcast_threads": "threads",
           "dockcast_asyncio_tasks": "tasks", "dockcast_rooms": "rooms",
           "dockcast_participants": "participants", "dockcast_tracks": "tracks",
           "dockcast_consumers": "consumers", "dockcast_messages_stored": "messages_stored"}
COUNTERS = ("cycles", "cycle_errors", "joined", "join_failed", "sent", "send_failed",
            "received", "lost", "duplicated", "packets")


# -- one cycle, in a load-client worker -------------------------------------------------


async def run_cycle(worker: Any, room: str, size: int = 4, messages: int = 3,
                    hold_s: float = 2.0, clean_leave: bool = True,
                    timeout: float = 30.0) -> dict:
    """One room's life in ``worker`` (a :class:`bench.loadclient.Worker`): publish,
    subscribe, exchange messages, hold, leave. Failures are counted, not raised."""
    from .loadclient import Publisher
    from .messages import _send

    t0 = time.monotonic()
    out: dict[str, Any] = {"room": room, "joined": 0, "join_failed": 0, "sent": 0,
                           "send_failed": 0, "expected": 0, "received": 0, "lost": 0,
                           "duplicated": 0, "packets": 0, "errors": []}
    publisher = Publisher(worker._signal(), worker.corpus, worker.wan, name=f"soak-pub-{room}",
                          stamp_payloads=worker.stamp)
    subs: list[Any] = []
    clients: list[Any] = []
    try:
        try:
            async with asyncio.timeout(timeout):
                tracks = await publisher.start(room)
            out["joined"] += 1
            clients.append(publisher.signal.client)
        except Exception as exc:  # noqa: BLE001 - counted: nobody can subscribe then
            out["join_failed"] += size
            out["errors"].append(f"publish: {type(exc).__name__}: {exc}"[:200])
            return out
        subs = list(await asyncio.gather(*(
            worker._start_subscriber(room, tracks, False, timeout) for _ in range(size - 1))))
        for sub in subs:
            if sub.error is None:
                out["joined"] += 1
                clients.append(sub.signal.client)
            else:
                out["join_failed"] += 1
                out["errors"].append(f"subscribe: {sub.error}"[:200])
        joined_at = time.monotonic()
        seen: list[Counter] = [Counter() for _ in clients]
        for client, counter in zip(clients, seen):
            client.on("message", lambda event, c=counter: c.update([int(event["seq"])]))
        errors: Counter[str] = Counter()

        async def send_all(i: int, client: Any) -> list[int]:
            seqs = []
            for j in range(messages):
                try:
                    seqs.append(await _send(client, {"room": room, "from": i, "n": j}, os.urandom(16).hex(),
                                            errors))
                except Exception as exc:  # noqa: BLE001 - counted
                    out["send_failed"] += 1
                    if len(out["errors"]) < 5:
                        out["errors"].append(f"send: {type(exc).__name__}: {exc}"[:200])
            return seqs

        sent = {s for seqs in await asyncio.gather(*(send_all(i, c) for i, c in enumerate(clients)))
                for s in seqs}
        out["sent"] = len(sent)
        deadline = time.monotonic() + 3.0  # for every member to get every message
        while time.monotonic() < deadline and not all(sent <= set(c) for c in seen):
            await asyncio.sleep(0.05)
        out["expected"] = len(sent) * len(clients)
        out["received"] = sum(len(sent & set(c)) for c in seen)
        out["lost"] = out["expected"] - out["received"]
        out["duplicated"] = sum(n - 1 for c in seen for s, n in c.items() if s in sent and n > 1)
        await asyncio.sleep(max(0.0, joined_at + hold_s - time.monotonic()))
        out["packets"] = sum(c.get("received", 0) for s in subs if s.error is None
                             for c in s.counts().values())
        return out
    finally:
        if clean_leave:
            await asyncio.gather(*(_leave(c) for c in clients), return_exceptions=True)
        for sub in subs:
            with contextlib.suppress(ValueError):
                worker.subscribers.remove(sub)
        await asyncio.gather(publisher.close(), *(s.close() for s in subs), return_exceptions=True)
        out["clean_leave"] = clean_leave
        out["seconds"] = round(time.monotonic() - t0, 3)


async def _leave(client: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.leave(), 5)


# -- sampling ---------------------------------------------------------------------------


def read_proc(pid: int) -> dict:
    """RSS, peak RSS (MiB), threads and fds of ``pid`` from ``/proc``."""
    out: dict[str, Any] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "VmRSS":
                out["rss_mib"] = round(int(value.split()[0]) / 1024, 3)
            elif key == "VmHWM":
                out["hwm_mib"] = round(int(value.split()[0]) / 1024, 3)
            elif key == "Threads":
                out["proc_threads"] = int(value)
    with contextlib.suppress(OSError):
        out["proc_fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def parse_metrics(text: str) -> dict:
    """The gauges of :data:`METRICS` from Prometheus text (``name value`` lines)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(" ")
        base = name.split("{", 1)[0]
        for suffix in ("", "_total"):
            if base.endswith(suffix) and base[:len(base) - len(suffix)] in METRICS:
                key = METRICS[base[:len(base) - len(suffix)]]
                with contextlib.suppress(ValueError):
                    value = float(rest.split()[0])
                    out[key] = int(value) if value.is_integer() else value
                break
    return out


def _metrics_url(ws_url: str) -> str:
    rest = ws_url.split("//", 1)[1]
    scheme = "https" if ws_url.startswith("wss") else "http"
    return f"{scheme}://{rest.split('/', 1)[0]}/metrics"


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - the node under test
        return r.read().decode()


# -- the scenario -----------------------------------------------------------------------


async def soak(run: Any, minutes: float = 30.0, churn_rooms: int = 4, room_size: int = 4,
               cycle_s: float = 5.0, hold_s: float = 2.0, messages: int = 3,
               sample_s: float = 5.0, drain_s: float = 25.0, flat_pct: float = 10.0,
               flat_rss_mib_per_hour: float = 10.0) -> dict:
    """Churn for ``minutes`` against the node; sample its resources every ``sample_s``."""
    from .scenarios import _each_system

    params = {"minutes": minutes, "churn_rooms": churn_rooms, "room_size": room_size,
              "cycle_s": cycle_s, "hold_s": hold_s, "messages": messages, "sample_s": sample_s,
              "drain_s": drain_s, "flat_pct": flat_pct,
              "flat_rss_mib_per_hour": flat_rss_mib_per_hour}

    async def body(system: Any, workers: Any) -> dict:
        pid = system.pid
        metrics_url = _metrics_url(system.url)
        counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        errors: list[str] = []
        samples: list[dict] = []
        live = run.out / "soak-samples.jsonl"
        t0 = time.monotonic()
        end = t0 + minutes * 60.0

        async def sample(phase: str) -> None:
            row: dict[str, Any] = {"t_s": round(time.monotonic() - t0, 3), "phase": phase}
            if pid:
                try:
                    row.update(read_proc(pid))
                except OSError as exc:
                    row["error"] = f"proc: {exc}"
            try:
                row.update(parse_metrics(await asyncio.to_thread(_get, metrics_url)))
            except Exception as exc:  # noqa: BLE001 - a missed scrape is a gap, not the end
                row["error"] = f"metrics: {type(exc).__name__}: {exc}"[:200]
            row.update(counters)
            samples.append(row)
            with open(live, "a") as f:  # survives an interrupted run
                f.write(json.dumps(row) + "\n")

        async def sampler() -> None:
            n = 1
            while True:
                await asyncio.sleep(max(0.0, t0 + n * sample_s - time.monotonic()))
                n += 1
                if time.monotonic() >= end:
                    return
                await sample("churn")

        with run.console.status(f"soak: starting {churn_rooms} load-client processes"):
            slots = []
            for _ in range(churn_rooms):
                worker = await workers._spawn(run.options.sub_wan, "soak")
                workers.subscribers.append(worker)
                slots.append(worker)
        await sample("idle")  # before any churn
        t0 = time.monotonic()
        end = t0 + minutes * 60.0
        samples[0]["t_s"] = 0.0

        async def slot(i: int) -> None:
            worker = slots[i]
            await asyncio.sleep(i * cycle_s / max(1, churn_rooms))
            n = 0
            while time.monotonic() < end:
                started = time.monotonic()
                room = f"soak-{i}-{n}"
                try:
                    if worker.proc is None or worker.proc.returncode is not None:
                        worker = slots[i] = await workers._spawn(run.options.sub_wan, "soak")
                        workers.subscribers.append(worker)
                    reply = await worker.call("soak_cycle", timeout=60 + 3 * hold_s, room=room,
                                              size=room_size, messages=messages, hold_s=hold_s,
                                              clean_leave=n % 2 == 0)
                    counters["cycles"] += 1
                    for key in ("joined", "join_failed", "sent", "send_failed", "received",
                                "lost", "duplicated", "packets"):
                        counters[key] += int(reply.get(key, 0))
                    errors.extend(reply.get("errors", [])[:max(0, 20 - len(errors))])
                except Exception as exc:  # noqa: BLE001 - counted; the soak goes on
                    counters["cycle_errors"] += 1
                    if len(errors) < 20:
                        errors.append(f"cycle {room}: {type(exc).__name__}: {exc}"[:300])
                n += 1
                await asyncio.sleep(max(0.0, min(started + cycle_s, end) - time.monotonic()))

        sampling = asyncio.ensure_future(sampler())
        with run.progress() as bar:
            task = bar.add_task(f"soak: {churn_rooms} rooms of {room_size} churning",
                                total=minutes * 60.0)
            ticker = asyncio.ensure_future(run.sleep(minutes * 60.0, (bar, task)))
            try:
                await asyncio.gather(*(slot(i) for i in range(churn_rooms)))
            finally:
                ticker.cancel()
                sampling.cancel()
        churn_s = time.monotonic() - t0
        await sample("end")  # the last cycles have just left
        if drain_s > 0:
            with run.console.status(f"soak: {drain_s:g} s for the emptied rooms to close"):
                await asyncio.sleep(drain_s)
            await sample("drained")
        analysis = analyze(samples, flat_pct=flat_pct, flat_rss_mib_per_hour=flat_rss_mib_per_hour)
        verdicts = ", ".join(f"{LABELS[k]} {_verdict(v['flat'])}" for k, v in analysis["resources"].items())
        rss = analysis["resources"]["rss_mib"]
        run.console.print(
            f"  Dockcast: {counters['cycles']} cycles in {churn_s:.0f} s, "
            f"{counters['join_failed']} join failures, {counters['sent']} messages sent, "
            f"{counters['lost']} lost; RSS {rss['first']} → {rss['last']} MiB "
            f"({rss['slope_per_hour']} MiB/h over the second half); {verdicts}")
        return {"samples": samples, "counters": counters, "errors": errors,
                "churn_s": round(churn_s, 3), "server_pid": pid, "analysis": analysis,
                "notes": [] if pid else ["no server pid (--url without --server-pid): no RSS"]}

    systems = [s for s in run.systems() if s.name == "dockcast"]
    out = await _each_system(run, "soak", body, systems)
    return {"scenario": "soak", "params": params, "systems": out,
            "baselines": "none: the soak measures Dockcast's own resources over time"}


# -- analysis -----------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(t, y)``, per unit of ``t``."""
    if len(points) < 2:
        return None
    mt = sum(t for t, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mt) * (y - my) for t, y in points) / var


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def analyze(samples: list[dict], flat_pct: float = 10.0, flat_rss_mib_per_hour: float = 10.0,
            min_span_s: float = MIN_SPAN_S) -> dict:
    """Per resource: first/last/max, quarter means, slope per hour, and flat or not."""
    churn = [s for s in samples if s.get("phase") == "churn"]
    idle = next((s for s in samples if s.get("phase") == "idle"), {})
    drained = next((s for s in samples if s.get("phase") == "drained"), {})
    span = (churn[-1]["t_s"] - churn[0]["t_s"]) if len(churn) > 1 else 0.0
    out: dict[str, Any] = {"samples": len(churn), "span_s": round(span, 3),
                           "min_span_s": min_span_s,
                           "rule": {"rss_mib": f"slope over the second half ≤ "
                                               f"{flat_rss_mib_per_hour:g} MiB/h",
                                    "others": f"last-quarter mean ≤ second-quarter mean × "
                                              f"{1 + flat_pct / 100:g} + a slack of "
                                              + ", ".join(f"{SLACK[k]:g} {LABELS[k]}"
                                                          for k in RESOURCES if k != "rss_mib")},
                           "resources": {}}
    for key in RESOURCES:
        points = [(s["t_s"], float(s[key])) for s in churn if s.get(key) is not None]
        row: dict[str, Any] = {"idle": idle.get(key), "drained": drained.get(key)}
        if not points:
            out["resources"][key] = {**row, "first": None, "last": None, "max": None,
                                     "q2_mean": None, "q4_mean": None, "slope_per_hour": None,
                                     "flat": None}
            continue
        n = len(points)
        t_start, t_end = points[0][0], points[-1][0]
        mid = t_start + (t_end - t_start) / 2
        q = (t_end - t_start) / 4
        q2 = [y for t, y in points if t_start + q <= t < mid]
        q4 = [y for t, y in points if t >= t_start + 3 * q]
        slope_s = _slope([p for p in points if p[0] >= mid])
        slope_h = None if slope_s is None else slope_s * 3600
        q2m, q4m = _mean(q2), _mean(q4)
        quarter_ok = None if q2m is None or q4m is None else \
            q4m <= q2m * (1 + flat_pct / 100) + SLACK[key]
        if n < MIN_SAMPLES or t_end - t_start < min_span_s:
            flat = None
        elif key == "rss_mib":
            flat = None if slope_h is None else slope_h <= flat_rss_mib_per_hour
        else:
            flat = quarter_ok
        out["resources"][key] = {
            **row, "first": _r(points[0][1]), "last": _r(points[-1][1]),
            "max": _r(max(y for _, y in points)), "min": _r(min(y for _, y in points)),
            "q2_mean": _r(q2m), "q4_mean": _r(q4m),
            "q4_over_q2_pct": _r(100 * (q4m / q2m - 1), 2) if q2m and q4m is not None else None,
            "slope_per_hour": _r(slope_h, 2), "quarter_rule": quarter_ok, "flat": flat}
    flats = [r["flat"] for r in out["resources"].values()]
    out["flat"] = None if any(f is None for f in flats) else all(flats)
    return out


def _verdict(flat: bool | None) -> str:
    return {True: "flat", False: "GROWING", None: "too short to tell"}[flat]


# -- report -------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 10000 else f"{value:,.0f}"
    return str(value)


def soak_markdown(result: dict) -> str:
    """The soak's section of ``summary.md``."""
    p = result["params"]
    lines = [f"Baselines: {result.get('baselines', 'none')} (`--baselines` is ignored).", ""]
    for name, system in result["systems"].items():
        if system.get("skipped") or system.get("error"):
            lines.append(f"{system.get('label', name)}: "
                         + (f"skipped: {system['skipped']}" if system.get("skipped")
                            else f"error: {system['error']}"))
            continue
        a, c = system["analysis"], system["counters"]
        lines.append(f"{p['churn_rooms']} rooms at once, {p['room_size']} participants each "
                     f"(1 publisher), a cycle every {p['cycle_s']:g} s per room "
                     f"({p['hold_s']:g} s held, {p['messages']} messages per member), "
                     f"{system['churn_s'] / 60:.2f} minutes of churn, "
                     f"a sample every {p['sample_s']:g} s ({a['samples']} samples).")
        lines.append("")
        lines.append("| cycles | cycle errors | joined | join failures | messages sent | "
                     "deliveries | lost | duplicated | media packets received |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        lines.append(f"| {c['cycles']} | {c['cycle_errors']} | {c['joined']} | {c['join_failed']} | "
                     f"{c['sent']} | {c['received']} | {c['lost']} | {c['duplicated']} | "
                     f"{c['packets']} |")
        lines.append("")
        lines.append("| resource | idle (before) | first | last | max | 2nd-quarter mean | "
                     "last-quarter mean | growth per hour (fit, 2nd half) | after drain | verdict |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for key, r in a["resources"].items():
            growth = _fmt(r["slope_per_hour"]) + (" MiB/h" if key == "rss_mib" else "/h") \
                if r["slope_per_hour"] is not None else "–"
            lines.append(f"| {LABELS[key]} | {_fmt(r['idle'])} | {_fmt(r['first'])} | "
                         f"{_fmt(r['last'])} | {_fmt(r['max'])} | {_fmt(r['q2_mean'])} | "
                         f"{_fmt(r['q4_mean'])} | {growth} | {_fmt(r['drained'])} | "
                         f"{_verdict(r['flat'])} |")
        lines.append("")
        overall = {True: "the node's resources **stayed flat**",
                   False: "the node's resources **did not stay flat**",
                   None: "**too short to tell**"}[a["flat"]]
        lines.append(f"Verdict: {overall}. Flat means: RSS "
                     f"{a['rule']['rss_mib']}; fds, threads and tasks: "
                     f"{a['rule']['others']} (the first quarter is warm-up; fewer than "
                     f"{MIN_SAMPLES} samples or under {a['min_span_s'] / 60:g} minutes of "
                     f"churn: too short to tell).")
        if system["churn_s"] < 600:
            lines += ["", f"A run of {system['churn_s'] / 60:.1f} minutes is a smoke check: "
                      "the growth per hour extrapolates a few minutes of noise."]
        if system.get("errors"):
            lines += ["", "First errors: " + "; ".join(f"`{e}`" for e in system["errors"][:5])]
        for note in system.get("notes", []):
            lines += ["", note]
    return "\n".join(lines)


def soak_plot(result: dict, out: Any) -> list[str]:
    """``soak.png``: RSS, fds, threads and tasks over time (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    system = result["systems"].get("dockcast") or {}
    samples = system.get("samples") or []
    if not samples:
        return []
    panels = ("rss_mib", "fds", "threads", "tasks")
    fig, axes = plt.subplots(5, 1, figsize=(8, 11), sharex=True)
    for ax, key in zip(axes, panels):
        pts = [(s["t_s"] / 60, s[key]) for s in samples if s.get(key) is not None]
        churn = [(s["t_s"] / 60, s[key]) for s in samples
                 if s.get(key) is not None and s.get("phase") == "churn"]
        if pts:
            ax.plot(*zip(*pts), color="0.6", linewidth=0.8)
        if churn:
            ax.plot(*zip(*churn), marker=".", markersize=3, linewidth=1, label="during churn")
        verdict = ((system.get("analysis") or {}).get("resources", {}).get(key) or {}).get("flat")
        ax.set_ylabel(LABELS[key])
        ax.set_title(f"{LABELS[key]}: {_verdict(verdict)}", fontsize=9, loc="left")
        ax.grid(True, alpha=0.3)
    ax = axes[-1]
    for key, label in (("rooms", "rooms open (an emptied one closes after 20 s)"),
                       ("participants", "participants")):
        pts = [(s["t_s"] / 60, s[key]) for s in samples if s.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), linewidth=1, label=label)
    ax.set_ylabel("load")
    if ax.get_lines():
        ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("minutes (grey: before the churn, and after it while rooms close)")
    p = result["params"]
    fig.suptitle(f"Dockcast soak: {p['churn_rooms']} rooms of {p['room_size']} churning, "
                 f"a cycle every {p['cycle_s']:g} s")
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=110)
    plt.close(fig)
    return ["soak.png"]
