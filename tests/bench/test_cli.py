"""``dockcast bench`` argument parsing (the runs themselves: test_scenarios.py)."""

from __future__ import annotations

import pytest

from bench.cli import build_parser, main


def test_defaults_follow_the_design():
    args = build_parser().parse_args(["forward"])
    assert args.sizes == (1, 10, 50, 100, 200)
    assert args.baselines == ("naive", "janus", "mediasoup")
    assert args.janus_netns is False and args.mediasoup_dir is None
    assert args.wan is None and args.cross_region == "75,5,1"


def test_mediasoup_and_janus_netns():
    args = build_parser().parse_args(["forward", "--baselines", "janus,mediasoup", "--janus-netns",
                                      "--mediasoup-dir", "/tmp/ms"])
    assert args.baselines == ("janus", "mediasoup") and args.janus_netns
    assert str(args.mediasoup_dir) == "/tmp/ms"


def test_options():
    args = build_parser().parse_args(["all", "--wan", "75,5,1", "--baselines", "none",
                                      "--sizes", "5,20", "--cross-region", "none"])
    assert args.wan == "75,5,1" and args.baselines == () and args.sizes == (5, 20)
    assert args.cross_region == "none"


def test_the_workers_baseline(tmp_path):
    from bench.harness import DockcastSystem, Run, RunOptions

    args = build_parser().parse_args(["rooms", "--baselines", "workers", "--workers", "3"])
    assert args.baselines == ("workers",) and args.workers == 3
    assert build_parser().parse_args(["rooms"]).workers == 2
    run = Run(RunOptions(out=tmp_path, baselines=("workers",), workers=3))
    dockcast, workers = run.systems()  # (made, not started)
    assert isinstance(workers, DockcastSystem) and workers.workers == 3
    assert (workers.name, workers.label) == ("dockcast-3w", "Dockcast, 3 workers")
    assert dockcast.workers == 1 and dockcast.name == "dockcast"
    assert "--workers 3" in workers.how


def test_failover_and_the_wan_between_a_cascades_nodes():
    args = build_parser().parse_args(["failover", "--trials", "5", "--failover-subscribers", "20",
                                      "--trunk-wan", "75,5,1"])
    assert (args.trials, args.failover_subscribers, args.trunk_wan) == (5, 20, "75,5,1")
    assert build_parser().parse_args(["forward"]).trunk_wan == "none"


@pytest.mark.parametrize("argv", [
    ["nope"],
    ["forward", "--trunk-wan", "far"],
    ["forward", "--wan", "fast"],
    ["forward", "--baselines", "kurento"],
    ["forward", "--sizes", "0"],
])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_url_needs_credentials(capsys):
    with pytest.raises(SystemExit):
        main(["connect", "--url", "ws://127.0.0.1:1/ws"])
    assert "--api-key" in capsys.readouterr().err
