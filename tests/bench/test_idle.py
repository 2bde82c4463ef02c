"""bench.idle: its arguments, and the counters it reads from /proc (no network)."""

from __future__ import annotations

import os

import pytest

from bench.idle import (
    Sample,
    Window,
    parse_args,
    parse_schedstat,
    parse_switches,
    per_subscriber,
    sample,
)

STATUS = "Name:\tpython\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n"


def test_defaults_and_the_brief_example():
    args = parse_args([])
    assert (args.subscribers, args.seconds, args.url, args.profile) == (20, 10.0, None, None)
    args = parse_args(["--subscribers", "50", "--seconds", "20"])
    assert (args.subscribers, args.seconds) == (50, 20.0)


@pytest.mark.parametrize("argv", [
    ["--subscribers", "0"], ["--seconds", "0"], ["--settle", "-1"],
    ["--url", "ws://127.0.0.1:1/ws"],                        # whose CPU? no --pid
    ["--pid", "1"],                                          # no --url
    ["--url", "ws://127.0.0.1:1/ws", "--pid", "1"],          # no --api-secret
])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert "--" in capsys.readouterr().err


def test_a_running_node_is_named_with_its_pid_and_secret():
    args = parse_args(["--url", "ws://127.0.0.1:9/ws", "--pid", "42", "--api-secret", "s"])
    assert (args.url, args.pid, args.api_secret) == ("ws://127.0.0.1:9/ws", 42, "s")


def test_only_voluntary_switches_are_wakeups():
    assert parse_switches(STATUS) == 120  # the 7 involuntary ones are other processes' doing
    with pytest.raises(ValueError, match="voluntary_ctxt_switches"):
        parse_switches("Name:\tpython\n")


def test_schedstat_is_nanoseconds_on_a_cpu():
    assert parse_schedstat("2500000000 17 9\n") == 2.5


def test_a_window_is_per_second_and_per_subscriber_is_the_difference():
    start = Sample(at=100.0, cpu_s=1.0, switches=1000, system_s=0.5, run_s=1.0)
    baseline = Window.between(start, Sample(110.0, 1.02, 1100, 0.5, 1.02), tasks=14)
    loaded = Window.between(start, Sample(110.0, 1.12, 1900, 0.52, 1.13), tasks=154)
    assert baseline.cpu_ms_per_s == pytest.approx(2.0) and baseline.wakeups_per_s == pytest.approx(10)
    each = per_subscriber(baseline, loaded, 20)
    assert each["cpu_ms_per_s"] == pytest.approx(0.5)
    assert each["run_ms_per_s"] == pytest.approx(0.55)
    assert each["system_ms_per_s"] == pytest.approx(0.1)
    assert each["wakeups_per_s"] == pytest.approx(4.0) and each["tasks"] == 7
    assert per_subscriber(Window(1, 1, 1), Window(1, 3, 1), 2)["tasks"] is None  # no /metrics
    with pytest.raises(ValueError):
        Window.between(start, start)
    with pytest.raises(ValueError):
        per_subscriber(baseline, loaded, 0)


def test_this_process_is_read_and_its_counters_grow():
    before = sample(os.getpid())
    x = 0
    while sample(os.getpid()).run_s - before.run_s < 0.02:  # busy until it shows
        x += sum(range(1000))
    after = sample(os.getpid())
    assert after.run_s > before.run_s and after.at > before.at
    assert after.cpu_s >= before.cpu_s and after.switches >= before.switches >= 0
