"""bench.captions: its node configuration and the off/on comparison (no benchmark run)."""

from __future__ import annotations

import tomllib

from bench.captions import CAPTIONS_CONFIG, build_parser, compare


def test_the_captioning_node_captions_every_track():
    assert tomllib.loads(CAPTIONS_CONFIG) == {"plugins": {"assistant": {"captions_all": True}}}


def test_rows_are_compared_at_each_subscriber_count_both_ran():
    def row(n, cpu, p50, p99):
        return {"subscribers": n, "cpu_us_per_packet": cpu, "latency_ms": {"p50": p50, "p99": p99}}

    systems = {"dockcast": {"rows": [row(1, 30.0, 0.4, 1.0), row(10, 12.0, 0.5, 1.2)]},
               "dockcast-asking": {"rows": [row(1, 33.0, 0.45, 1.1)]},
               "dockcast-captions": {"rows": [row(1, 45.0, 0.5, 1.5)]}}
    assert compare(systems) == [{"subscribers": 1,
                                 "cpu_us_per_packet": {"off": 30.0, "asking": 33.0, "on": 45.0},
                                 "latency_p50_ms": {"off": 0.4, "asking": 0.45, "on": 0.5},
                                 "latency_p99_ms": {"off": 1.0, "asking": 1.1, "on": 1.5}}]
    assert compare({"dockcast": {"error": "x"}}) == []


def test_the_command_line():
    args = build_parser().parse_args(["--out", "/tmp/x", "--sizes", "1,5"])
    assert (str(args.out), args.sizes, args.duration, args.ask_rate) == ("/tmp/x", "1,5", 10.0, 5.0)
