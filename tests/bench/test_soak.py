"""bench.soak: the flatness rule, the /proc and /metrics readers, the report section."""

from __future__ import annotations

import os

import pytest

from bench import soak
from bench.cli import build_parser, main


def _samples(rss, fds=None, minutes=30.0, n=60):
    """``n`` churn samples over ``minutes``; ``rss(t_s)`` and ``fds(t_s)`` give the values."""
    out = [{"t_s": 0.0, "phase": "idle", "rss_mib": 70.0, "fds": 30, "threads": 3, "tasks": 3}]
    for i in range(1, n + 1):
        t = i * minutes * 60 / n
        out.append({"t_s": t, "phase": "churn", "rss_mib": rss(t),
                    "fds": fds(t) if fds else 40 + (i % 2) * 6, "threads": 5,
                    "tasks": 30 + (i % 3) * 10, "proc_threads": 9})
    out.append({"t_s": minutes * 60 + 25, "phase": "drained", "rss_mib": rss(minutes * 60),
                "fds": 32, "threads": 5, "tasks": 3, "proc_threads": 9})
    return out


def test_a_flat_run_is_flat_despite_warm_up_and_churn_noise():
    # fast growth in the first quarter (warm-up), then a plateau with a little noise
    a = soak.analyze(_samples(lambda t: min(90.0, 70 + t / 20) + (0.5 if int(t) % 2 else 0)))
    assert a["flat"] is True
    rss = a["resources"]["rss_mib"]
    assert abs(rss["slope_per_hour"]) < 10 and rss["idle"] == 70.0 and rss["max"] >= 90
    assert a["resources"]["fds"]["drained"] == 32


def test_a_leak_is_not_flat():
    a = soak.analyze(_samples(lambda t: 80 + t * 40 / 3600))  # 40 MiB/h
    rss = a["resources"]["rss_mib"]
    assert rss["flat"] is False and a["flat"] is False
    assert rss["slope_per_hour"] == pytest.approx(40, rel=0.01)


def test_growing_fds_are_not_flat():
    a = soak.analyze(_samples(lambda t: 80.0, fds=lambda t: 40 + int(t / 30)))  # 2 fds a minute
    assert a["resources"]["fds"]["flat"] is False and a["resources"]["rss_mib"]["flat"] is True


def test_a_short_run_is_too_short_to_tell():
    a = soak.analyze(_samples(lambda t: 80.0, minutes=2))
    assert a["flat"] is None and all(r["flat"] is None for r in a["resources"].values())
    assert soak.analyze(_samples(lambda t: 80.0, minutes=2), min_span_s=0)["flat"] is True


def test_parse_metrics():
    text = ("# HELP dockcast_open_fds Open file descriptors\n# TYPE dockcast_open_fds gauge\n"
            "dockcast_open_fds 41.0\ndockcast_threads 5.0\ndockcast_asyncio_tasks 33.0\n"
            "dockcast_rooms 2.0\ndockcast_messages_stored_total 12.0\nother_metric 1.0\n")
    assert soak.parse_metrics(text) == {"fds": 41, "threads": 5, "tasks": 33, "rooms": 2,
                                        "messages_stored": 12}


def test_read_proc_of_this_process():
    row = soak.read_proc(os.getpid())
    assert row["rss_mib"] > 1 and row["proc_threads"] >= 1 and row["proc_fds"] >= 3


def test_metrics_url():
    assert soak._metrics_url("ws://127.0.0.1:8080/ws") == "http://127.0.0.1:8080/metrics"


def test_markdown_and_plot(tmp_path):
    samples = _samples(lambda t: 80.0, minutes=12, n=30)
    result = {"scenario": "soak", "params": {"minutes": 12, "churn_rooms": 4, "room_size": 4,
                                             "cycle_s": 5.0, "hold_s": 2.0, "messages": 3,
                                             "sample_s": 5.0},
              "baselines": "none",
              "systems": {"dockcast": {"label": "Dockcast", "samples": samples,
                                       "counters": dict.fromkeys(soak.COUNTERS, 0),
                                       "errors": [], "churn_s": 720.0, "notes": [],
                                       "analysis": soak.analyze(samples)}}}
    text = soak.soak_markdown(result)
    assert "stayed flat" in text and "| RSS (MiB) |" in text and "Baselines: none" in text
    assert soak.soak_plot(result, tmp_path) == ["soak.png"]
    assert (tmp_path / "soak.png").stat().st_size > 0


def test_soak_options():
    args = build_parser().parse_args(["soak"])
    assert (args.minutes, args.sample_s, args.churn_rooms, args.room_size) == (30.0, 5.0, 4, None)
    assert build_parser().parse_args(["soak", "--minutes", "0.5"]).minutes == 0.5
    assert build_parser().parse_args(["rooms"]).room_size is None  # rooms uses 10


def test_soak_is_not_part_of_all():
    from bench.cli import IN_ALL, SCENARIO_NAMES

    assert "soak" in SCENARIO_NAMES and "soak" not in IN_ALL


@pytest.mark.parametrize("argv", [["soak", "--minutes", "0"], ["soak", "--churn-rooms", "0"]])
def test_bad_soak_options(argv):
    with pytest.raises(SystemExit):
        main(argv)
