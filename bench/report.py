"""Reports of a run: ``results.json``, ``summary.md`` (the targets table) and PNG plots.

:func:`targets` checks the results against ``DESIGN.md``'s "Targets", with each
baseline's figure and the ratio beside Dockcast's; a target whose scenario did not run
(or whose baseline was skipped) says so rather than passing. Plots use matplotlib's
Agg backend (no display needed).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

__all__ = ["targets", "write_report", "markdown", "plots"]

SYSTEM_ORDER = ("dockcast", "dockcast-recording", "cascade", "naive", "janus", "mediasoup")
LABELS = {"dockcast": "Dockcast", "dockcast-recording": "Dockcast, recording",
          "cascade": "Dockcast, 2 nodes cascaded",
          "naive": "naive aiortc relay", "janus": "Janus VideoRoom", "mediasoup": "mediasoup"}


def _scenario(results: list[dict], name: str, wan: bool | None = None) -> dict | None:
    for result in results:
        if result.get("scenario") != name:
            continue
        if wan is not None and bool(result.get("wan")) != wan:
            continue
        return result
    return None


def _row_at(system: dict | None, n: int) -> dict | None:
    """The measured row of ``system`` at exactly N subscribers, or None."""
    rows = [r for r in (system or {}).get("rows", []) if r["subscribers"] == n]
    return rows[-1] if rows else None


def _fmt(value: Any, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        text = f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    else:
        text = str(value)
    return f"{text}{unit}"


def _state(system: dict | None) -> str | None:
    """Why a system has no figure, or None if it has one."""
    if system is None:
        return "not run"
    if system.get("skipped"):
        return f"skipped: {system['skipped']}"
    if system.get("error"):
        return f"error: {_short(system['error'])}"
    return None


def _short(text: str, limit: int = 160) -> str:
    """The telling line of an error (a traceback's last), cut to ``limit``."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    if len(lines) > 1 and not line.startswith(lines[0][:20]):
        line = f"{lines[0][:60]} … {line}"
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _cell(system: dict | None, value: Any, unit: str) -> str:
    state = _state(system)
    return state if state and value is None else _fmt(value, unit)


def _ratio(ours: float | None, theirs: float | None, name: str) -> str:
    if ours is None or theirs in (None, 0):
        return "–"
    return f"{ours / theirs:.3g} (vs {LABELS[name]})"


def _target(target: str, values: dict[str, Any], systems: dict[str, dict | None], unit: str,
            passed: bool | None, compare: str | None = "janus", note: str = "") -> dict:
    row = {"target": target, "pass": passed, "note": note,
           "values": {name: values.get(name) for name in SYSTEM_ORDER},
           "cells": {name: _cell(systems.get(name), values.get(name), unit) for name in SYSTEM_ORDER}}
    ratio = "–"
    for name in ([compare] if compare else []) + ["naive"]:
        if values.get(name) not in (None, 0):
            ratio = _ratio(values.get("dockcast"), values.get(name), name)
            break
    row["ratio"] = ratio
    return row


def _pass(ok: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "not measured"}[ok]


def targets(results: list[dict]) -> list[dict]:
    """The targets of ``DESIGN.md`` evaluated on whichever scenarios ``results`` hold."""
    rows = []
    forward = _scenario(results, "forward", wan=False) or _scenario(results, "forward")
    if forward is not None:
        systems = forward["systems"]
        dock_sizes = {r["subscribers"] for r in systems.get("dockcast", {}).get("rows", [])}
        janus_sizes = {r["subscribers"] for r in systems.get("janus", {}).get("rows", [])}
        common = dock_sizes & janus_sizes
        n = max(common) if common else max(dock_sizes, default=0)
        cpu = {name: (_row_at(systems.get(name), n) or {}).get("cpu_us_per_packet")
               for name in SYSTEM_ORDER}
        ok = None
        if cpu["dockcast"] is not None and cpu["janus"] is not None:
            ok = cpu["dockcast"] <= cpu["janus"] / 4
        rows.append(_target(f"CPU per forwarded packet at most ¼ of Janus's (N={n})", cpu,
                            systems, " µs", ok,
                            note="" if cpu["janus"] is not None else "needs Janus in the same run"))
        for size in sorted(dock_sizes & {10, 50, 100}):
            cpu = {name: (_row_at(systems.get(name), size) or {}).get("cpu_us_per_packet")
                   for name in SYSTEM_ORDER}
            ok = None
            if cpu["dockcast"] is not None and cpu["mediasoup"] is not None:
                ok = cpu["dockcast"] < cpu["mediasoup"]
            rows.append(_target(f"CPU per forwarded packet below mediasoup's (N={size})", cpu,
                                systems, " µs", ok, compare="mediasoup",
                                note="" if cpu["mediasoup"] is not None else "needs mediasoup in the same run"))
        recording = systems.get("dockcast-recording")
        if recording is not None and n:
            cpu = {name: (_row_at(systems.get(name), n) or {}).get("cpu_us_per_packet")
                   for name in SYSTEM_ORDER}
            rows.append(_target(f"What recording every room costs per forwarded packet (N={n})", cpu,
                                systems, " µs", None, compare="dockcast-recording",
                                note="Dockcast against itself recording, one run: no target, a figure"))
        at = 100 if 100 in dock_sizes else max(dock_sizes, default=0)
        for pct, limit in (("p50", 0.5), ("p99", 2.0)):
            lat = {name: ((_row_at(systems.get(name), at) or {}).get("latency_ms") or {}).get(pct)
                   for name in SYSTEM_ORDER}
            ok = None if lat["dockcast"] is None or at != 100 else lat["dockcast"] < limit
            note = "" if at == 100 else f"N=100 not in the sweep; shown at N={at}"
            rows.append(_target(f"Forwarding latency {pct} under {limit:g} ms at 100 subscribers",
                                lat, systems, " ms", ok, note=note))
    connect = _scenario(results, "connect", wan=False)
    if connect is not None:
        systems = connect["systems"]
        for pct, limit in (("p50", 60.0), ("p95", 150.0)):
            vals = {name: ((systems.get(name) or {}).get("summary_ms", {})
                           .get("first_keyframe", {}).get(pct)) for name in SYSTEM_ORDER}
            ok = None if vals["dockcast"] is None else vals["dockcast"] < limit
            rows.append(_target(f"Join to first keyframe {pct} under {limit:g} ms on loopback",
                                vals, systems, " ms", ok))
    connect_wan = _scenario(results, "connect", wan=True)
    if connect_wan is not None:
        systems = connect_wan["systems"]
        vals = {name: ((systems.get(name) or {}).get("summary_ms", {})
                       .get("first_keyframe", {}).get("p50")) for name in SYSTEM_ORDER}
        ok = None if vals["dockcast"] is None else vals["dockcast"] < 600
        rows.append(_target(f"Join to first keyframe p50 under 600 ms across the WAN "
                            f"({connect_wan['wan']})", vals, systems, " ms", ok))
    fanout = _scenario(results, "fanout-limit")
    if fanout is not None:
        systems = fanout["systems"]
        vals = {name: (systems.get(name) or {}).get("limit") for name in SYSTEM_ORDER}
        dock = systems.get("dockcast") or {}
        ok = None if vals["dockcast"] is None else vals["dockcast"] >= 500
        if ok is False and dock.get("first_failed") is None:
            ok = None  # held up to a cap below 500: not measured
        p = fanout["params"]
        rows.append(_target("One publisher to 500 subscribers without loss (fan-out limit)", vals,
                            systems, " subscribers", ok,
                            note=f"held: loss ≤ {p['max_loss_pct']}%, p99 ≤ {p['max_p99_ms']} ms"))
    rooms = _scenario(results, "rooms")
    if rooms is not None:
        systems = rooms["systems"]
        vals = {name: ((systems.get(name) or {}).get("rows") or [{}])[0].get("loss_pct")
                for name in SYSTEM_ORDER}
        p = rooms["params"]
        dock = ((systems.get("dockcast") or {}).get("rows") or [{}])[0]
        ok = None if vals["dockcast"] is None else (vals["dockcast"] == 0
                                                     and dock.get("connect_failed", 0) == 0)
        rows.append(_target(f"{p['rooms']} rooms of {p['size']} without loss (loss %)", vals,
                            systems, "%", ok))
    msgs = _scenario(results, "messages")
    if msgs is not None:
        systems = msgs["systems"]
        res = (systems.get("dockcast") or {}).get("result")
        vals = {"dockcast": None if res is None else res["lost"] + res["duplicated"]}
        ok = None if res is None else (res["lost"] == 0 and res["duplicated"] == 0
                                       and res["sent"] >= msgs["params"]["count"])
        note = "" if res is None else (f"{res['sent']} messages, {res['drops']} drops; "
                                       f"lost {res['lost']}, duplicated {res['duplicated']}")
        rows.append(_target("Messages: zero lost and zero duplicated with members dropping "
                            "(lost + duplicated)", vals, systems, "", ok, compare=None, note=note))
    soak = _scenario(results, "soak")
    if soak is not None:
        systems = soak["systems"]
        dock = systems.get("dockcast") or {}
        analysis = dock.get("analysis") or {}
        rss = (analysis.get("resources") or {}).get("rss_mib") or {}
        vals = {"dockcast": rss.get("slope_per_hour")}
        ok = analysis.get("flat") if analysis else None
        minutes = dock.get("churn_s", 0) / 60
        note = (f"{minutes:.1f} min of churn; RSS growth per hour over the second half; "
                f"fds, threads, tasks: see the soak section") if analysis else ""
        rows.append(_target("Soak: RSS, fds, threads and asyncio tasks stay flat under churn "
                            "(RSS MiB/h)", vals, systems, " MiB/h", ok, compare=None, note=note))
    rows.extend(_cascade_targets(results))
    quality = _scenario(results, "quality")
    if quality is not None:
        subs = [s.get("analysis") for s in quality.get("subscribers", {}).values()]
        longest = max((a["longest_freeze_s"] for a in subs if a), default=None)
        ok = None if longest is None or None in subs else longest <= 1.0
        rows.append(_target("Quality: no subscriber's video freezes over 1 s, whatever its link "
                            "(longest freeze)", {"dockcast": longest}, quality["systems"], " s", ok,
                            compare=None, note=f"{len(subs)} subscribers; see the quality section"))
    fail = _scenario(results, "failover")
    if fail is not None:
        dock = fail["systems"].get("dockcast") or {}
        summary = dock.get("summary") or {}
        worst = (summary.get("worst_subscriber_ms") or {}).get("p50")
        clean = all(r.get("never_resumed", 1) == 0 and r.get("renegotiated", 1) == 0
                    for r in dock.get("rows", [])) and not summary.get("failed")
        ok = None if worst is None else (worst < summary.get("goal_ms", 3000) and clean)
        rows.append(_target("Failover: media again at every subscriber under 3 s after the "
                            "publisher's node is SIGKILLed (p50 of the trials' worst subscriber)",
                            {"dockcast": worst}, fail["systems"], " ms", ok, compare=None,
                            note=f"{summary.get('trials', 0)} trials, {summary.get('failed', 0)} failed; "
                                 "every subscriber back, none renegotiating" if clean else
                                 "a subscriber never came back, renegotiated, or a trial failed"))
    return rows


def _cascade_targets(results: list[dict]) -> list[dict]:
    """What a trunk hop adds (the cascade against plain Dockcast, one run): latency
    beyond the emulated WAN between the nodes, CPU per packet, and the join across it."""
    rows = []
    forward = _scenario(results, "forward", wan=False) or _scenario(results, "forward")
    systems = (forward or {}).get("systems", {})
    if forward is not None and "cascade" in systems:
        # the delay the relays really gave the media (jitter kept in order adds to the
        # nominal delay), else the profile's nominal one
        held = ((systems["cascade"].get("network") or {}).get("media_held_ms") or {}).get("p50")
        delay = held if held is not None else _one_way_ms(forward.get("trunk_wan"))
        where = f" over the emulated WAN ({forward['trunk_wan']})" if forward.get("trunk_wan") else " on loopback"
        sizes = sorted({r["subscribers"] for r in systems.get("dockcast", {}).get("rows", [])}
                       & {r["subscribers"] for r in systems["cascade"].get("rows", [])})
        for n in [s for s in sizes if s in (10, 100)] or sizes[-1:]:
            dock, casc = _row_at(systems.get("dockcast"), n), _row_at(systems.get("cascade"), n)
            dock_p50 = ((dock or {}).get("latency_ms") or {}).get("p50")
            casc_p50 = ((casc or {}).get("latency_ms") or {}).get("p50")
            added = None if dock_p50 is None or casc_p50 is None else casc_p50 - dock_p50 - delay
            vals = {"dockcast": dock_p50, "cascade": casc_p50}
            rows.append(_target(f"A trunk hop adds under 5 ms p50 beyond the WAN{where} (N={n})",
                                vals, systems, " ms", None if added is None else added < 5,
                                compare=None, note="" if added is None else
                                f"added {added:.2f} ms = cascade − Dockcast − {delay:g} ms emulated"
                                + (" (the relay's p50 hold)" if held is not None else "")))
            rows[-1]["ratio"] = "–" if added is None else f"+{added:.2f} ms"
            cpu = {name: (_row_at(systems.get(name), n) or {}).get("cpu_us_per_packet")
                   for name in ("dockcast", "cascade")}
            extra = None if None in cpu.values() else cpu["cascade"] - cpu["dockcast"]
            rows.append(_target(f"CPU per forwarded packet through a trunk (N={n})", cpu, systems,
                                " µs", None, compare=None,
                                note="both nodes and Redis, per packet a subscriber received: "
                                     "no target, a figure"))
            rows[-1]["ratio"] = "–" if extra is None else f"+{extra:.1f} µs"
    for connect in [r for r in results if r.get("scenario") == "connect"
                    and "cascade" in r.get("systems", {})]:
        systems = connect["systems"]
        vals = {name: ((systems.get(name) or {}).get("summary_ms", {})
                       .get("first_keyframe", {}).get("p50")) for name in ("dockcast", "cascade")}
        across = connect.get("trunk_wan") or connect.get("wan")
        ok = None if vals["cascade"] is None or not across else vals["cascade"] < 600
        rows.append(_target(f"Join to first keyframe p50 under 600 ms through a trunk"
                            + (f" across the WAN ({across})" if across else " (loopback)"),
                            vals, systems, " ms", ok, compare=None,
                            note="the subscriber on the second node, the publisher on the first"))
    return rows


def _one_way_ms(profile: str | None) -> float:
    """The emulated one-way delay of a ``delay,jitter,loss`` profile (0: none)."""
    if not profile:
        return 0.0
    return float(profile.split(",")[0])


# -- markdown -------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def _rows_table(result: dict) -> str:
    header = ["system", "N", "pkt/s forwarded", "loss %", "dup", "p50 ms", "p95 ms", "p99 ms",
              "server % core", "µs/packet", "others' load (cores)", "clients saturated"]
    rows = []
    for name, system in result["systems"].items():
        label = system.get("label", LABELS.get(name, name))
        state = _state(system)
        if state and not system.get("rows"):
            rows.append([label, state] + [""] * (len(header) - 2))
            continue
        for r in system.get("rows", []):
            lat = r["latency_ms"]
            rows.append([label, str(r["subscribers"]), _fmt(r["forwarded_pps"]),
                         _fmt(r["loss_pct"]), str(r["duplicates"]), _fmt(lat["p50"]),
                         _fmt(lat["p95"]), _fmt(lat["p99"]), _fmt(r["server_core_pct"]),
                         _fmt(r["cpu_us_per_packet"]),
                         _fmt(r["machine"].get("others_cores")),
                         "yes" if r.get("clients_saturated") else ""])
        for note in system.get("notes", []):
            rows.append([label, note] + [""] * (len(header) - 2))
    return _table(header, rows)


def _connect_table(result: dict) -> str:
    header = ["system", "joins", "failed", "→joined p50", "→offer p50", "→first packet p50/p95/p99",
              "→first keyframe p50/p95/p99"]
    rows = []
    for name, system in result["systems"].items():
        label = system.get("label", LABELS.get(name, name))
        state = _state(system)
        if state:
            rows.append([label, state] + [""] * (len(header) - 2))
            continue
        s = system["summary_ms"]

        def trio(key: str) -> str:
            return " / ".join(_fmt(s[key][p]) for p in ("p50", "p95", "p99")) + " ms"

        rows.append([label, str(len(system["joins"])), str(system["failed"]),
                     _fmt(s["joined"]["p50"], " ms"), _fmt(s["offer"]["p50"], " ms"),
                     trio("first_packet"), trio("first_keyframe")])
    return _table(header, rows)


def _failover_table(result: dict) -> str:
    dock = result["systems"].get("dockcast") or {}
    rows = []
    for r in dock.get("rows", []):
        if "error" in r:
            rows.append([str(r["trial"]), "error", _short(r["error"]), "–", "–", "–"])
            continue
        back = r.get("resumed_ms") or {}
        rows.append([str(r["trial"]), _fmt(r["republished_ms"], " ms"),
                     f"{r['resumed']}/{r['subscribers']}", _fmt(back.get("p50"), " ms"),
                     _fmt(back.get("max"), " ms"), str(r["renegotiated"])])
    return _table(["trial", "published again", "video back at", "p50 after the SIGKILL",
                   "worst subscriber", "new offers"], rows)


def _messages_table(result: dict) -> str:
    header = ["system", "sent", "msg/s", "lost", "duplicated", "drops", "resumes", "replayed",
              "live delay p50/p99 ms"]
    rows = []
    for name, system in result["systems"].items():
        label = system.get("label", LABELS.get(name, name))
        res = system.get("result")
        if res is None:
            rows.append([label, _state(system) or "–"] + [""] * (len(header) - 2))
            continue
        d = res["live_delay_ms"]
        rows.append([label, str(res["sent"]), _fmt(res["messages_per_s"]), str(res["lost"]),
                     str(res["duplicated"]), str(res["drops"]), str(res["resumes"]),
                     str(res["replayed"]), f"{_fmt(d['p50'])} / {_fmt(d['p99'])}"])
    return _table(header, rows)


def markdown(header: dict, results: list[dict], target_rows: list[dict], images: list[str]) -> str:
    m = header["machine"]
    out = [f"# Dockcast benchmark: {header['scenario']}", ""]
    out.append(f"- command: `{header['command']}`")
    out.append(f"- commit: `{header['commit'] or 'unknown'}`, started {header['started']}")
    out.append(f"- machine: {m.get('cpu_model')}, {m.get('cores')} cores, load average "
               f"{' '.join(str(x) for x in m.get('load_avg', []))} at start, kernel {m.get('kernel')}, "
               f"Python {m.get('python')}; " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()))
    c = header.get("corpus") or {}
    if c:
        out.append(f"- corpus: VP8 {c.get('video_kbps')} kbit/s ({c.get('video_packets')} packets, "
                   f"{c.get('keyframes')} keyframes in {c.get('params', {}).get('seconds')} s), "
                   f"Opus {c.get('audio_kbps')} kbit/s")
    o = header["options"]
    out.append(f"- window {o['duration']} s per step; WAN: {o.get('wan') or 'none (loopback)'}"
               + (f" on the {o['wan_side']} side" if o.get("wan") else ""))
    out.append("- this machine is shared: 'others' load' is CPU that neither the server nor "
               "the load clients used during the window (in cores)")
    for name, how in (header.get("systems") or {}).items():
        out.append(f"- {LABELS.get(name, name)}: {how}")
    out += ["", "## Targets", ""]
    # a column per system that took part (Dockcast always)
    present = {name for result in results for name in result.get("systems", {})}
    shown = [n for n in SYSTEM_ORDER if n == "dockcast" or n in present]
    out.append(_table(["target", *(LABELS[n] for n in shown), "ratio", "result", "note"],
                      [[r["target"], *(r["cells"].get(n, "–") for n in shown), r["ratio"],
                        _pass(r["pass"]), r["note"]] for r in target_rows]))
    for result in results:
        title = result["scenario"] + (f" (WAN {result['wan']})" if result.get("wan") else "")
        out += ["", f"## {title}", "", f"parameters: `{json.dumps(result.get('params', {}))}`", ""]
        if result["scenario"] == "connect":
            out.append(_connect_table(result))
        elif result["scenario"] == "messages":
            out.append(_messages_table(result))
        elif result["scenario"] == "soak":
            from .soak import soak_markdown

            out.append(soak_markdown(result))
        elif result["scenario"] == "failover":
            out.append(_failover_table(result))
        elif result["scenario"] == "quality":
            from .quality_report import quality_markdown

            out.append(quality_markdown(result))
        else:
            out.append(_rows_table(result))
            rows = [r for s in result["systems"].values() for r in s.get("rows", [])]
            methods = {r["latency_method"] for r in rows}
            if methods:
                out += ["", "latency measured " + "; ".join(sorted(methods))]
            profiles = [r["profile"] for r in rows if r.get("profile")]
            if profiles:
                out += ["", "py-spy flame graphs of the server: "
                        + ", ".join(f"[{pathlib.Path(p).name}]({p})" for p in profiles)]
    if images:
        out += ["", "## Plots", ""] + [f"![{name}]({name})" for name in images]
    return "\n".join(out) + "\n"


# -- plots ---------------------------------------------------------------------------------


def plots(results: list[dict], out: pathlib.Path) -> list[str]:
    """Latency CDF, CPU per packet vs subscribers, latency vs subscribers (PNG files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[str] = []
    swept = [r for r in results if r["scenario"] in ("forward", "fanout-limit", "rooms")]
    series: dict[str, list[dict]] = {}
    for result in swept:
        for name, system in result["systems"].items():
            series.setdefault(name, []).extend(system.get("rows", []))

    def save(fig: Any, ax: Any, name: str, title: str, xlabel: str, ylabel: str,
             xlog: bool = False, ylog: bool = False, legend_size: int | None = None) -> None:
        if xlog:
            ax.set_xscale("log")
        if ylog:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=legend_size)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append(name)

    if any(rows for rows in series.values()):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, rows in series.items():
            with_cdf = [r for r in rows if r.get("latency_cdf_ms")]
            if not with_cdf:
                continue
            row = max(with_cdf, key=lambda r: r["subscribers"])
            ax.plot(row["latency_cdf_ms"], [p / 100 for p in _cdf_points(row["latency_cdf_ms"])],
                    label=f"{LABELS.get(name, name)}, N={row['subscribers']}")
        save(fig, ax, "latency_cdf.png", "Forwarding latency CDF",
             "publisher send to subscriber receive (ms, log)", "fraction of packets", xlog=True)

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, rows in series.items():
            pts = sorted((r["subscribers"], r["cpu_us_per_packet"]) for r in rows
                         if r.get("cpu_us_per_packet") is not None)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=LABELS.get(name, name))
        save(fig, ax, "cpu_per_packet.png", "CPU per forwarded packet vs subscribers",
             "subscribers", "server CPU per forwarded packet (µs, log)", ylog=True)

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, (name, rows) in enumerate(series.items()):
            for pct, style in (("p50", "-o"), ("p99", "--s")):
                pts = sorted((r["subscribers"], r["latency_ms"][pct]) for r in rows
                             if r["latency_ms"].get(pct) is not None)
                if pts:
                    ax.plot(*zip(*pts), style, color=f"C{i}", label=f"{LABELS.get(name, name)} {pct}")
        save(fig, ax, "latency_vs_subscribers.png", "Forwarding latency vs subscribers",
             "subscribers", "latency (ms, log)", ylog=True, legend_size=8)

    for result in results:
        if result["scenario"] == "soak":
            from .soak import soak_plot

            made += soak_plot(result, out)
        if result["scenario"] == "quality":
            from .quality_report import quality_plot

            made += quality_plot(result, out)
        if result["scenario"] != "connect":
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, system in result["systems"].items():
            values = sorted(j["first_keyframe"] for j in system.get("joins", [])
                            if not j.get("error") and "first_keyframe" in j)
            if values:
                ax.step(values, [(i + 1) / len(values) for i in range(len(values))], where="post",
                        label=LABELS.get(name, name))
        save(fig, ax, "connect_cdf_wan.png" if result.get("wan") else "connect_cdf.png",
             "Join to first keyframe" + (f" (WAN {result['wan']})" if result.get("wan") else ""),
             "join to first keyframe (ms)", "fraction of joins")
    return made


def _cdf_points(values: list) -> list[float]:
    step = 100 / (len(values) - 1) if len(values) > 1 else 100
    return [i * step for i in range(len(values))]


def write_report(out: pathlib.Path, header: dict, results: list[dict]) -> dict:
    """Write ``results.json``, ``summary.md`` and the plots into ``out``; return the data."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target_rows = targets(results)
    images = plots(results, out)
    data = {**header, "targets": target_rows, "results": results, "plots": images}
    (out / "results.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    (out / "summary.md").write_text(markdown(header, results, target_rows, images))
    return data
