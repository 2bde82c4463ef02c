"""The scenarios of ``dockcast bench``: each runs Dockcast and the baselines in one run.

Every scenario returns a dict ``{"scenario", "params", "systems": {name: {...}}}``; a
system that could not run says why in ``skipped`` (or ``error``), never silently.
:mod:`bench.report` turns these into the targets table, plots and ``results.json``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from .harness import NaiveSystem, Run, System, Workers
from .stats import match_frames, merge_counts, percentiles

__all__ = ["SCENARIOS", "connect", "forward", "rooms", "fanout_limit", "messages", "summarize"]

logger = logging.getLogger("dockcast.bench")

CDF_POINTS = [i / 2 for i in range(201)]  # 0, 0.5, ... 100th percentile
SATURATED_PCT = 90.0  # a load-client process this busy may be the bottleneck


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _latencies_ms(measured: dict) -> tuple[list[float], str]:
    """Latency samples (ms) of a window, and how they were taken."""
    samples = [v / 1000.0 for r in measured["subscribers"] for v in r.get("latency_us", [])]
    if samples:
        if any(r.get("native_receive") for r in measured["subscribers"]):
            return samples, "per packet (send stamp in the payload, kernel receive stamp)"
        return samples, "per packet (send stamp in the payload, stamped when read)"
    sent: dict[int, int] = {}
    for report in measured["publishers"]:
        sent.update({int(k): v for k, v in report.get("sent_frames", {}).items()})
    frames = [f for r in measured["subscribers"] for f in r.get("frames", [])]
    latencies = [ns / 1e6 for received in frames for ns in match_frames(sent, received)]
    return latencies, "per video frame (RTP timestamps matched; payload re-encoded)"


def summarize(measured: dict, subscribers: int) -> dict:
    """One measured window: packets, loss, latency, the server's CPU per packet."""
    subs = measured["subscribers"]
    counts = merge_counts([r["counts"] for r in subs])
    window = max((r["window_s"] for r in subs), default=0.0) or 1e-9
    received = sum(c["received"] for c in counts.values())
    expected = sum(c["expected"] for c in counts.values())
    lost = sum(c["lost"] for c in counts.values())
    sent = sum(p["sent"] for r in measured["publishers"] for p in r.get("publishers", []))
    latencies, method = _latencies_ms(measured)
    pct = percentiles(latencies)
    server = measured["cpu"].get("server")
    row: dict[str, Any] = {
        "subscribers": subscribers,
        "receiving": sum(r["receiving"] for r in subs),
        "native_receive": sum(r.get("native_receive", 0) for r in subs),
        "failed": sum(r["failed"] for r in subs),
        "errors": sorted({e for r in subs for e in r.get("errors", [])})[:5],
        "join_refused": sum(r.get("join_refused", 0) for r in subs),
        "window_s": round(window, 3),
        "published_packets": sent,
        "forwarded_packets": received,
        "forwarded_pps": round(received / window, 1),
        "expected": expected,
        "lost": lost,
        "loss_pct": round(100.0 * lost / expected, 4) if expected else None,
        "duplicates": sum(c["duplicates"] for c in counts.values()),
        "nacked": sum(r.get("nacked", 0) for r in subs),
        "recovered": sum(r.get("recovered", 0) for r in subs),
        "reordered": sum(c["reordered"] for c in counts.values()),
        "by_kind": counts,
        "latency_ms": {k: _r(v) for k, v in pct.items()},
        "latency_samples": len(latencies),
        "latency_method": method,
        "latency_cdf_ms": [_r(v, 4) for v in percentiles(latencies, CDF_POINTS).values()]
        if latencies else [],
        "server_cpu_s": _r(server["cpu_s"], 4) if server else None,
        "server_core_pct": _r(server["core_pct"], 2) if server else None,
        "cpu_us_per_packet": _r(1e6 * server["cpu_s"] / received, 3) if server and received else None,
        "client_core_pct": {k: _r(v["core_pct"], 1) for k, v in measured["cpu"].items() if k != "server"},
        "machine": {k: _r(v, 2) for k, v in measured["machine"].items()},
    }
    busy = {k: v for k, v in row["client_core_pct"].items() if v is not None and v >= SATURATED_PCT}
    if busy:
        # the clients, not the server, may be what limited this step
        row["clients_saturated"] = busy
    wan = [r["wan"] for r in subs + measured["publishers"] if r.get("wan")]
    if wan:
        row["wan"] = {"up": merge_counts([{"x": w["up"]} for w in wan])["x"],
                      "down": merge_counts([{"x": w["down"]} for w in wan])["x"]}
    return row


async def _each_system(run: Run, scenario: str,
                       body: Callable[[System, Workers], Awaitable[dict]],
                       systems: list[System] | None = None) -> dict[str, dict]:
    """Run ``body`` once per system, starting and stopping it; failures are reported."""
    out: dict[str, dict] = {}
    for system in systems or run.systems():
        if system.skipped:
            out[system.name] = {"label": system.label, "skipped": system.skipped}
            run.console.print(f"[yellow]{scenario}: {system.label} skipped: {system.skipped}")
            continue
        label = scenario + ("-wan" if run.options.wan else "")
        workers = Workers(run, system, sub_wan=run.options.sub_wan, pub_wan=run.options.pub_wan,
                          label=label)
        try:
            with run.console.status(f"{scenario}: starting {system.label}"):
                await system.start(run)
            if system.skipped:
                out[system.name] = {"label": system.label, "skipped": system.skipped}
                run.console.print(f"[yellow]{scenario}: {system.label} skipped: {system.skipped}")
                continue
            result = await body(system, workers)
            out[system.name] = {"label": system.label, **result}
        except Exception as exc:  # noqa: BLE001 - a failing system must not hide the others
            logger.exception("%s on %s failed", scenario, system.name)
            out[system.name] = {"label": system.label, "error": f"{type(exc).__name__}: {exc}"}
            run.console.print(f"[red]{scenario}: {system.label} failed: {exc}")
        finally:
            await workers.close()
            await system.stop()
            network = system.network()
            if network and system.name in out:
                out[system.name]["network"] = network
    return out


def _print_row(run: Run, system: System, row: dict) -> None:
    lat = row["latency_ms"]
    cpu = row["cpu_us_per_packet"]
    run.console.print(
        f"  {system.label:<20} N={row['subscribers']:<4} {row['forwarded_pps']:>9.0f} pkt/s  "
        f"loss {row['loss_pct'] if row['loss_pct'] is not None else '-'}%  "
        f"latency p50 {lat['p50']} p99 {lat['p99']} ms  "
        f"server {row['server_core_pct']}% core, {cpu} µs/pkt"
        + (f"  [yellow](load clients saturated: {', '.join(row['clients_saturated'])})"
           if row.get("clients_saturated") else ""))


def _collapsed(row: dict) -> bool:
    return row["forwarded_packets"] == 0 or (row["loss_pct"] or 0) > 50


async def _measure_step(run: Run, system: System, workers: Workers, label: str,
                        subscribers: int) -> dict:
    with run.progress() as bar:
        task = bar.add_task(f"{label}: {system.label}, {subscribers} subscribers, measuring",
                            total=run.options.duration)
        measured = await workers.measure(run.options.duration, (bar, task),
                                         label=f"{label}-N{subscribers}")
    row = summarize(measured, subscribers)
    if measured.get("profile"):
        row["profile"] = measured["profile"]
    _print_row(run, system, row)
    return row


async def _grow(run: Run, workers: Workers, room: str, tracks: list[dict], have: int,
                want: int) -> dict:
    if want > have:
        added = await workers.add_subscribers([{"room": room, "tracks": tracks, "count": want - have}],
                                              run.options.subs_per_worker)
        await asyncio.sleep(run.options.settle)  # let the last ones settle before measuring
        return added
    if want < have:
        await workers.drop_subscribers(have - want)
    return {"started": 0, "failed": 0, "connect": []}


# -- connect ----------------------------------------------------------------------------


async def connect(run: Run, joins: int = 20, interval: float = 1.1) -> dict:
    """Join to first media packet and to first keyframe, over repeated joins.

    Joins are ``interval`` apart (over a second: a node asks a publisher for at most
    one keyframe per second, so closer joins would measure that throttle).
    """

    async def body(system: System, workers: Workers) -> dict:
        tracks = (await workers.publish(["connect"]))["connect"]
        await asyncio.sleep(run.options.settle)
        probe = await workers._spawn(run.options.sub_wan, "sub")
        workers.subscribers.append(probe)
        samples = []
        with run.progress() as bar:
            task = bar.add_task(f"connect: {system.label}, joins", total=joins)
            for i in range(joins):
                reply = await probe.call("join_once", room="connect", tracks=tracks, timeout=60)
                samples.append({"error": reply["error"], **reply["connect"]})
                bar.update(task, completed=i + 1)
                await asyncio.sleep(interval)
        ok = [s for s in samples if not s["error"]]
        summary = {key: {k: _r(v) for k, v in percentiles([s[key] for s in ok if key in s]).items()}
                   for key in ("joined", "offer", "first_packet", "first_keyframe")}
        run.console.print(
            f"  {system.label:<20} join→first packet p50 {summary['first_packet']['p50']} ms, "
            f"→first keyframe p50 {summary['first_keyframe']['p50']} p95 "
            f"{summary['first_keyframe']['p95']} ms ({len(samples) - len(ok)} failed)")
        return {"joins": samples, "failed": len(samples) - len(ok), "summary_ms": summary}

    return {"scenario": "connect", "params": {"joins": joins, "interval": interval},
            "systems": await _each_system(run, "connect", body)}


# -- forward ----------------------------------------------------------------------------


async def forward(run: Run, sizes: tuple[int, ...] = (1, 10, 50, 100, 200)) -> dict:
    """One publisher (VP8 + Opus), N subscribers swept: CPU per packet, latency, loss."""

    async def body(system: System, workers: Workers) -> dict:
        tracks = (await workers.publish(["forward"]))["forward"]
        rows: list[dict] = []
        notes: list[str] = []
        have = 0
        for n in sorted(sizes):
            if isinstance(system, NaiveSystem) and n > run.options.naive_max:
                notes.append(f"not run above N={run.options.naive_max} (--naive-max)")
                break
            with run.console.status(f"forward: {system.label}, connecting {n} subscribers"):
                added = await _grow(run, workers, "forward", tracks, have, n)
            have = n
            row = await _measure_step(run, system, workers, "forward", n)
            row["connect_failed"] = added["failed"]
            rows.append(row)
            if _collapsed(row):
                notes.append(f"collapsed at N={n}: sweep stopped")
                break
        return {"rows": rows, "notes": notes}

    return {"scenario": "forward", "params": {"sizes": list(sizes)},
            "systems": await _each_system(run, "forward", body)}


# -- rooms ------------------------------------------------------------------------------


async def rooms(run: Run, count: int = 50, size: int = 10) -> dict:
    """``count`` rooms of ``size`` (one VP8 + Opus publisher and ``size - 1`` subscribers)."""

    async def body(system: System, workers: Workers) -> dict:
        total = count * (size - 1)
        if isinstance(system, NaiveSystem) and total > run.options.naive_max:
            return {"skipped": f"{total} subscribers is over --naive-max {run.options.naive_max}"}
        names = [f"room-{i}" for i in range(count)]
        with run.console.status(f"rooms: {system.label}, {count} publishers"):
            tracks = await workers.publish(names)
        with run.console.status(f"rooms: {system.label}, {total} subscribers"):
            added = await workers.add_subscribers(
                [{"room": r, "tracks": tracks[r], "count": size - 1} for r in names],
                run.options.subs_per_worker)
        await asyncio.sleep(run.options.settle)
        row = await _measure_step(run, system, workers, "rooms", total)
        row["connect_failed"] = added["failed"]
        row["rooms"] = count
        row["room_size"] = size
        return {"rows": [row]}

    return {"scenario": "rooms", "params": {"rooms": count, "size": size},
            "systems": await _each_system(run, "rooms", body)}


# -- fanout-limit -------------------------------------------------------------------------


def _held(row: dict, max_loss_pct: float, max_p99_ms: float) -> bool:
    p99 = row["latency_ms"]["p99"]
    return (row["failed"] == 0 and row.get("connect_failed", 0) == 0
            and row["loss_pct"] is not None and row["loss_pct"] <= max_loss_pct
            and p99 is not None and p99 <= max_p99_ms)


async def fanout_limit(run: Run, start: int = 10, factor: float = 2.0, maximum: int = 1000,
                       refine: int = 2, max_loss_pct: float = 0.1, max_p99_ms: float = 50.0) -> dict:
    """Raise subscribers (``start``, then times ``factor``) until loss or p99 latency
    passes its threshold, then bisect ``refine`` times; report the largest N that held."""

    async def body(system: System, workers: Workers) -> dict:
        cap = maximum
        if isinstance(system, NaiveSystem):
            cap = min(cap, run.options.naive_max)
        tracks = (await workers.publish(["fanout"]))["fanout"]
        rows: list[dict] = []
        good, bad, have = 0, None, 0
        dead: int | None = None  # a step where nothing was forwarded at all
        n = min(start, cap)

        async def step(n: int) -> bool:
            nonlocal have, dead
            with run.console.status(f"fanout-limit: {system.label}, {n} subscribers"):
                added = await _grow(run, workers, "fanout", tracks, have, n)
            have = n
            row = await _measure_step(run, system, workers, "fanout-limit", n)
            row["connect_failed"] = added["failed"]
            row["held"] = _held(row, max_loss_pct, max_p99_ms)
            rows.append(row)
            if not row["forwarded_packets"]:
                # nothing arrived at all: the publisher (or the node) is gone, and no
                # smaller step measured on what is left would mean anything
                dead = n
            return row["held"]

        while True:
            if await step(n):
                good = n
                if n >= cap:
                    break
                n = min(cap, max(n + 1, int(math.ceil(n * factor))))
            else:
                bad = n
                break
        for _ in range(refine):
            if bad is None or bad - good <= 1 or dead is not None:
                break
            mid = (good + bad) // 2
            if await step(mid):
                good = mid
            else:
                bad = mid
        note = (f"held up to the cap N={cap}" if bad is None
                else f"largest N that held: {good}; N={bad} did not")
        failed_row = next((r for r in rows if r["subscribers"] == bad), None)
        if failed_row is not None and failed_row.get("clients_saturated"):
            note += " (the load clients were saturated there: a limit of this machine, not the server's)"
        if dead is not None:
            errors = "; ".join(failed_row.get("errors", [])[:2]) if failed_row else ""
            note += (f" (nothing was forwarded at N={dead}: the publisher or the node was lost while "
                     f"the subscribers joined{': ' + errors if errors else ''}; not refined further)")
        run.console.print(f"  {system.label}: {note}")
        return {"rows": rows, "limit": good, "first_failed": bad, "cap": cap, "notes": [note]}

    params = {"start": start, "factor": factor, "max": maximum, "refine": refine,
              "max_loss_pct": max_loss_pct, "max_p99_ms": max_p99_ms}
    return {"scenario": "fanout-limit", "params": params,
            "systems": await _each_system(run, "fanout-limit", body)}


# -- messages ---------------------------------------------------------------------------


async def messages(run: Run, members: int = 10, senders: int = 10, count: int = 10000,
                   rate: float = 400.0, drop_every: float = 0.5, down_time: float = 0.3,
                   catch_up: float = 10.0) -> dict:
    """Room messages with members dropping and resuming (Dockcast only: the baselines
    have no durable room messages)."""
    params = {"members": members, "senders": senders, "count": count, "rate": rate,
              "drop_every": drop_every, "down_time": down_time, "catch_up": catch_up}

    async def body(system: System, workers: Workers) -> dict:
        worker = await workers._spawn(run.options.sub_wan, "msg")
        workers.subscribers.append(worker)
        with run.console.status(f"messages: {count} messages to {members} members, with drops"):
            reply = await worker.call("messages", timeout=120 + catch_up + 2 * count / max(rate, 1.0),
                                      settle=catch_up,
                                      members=members, senders=senders, count=count, rate=rate,
                                      drop_every=drop_every, down_time=down_time)
        if reply.get("skipped"):
            run.console.print(f"[yellow]  messages skipped: {reply['skipped']}")
            return {"skipped": reply["skipped"]}
        result = reply["result"]
        run.console.print(
            f"  {system.label:<20} {result['sent']} sent, {result['messages_per_s']} msg/s, "
            f"lost {result['lost']}, duplicated {result['duplicated']}, "
            f"{result['drops']} drops / {result['resumes']} resumes, "
            f"live delay p50 {result['live_delay_ms']['p50']} ms")
        return {"result": result}

    systems = [s for s in run.systems() if s.name == "dockcast"]
    out = await _each_system(run, "messages", body, systems)
    for name in run.options.baselines:
        out[name] = {"skipped": "no durable room messages in this baseline"}
    return {"scenario": "messages", "params": params, "systems": out}


SCENARIOS = ("connect", "forward", "rooms", "fanout-limit", "messages")
