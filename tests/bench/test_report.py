"""The report writer: targets table, markdown, plots and results.json from results."""

from __future__ import annotations

import json

from bench.report import markdown, targets, write_report


def _row(n, cpu, p50, p99, loss=0.0):
    cdf = [p50 * (0.5 + i / 200) for i in range(201)]
    return {"subscribers": n, "forwarded_pps": 100.0 * n, "loss_pct": loss, "duplicates": 0,
            "latency_ms": {"p50": p50, "p95": p99 * 0.8, "p99": p99}, "latency_cdf_ms": cdf,
            "latency_method": "per packet (send stamp in the payload)", "server_core_pct": 5.0,
            "cpu_us_per_packet": cpu, "machine": {"others_cores": 0.1}, "failed": 0,
            "connect_failed": 0}


def _connect(p50, p95):
    joins = [{"error": None, "first_keyframe": p50, "first_packet": p50 / 2, "joined": 1.0,
              "offer": 2.0}] * 3
    summary = {k: {"p50": p50, "p95": p95, "p99": p95} for k in
               ("joined", "offer", "first_packet", "first_keyframe")}
    return {"label": "x", "joins": joins, "failed": 0, "summary_ms": summary}


RESULTS = [
    {"scenario": "forward", "wan": None, "params": {"sizes": [10, 100]}, "systems": {
        "dockcast": {"label": "Dockcast", "rows": [_row(10, 20.0, 0.3, 1.0), _row(100, 10.0, 0.4, 1.5)]},
        "naive": {"label": "naive aiortc relay", "rows": [_row(10, 3000.0, 45.0, 60.0)],
                  "notes": ["not run above N=50 (--naive-max)"]},
        "janus": {"label": "Janus VideoRoom", "rows": [_row(10, 90.0, 1.7, 3.9), _row(100, 60.0, 1.9, 4.4)]},
    }},
    {"scenario": "connect", "wan": None, "params": {}, "systems": {
        "dockcast": _connect(50.0, 120.0), "naive": {"error": "RuntimeError: boom"},
        "janus": {"skipped": "janus not installed"}}},
    {"scenario": "connect", "wan": "75,5,1", "params": {}, "systems": {
        "dockcast": _connect(700.0, 900.0)}},
    {"scenario": "messages", "wan": None, "params": {"count": 100}, "systems": {
        "dockcast": {"skipped": "server does not support messages (send is not supported)"},
        "naive": {"skipped": "no durable room messages in this baseline"}}},
]


def _by_target(rows):
    return {r["target"].split(" (")[0]: r for r in rows}


def test_targets_pass_fail_and_ratios():
    rows = _by_target(targets(RESULTS))
    cpu = next(r for t, r in rows.items() if t.startswith("CPU per forwarded packet"))
    assert cpu["pass"] is True  # 10 <= 60 / 4
    assert cpu["values"]["dockcast"] == 10.0 and cpu["values"]["janus"] == 60.0
    assert cpu["ratio"].startswith("0.167")
    p99 = rows["Forwarding latency p99 under 2 ms at 100 subscribers"]
    assert p99["pass"] is True and p99["cells"]["naive"] == "–"
    kf = rows["Join to first keyframe p95 under 150 ms on loopback"]
    assert kf["pass"] is True
    assert kf["cells"]["janus"] == "skipped: janus not installed"
    assert kf["cells"]["naive"].startswith("error: RuntimeError")
    wan = next(r for t, r in rows.items() if t.startswith("Join to first keyframe p50 under 600"))
    assert wan["pass"] is False
    msgs = next(r for t, r in rows.items() if t.startswith("Messages"))
    assert msgs["pass"] is None and msgs["cells"]["dockcast"].startswith("skipped: server does not")
    assert not any(t.startswith("A trunk hop") for t in rows)  # no cascade in this run


def test_cascade_targets_take_the_emulated_wan_out_of_the_trunk_hop():
    forward = {"scenario": "forward", "wan": None, "trunk_wan": "75,5,1", "params": {}, "systems": {
        "dockcast": {"rows": [_row(10, 20.0, 0.5, 1.0), _row(100, 10.0, 0.6, 1.5)]},
        "cascade": {"rows": [_row(10, 35.0, 78.5, 90.0), _row(100, 13.0, 82.6, 95.0)]}}}
    connect = {"scenario": "connect", "wan": None, "trunk_wan": "75,5,1", "params": {}, "systems": {
        "dockcast": _connect(40.0, 90.0), "cascade": _connect(520.0, 700.0)}}
    rows = targets([forward, connect])
    hops = [r for r in rows if r["target"].startswith("A trunk hop")]
    assert [r["pass"] for r in hops] == [True, False]  # 78.5-0.5-75 = 3 ms; 82.6-0.6-75 = 7 ms
    assert hops[0]["ratio"] == "+3.00 ms" and "75 ms emulated" in hops[0]["note"]
    cpu = [r for r in rows if r["target"].startswith("CPU per forwarded packet through a trunk")]
    assert [r["ratio"] for r in cpu] == ["+15.0 µs", "+3.0 µs"] and cpu[0]["pass"] is None
    join = next(r for r in rows if r["target"].startswith("Join to first keyframe p50 under 600 ms through"))
    assert join["pass"] is True and join["values"]["cascade"] == 520.0
    assert "(75,5,1)" in join["target"]
    # what the relay measured it held the media, when it says so, instead of the nominal
    forward["systems"]["cascade"]["network"] = {"media_held_ms": {"p50": 77.5}}
    hop = next(r for r in targets([forward]) if r["target"].startswith("A trunk hop"))
    assert hop["ratio"] == "+0.50 ms" and "relay's p50 hold" in hop["note"]


def test_a_target_without_janus_is_not_measured():
    only = [dict(RESULTS[0], systems={k: v for k, v in RESULTS[0]["systems"].items() if k != "janus"})]
    cpu = targets(only)[0]
    assert cpu["pass"] is None and "Janus" in cpu["note"]


def test_write_report(tmp_path):
    header = {"scenario": "all", "command": "dockcast bench all", "commit": "abc1234",
              "started": "now", "corpus": {}, "options": {"duration": 1, "wan": None},
              "machine": {"cpu_model": "cpu", "cores": 2, "load_avg": [0.1, 0.2, 0.3],
                          "kernel": "k", "python": "3.11", "versions": {"aiortc": "1.16.0"}}}
    data = write_report(tmp_path, header, RESULTS)
    assert set(data["plots"]) == {"latency_cdf.png", "cpu_per_packet.png",
                                  "latency_vs_subscribers.png", "connect_cdf.png",
                                  "connect_cdf_wan.png"}
    for name in data["plots"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["commit"] == "abc1234" and len(saved["results"]) == 4
    text = (tmp_path / "summary.md").read_text()
    assert "| target | Dockcast | naive aiortc relay | Janus VideoRoom | ratio | result | note |" in text
    assert "not run above N=50" in text
    assert "skipped: server does not support messages" in text
    assert "![latency_cdf.png](latency_cdf.png)" in text


def test_markdown_without_plots():
    header = {"scenario": "forward", "command": "c", "commit": "", "started": "t",
              "options": {"duration": 1}, "machine": {}}
    text = markdown(header, RESULTS[:1], targets(RESULTS[:1]), [])
    assert "## Plots" not in text and "## forward" in text


def test_the_failover_target_needs_every_subscriber_back_without_renegotiating():
    def result(rows, failed=0):
        worst = [r["resumed_ms"]["max"] for r in rows if r.get("resumed_ms")]
        return [{"scenario": "failover", "wan": None, "params": {}, "systems": {"dockcast": {
            "rows": rows, "summary": {"trials": len(rows), "failed": failed, "goal_ms": 3000,
                                      "worst_subscriber_ms": {"p50": sorted(worst)[len(worst) // 2]}}}}}]

    good = [{"trial": i, "subscribers": 10, "resumed": 10, "never_resumed": 0, "renegotiated": 0,
             "republished_ms": 500.0, "resumed_ms": {"p50": 520.0, "max": 540.0 + i}} for i in range(3)]
    row = next(r for r in targets(result(good)) if r["target"].startswith("Failover"))
    assert row["pass"] is True and row["values"]["dockcast"] == 541.0
    bad = [dict(good[0], renegotiated=2)] + good[1:]
    assert next(r for r in targets(result(bad)) if r["target"].startswith("Failover"))["pass"] is False
    text = markdown({"scenario": "failover", "command": "c", "commit": "", "started": "t",
                     "options": {"duration": 1}, "machine": {}}, result(good), targets(result(good)), [])
    assert "| trial | published again | video back at |" in text and "| 10/10 |" in text
