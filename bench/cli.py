"""``dockcast bench SCENARIO [...]``: run a benchmark scenario and write its report.

Scenarios: ``connect``, ``forward``, ``rooms``, ``fanout-limit``, ``messages``, and
``all`` (each of them, plus ``connect`` again across the emulated WAN); ``soak`` (not
part of ``all``: minutes of churn, Dockcast only, whether its resources stay flat);
``quality`` (not part of ``all``: a Chromium simulcast publisher and decoding subscribers,
Chromium pages or aiortc peers, behind emulated links of different rates, the layer each
gets over time; Dockcast only). Every run
measures Dockcast and the baselines (the naive aiortc relay; Janus's VideoRoom when
``janus`` is installed; mediasoup when its shared build, node and libraries are here),
all on loopback, with the same load clients, and writes ``results.json``,
``summary.md`` and PNG plots into ``--out`` (default ``bench/results/<time>-<scenario>``).

By default the harness starts its own ``dockcast serve`` on a free loopback port; with
``--url`` (and ``--api-key``/``--api-secret``, ``--server-pid`` for its CPU) it uses a
node that is already running. Entry point: :func:`main` (``dockcast bench`` calls it).
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import sys
import time

from .harness import REPO, Run, RunOptions
from .wan import WanProfile

__all__ = ["main", "build_parser"]

SCENARIO_NAMES = ("connect", "forward", "rooms", "fanout-limit", "messages", "soak", "failover",
                  "quality", "all")
DEFAULT_DURATION = {"quality": 60.0}
"""``--duration`` when it is not given, by scenario (10 s for the others)."""
IN_ALL = ("connect", "forward", "rooms", "fanout-limit", "messages")


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes are comma-separated integers, not {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be at least 1")
    return sizes


def _wan(text: str) -> str:
    try:
        WanProfile.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _links(text: str) -> tuple[str, ...]:
    from .quality import parse_link

    links = tuple(x.strip() for x in text.split(",") if x.strip())
    try:
        for link in links:
            parse_link(link)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not links:
        raise argparse.ArgumentTypeError("--links needs at least one link")
    return links


def _wan_or_none(text: str) -> str:
    return "none" if text.strip().lower() == "none" else _wan(text)


BASELINES = ("naive", "janus", "mediasoup", "recording", "cascade", "workers")
DEFAULT_BASELINES = ("naive", "janus", "mediasoup")


def _baselines(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip() and x.strip() != "none")
    unknown = set(names) - set(BASELINES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown baseline(s): {', '.join(sorted(unknown))}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockcast bench",
                                description="Run a benchmark scenario against Dockcast and the "
                                            "baselines; write results.json, summary.md and plots.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("scenario", choices=SCENARIO_NAMES)
    g = p.add_argument_group("every scenario")
    g.add_argument("--duration", type=float, default=None,
                   help="seconds measured per step (quality: of the whole run) [10; quality 60]")
    g.add_argument("--wan", type=_wan, help="emulated WAN: delay_ms,jitter_ms,loss_pct[,rate_kbps], "
                   "one way, each direction (75,5,1 = 150 ms RTT, 1%% loss)")
    g.add_argument("--wan-side", choices=("subscribers", "publishers", "all"), default="subscribers",
                   help="which clients sit across the WAN")
    g.add_argument("--out", type=pathlib.Path, help="results folder (default bench/results/TIME-SCENARIO)")
    g.add_argument("--baselines", type=_baselines, default=DEFAULT_BASELINES,
                   help="comma-separated: naive, janus, mediasoup, recording (Dockcast again, "
                        "recording every room), cascade (two Dockcast nodes and Redis: publishers "
                        "on one, subscribers on the other), workers (Dockcast again as `serve "
                        "--workers N`, N from --workers), or none")
    g.add_argument("--workers", type=int, default=2,
                   help="with the workers baseline: how many worker processes it runs")
    g.add_argument("--cascade", action="store_true",
                   help="add the cascade system to the baselines (as --baselines ...,cascade)")
    g.add_argument("--trunk-wan", type=_wan_or_none, default="none",
                   help="with cascade: the WAN emulated between its two nodes (delay_ms,jitter_ms,"
                        "loss_pct[,rate_kbps] one way; 75,5,1 = 150 ms RTT, 1%% loss), or none")
    g.add_argument("--janus-netns", action="store_true",
                   help="run Janus in a network namespace behind a veth pair (root) instead of "
                        "on loopback like the others (to compare the two paths)")
    g.add_argument("--mediasoup-dir", type=pathlib.Path,
                   help="npm cache of mediasoup's node modules (default: beside --out)")
    g.add_argument("--naive-max", type=int, default=50,
                   help="run the naive relay only up to this many subscribers (it collapses early)")
    g.add_argument("--settle", type=float, default=1.0,
                   help="seconds between connecting subscribers and measuring")
    g.add_argument("--profile", action="store_true",
                   help="py-spy flame graph of the server over each measured window (profiles/)")
    g.add_argument("--subs-per-worker", type=int, default=100, help="subscribers per load-client process")
    g.add_argument("--receive", choices=("native", "python"), default="native",
                   help="how the subscribers read: native (recvmmsg, libsrtp and the counting "
                        "compiled, kernel receive stamps; bench.receive) or python (the "
                        "transport's hook, stamped when read: the old way, to compare)")
    g.add_argument("--corpus-dir", type=pathlib.Path, help="corpus cache (default: beside --out)")
    g.add_argument("--corpus-seconds", type=float, default=10.0, help="length of the looped corpus")
    g.add_argument("--url", help="use this running node (ws://HOST:PORT/ws) instead of starting one")
    g.add_argument("--api-key", help="with --url: its API key")
    g.add_argument("--api-secret", help="with --url: its API secret")
    g.add_argument("--server-pid", type=int, help="with --url: the node's pid (for its CPU time)")
    g = p.add_argument_group("connect")
    g.add_argument("--joins", type=int, default=20, help="joins measured")
    g.add_argument("--join-interval", type=float, default=1.1, help="seconds between joins")
    g.add_argument("--cross-region", type=_wan_or_none, default="75,5,1",
                   help="with all: the WAN for the second connect run ('none' to skip)")
    g = p.add_argument_group("forward")
    g.add_argument("--sizes", type=_sizes, default=(1, 10, 50, 100, 200), help="subscriber counts")
    g = p.add_argument_group("rooms")
    g.add_argument("--rooms", type=int, default=50, help="rooms")
    g.add_argument("--room-size", type=int, default=None,
                   help="participants per room (1 publisher); rooms: 10, soak: 4")
    g = p.add_argument_group("fanout-limit")
    g.add_argument("--start", type=int, default=10, help="first subscriber count")
    g.add_argument("--factor", type=float, default=2.0, help="growth per step")
    g.add_argument("--max", type=int, default=1000, help="stop growing here")
    g.add_argument("--refine", type=int, default=2, help="bisection steps after the first failure")
    g.add_argument("--max-loss-pct", type=float, default=0.1, help="a step holds at most this loss")
    g.add_argument("--max-p99-ms", type=float, default=50.0, help="and at most this p99 latency")
    g = p.add_argument_group("messages")
    g.add_argument("--members", type=int, default=10, help="receiving members")
    g.add_argument("--messages", type=int, default=10000, help="messages sent")
    g.add_argument("--senders", type=int, default=10,
                   help="sending connections (a node rate-limits each connection)")
    g.add_argument("--rate", type=float, default=400.0, help="messages per second, all senders")
    g.add_argument("--drop-every", type=float, default=0.5, help="seconds between member drops")
    g.add_argument("--down-time", type=float, default=0.3, help="seconds a dropped member stays away")
    g.add_argument("--catch-up", type=float, default=10.0,
                   help="seconds members get to receive everything after the last send")
    g = p.add_argument_group("soak (Dockcast only; --baselines is ignored; also --room-size)")
    g.add_argument("--minutes", type=float, default=30.0, help="minutes of churn (fractional allowed)")
    g.add_argument("--churn-rooms", type=int, default=4,
                   help="rooms churning at once (one load-client process each)")
    g.add_argument("--cycle-s", type=float, default=5.0, help="seconds between cycle starts per room")
    g.add_argument("--hold-s", type=float, default=2.0, help="seconds a room is held once joined")
    g.add_argument("--cycle-messages", type=int, default=3, help="room messages each member sends per cycle")
    g.add_argument("--sample-s", type=float, default=5.0, help="seconds between resource samples")
    g.add_argument("--drain-s", type=float, default=25.0,
                   help="seconds after the churn before the last sample (emptied rooms close after 20 s)")
    g.add_argument("--flat-pct", type=float, default=10.0,
                   help="fds/threads/tasks are flat if the last-quarter mean is within this of the second quarter's")
    g.add_argument("--flat-rss-mib-per-hour", type=float, default=10.0,
                   help="RSS is flat if its slope over the second half is at most this")
    g = p.add_argument_group("failover (three Dockcast nodes, one killed; also --trunk-wan)")
    g.add_argument("--trials", type=int, default=3, help="nodes killed (a fresh cluster each)")
    g.add_argument("--failover-subscribers", type=int, default=10,
                   help="subscribers on the second node")
    g = p.add_argument_group("quality (Dockcast only; also --duration)")
    g.add_argument("--links", type=_links, default=("300", "3000", "3000@20=300@40=3000"),
                   help="one subscriber per link, comma-separated: RATE[@SECONDS=RATE...] in kbit/s "
                        "(3000@20=300@40=3000: 3 Mbit/s, 300 kbit/s from t=20 s, 3 Mbit/s from 40 s)")
    g.add_argument("--viewers", choices=("chromium", "aiortc"), default="chromium",
                   help="the subscribers: headless Chromium pages (transport-cc, as browsers "
                        "negotiate) or aiortc peers (REMB)")
    return p


def _positive(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.duration <= 0:
        parser.error("--duration must be positive")
    if args.scenario == "failover" and (args.trials < 1 or args.failover_subscribers < 1):
        parser.error("failover: --trials and --failover-subscribers must be at least 1")
    if args.scenario != "soak":
        return
    if args.minutes <= 0 or args.sample_s <= 0 or args.cycle_s < 0 or args.hold_s < 0:
        parser.error("soak: --minutes and --sample-s must be positive, --cycle-s and --hold-s not negative")
    if args.churn_rooms < 1 or (args.room_size is not None and args.room_size < 1):
        parser.error("soak: --churn-rooms and --room-size must be at least 1")


async def _scenario(run: Run, name: str, args: argparse.Namespace) -> dict:
    from . import scenarios

    if name == "connect":
        result = await scenarios.connect(run, joins=args.joins, interval=args.join_interval)
    elif name == "forward":
        result = await scenarios.forward(run, sizes=args.sizes)
    elif name == "rooms":
        result = await scenarios.rooms(run, count=args.rooms, size=args.room_size or 10)
    elif name == "fanout-limit":
        result = await scenarios.fanout_limit(run, start=args.start, factor=args.factor,
                                              maximum=args.max, refine=args.refine,
                                              max_loss_pct=args.max_loss_pct,
                                              max_p99_ms=args.max_p99_ms)
    elif name == "messages":
        result = await scenarios.messages(run, members=args.members, senders=args.senders,
                                          count=args.messages,
                                          rate=args.rate, drop_every=args.drop_every,
                                          down_time=args.down_time, catch_up=args.catch_up)
    elif name == "soak":
        from .soak import soak

        result = await soak(run, minutes=args.minutes, churn_rooms=args.churn_rooms,
                            room_size=args.room_size or 4, cycle_s=args.cycle_s,
                            hold_s=args.hold_s, messages=args.cycle_messages,
                            sample_s=args.sample_s, drain_s=args.drain_s,
                            flat_pct=args.flat_pct,
                            flat_rss_mib_per_hour=args.flat_rss_mib_per_hour)
    elif name == "failover":
        from .failover import failover

        result = await failover(run, subscribers=args.failover_subscribers, trials=args.trials)
    elif name == "quality":
        from .quality import quality

        result = await quality(run, links=args.links, duration=args.duration, viewers=args.viewers)
    else:
        raise ValueError(name)
    result["wan"] = run.options.wan
    if "cascade" in run.options.baselines:
        result["trunk_wan"] = run.options.trunk_wan
    return result


async def _run(args: argparse.Namespace, options: RunOptions) -> int:
    from .report import write_report

    run = Run(options)
    run.prepare_corpus()
    results = []
    names = IN_ALL if args.scenario == "all" else (args.scenario,)
    for name in names:
        run.console.rule(f"{name}" + (f" (WAN {options.wan})" if options.wan else ""))
        results.append(await _scenario(run, name, args))
        if name == "connect" and args.scenario == "all" and args.cross_region != "none" \
                and not options.wan:
            run.console.rule(f"connect (WAN {args.cross_region})")
            options.wan = args.cross_region
            try:
                results.append(await _scenario(run, "connect", args))
            finally:
                options.wan = None
    data = write_report(run.out, run.header(args.scenario), results)
    _print_targets(run, data["targets"])
    run.console.print(f"results: {run.out}/summary.md, results.json, {len(data['plots'])} plots")
    return 0


def _print_targets(run: Run, rows: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="Targets")
    for column in ("target", "Dockcast", "naive", "Janus", "mediasoup", "ratio", "result"):
        table.add_column(column)
    for r in rows:
        result = {True: "[green]pass", False: "[red]FAIL", None: "[yellow]not measured"}[r["pass"]]
        table.add_row(r["target"], *(r["cells"].get(name, "–") for name in
                                     ("dockcast", "naive", "janus", "mediasoup")),
                      r["ratio"], result)
    run.console.print(table)


def main(argv: list[str] | None = None) -> int:
    """``dockcast bench SCENARIO [...]``; returns the exit status."""
    import uvloop

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.url and not (args.api_key and args.api_secret):
        parser.error("--url needs --api-key and --api-secret")
    if args.duration is None:
        args.duration = DEFAULT_DURATION.get(args.scenario, 10.0)
    _positive(parser, args)
    if args.cascade and "cascade" not in args.baselines:
        args.baselines = (*args.baselines, "cascade")
    if args.scenario in ("soak", "failover", "quality"):
        args.baselines = ()  # Dockcast alone
    out = args.out or REPO / "bench" / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}-{args.scenario}"
    options = RunOptions(
        out=out, duration=args.duration, wan=args.wan, wan_side=args.wan_side,
        trunk_wan=None if args.trunk_wan == "none" else args.trunk_wan,
        corpus_dir=args.corpus_dir, corpus_seconds=args.corpus_seconds,
        subs_per_worker=args.subs_per_worker, receive=args.receive,
        baselines=args.baselines, naive_max=args.naive_max,
        janus_netns=args.janus_netns, mediasoup_dir=args.mediasoup_dir, workers=args.workers,
        settle=args.settle, profile=args.profile,
        url=args.url, api_key=args.api_key, api_secret=args.api_secret,
        server_pid=args.server_pid, command="dockcast bench " + shlex.join(argv))
    return uvloop.run(_run(args, options))


if __name__ == "__main__":
    sys.exit(main())
