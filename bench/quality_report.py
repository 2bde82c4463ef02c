"""The ``quality`` scenario's analysis, table and figure, from its samples alone (no
network: tests feed it a canned result).

A result holds, per subscriber, its link's schedule, the node's samples every 0.5 s
(``layer``: 0 lowest, -1 paused for bandwidth, None unknown; ``estimate_bps``; with
transport-cc, ``feedbacks`` and ``probe_clusters`` read so far), the decoded video
(arrival time, height) and the arrival times of its audio frames. A Chromium
subscriber's page counts what it decoded every 100 ms instead (`bench.browser`):
`page_series` turns those counts into the same two series, and `decoder_columns` gives
each node sample the frame rate and height decoded up to it, for either kind.
"""

from __future__ import annotations

import pathlib
from bisect import bisect_right
from itertools import pairwise
from typing import Any

__all__ = ["FREEZE_S", "LAYER_NAMES", "analyse", "decoder_columns", "freezes", "link_steps",
           "page_series", "quality_markdown", "quality_plot", "settle_times"]

FREEZE_S = 1.0
"""A gap longer than this between two decoded frames is a freeze (issue 13)."""

LAYER_NAMES = {-1: "paused", 0: "q", 1: "h", 2: "f"}


def freezes(times: list[float], since: float | None = None) -> list[tuple[float, float]]:
    """The (start, end) of each gap over `FREEZE_S` between consecutive ``times``
    (those at or after ``since``, if given)."""
    times = [t for t in times if since is None or t >= since]
    return [(a, b) for a, b in pairwise(times) if b - a > FREEZE_S]


def page_series(samples: list[tuple[float, int, int, int]], offset: float = 0.0
                ) -> tuple[list[tuple[float, int]], list[float]]:
    """A Chromium page's samples ``(t, frames decoded, frame height, audio packets)``
    (counts so far, `bench.browser.BrowserViewer.samples`) as an aiortc viewer's series:
    ``video`` [(t, height)] one per frame and ``audio`` [t] one per packet, the frames
    (packets) counted between two samples spread evenly over that interval, so a gap is
    known to a sample's period (0.1 s). ``offset`` is taken off every page time (page
    seconds at the run's t=0). A count that went down (a stream gone) adds nothing."""
    video: list[tuple[float, int]] = []
    audio: list[float] = []
    prev_t: float | None = None
    prev_frames = prev_audio = 0
    height = 0
    for t, frames, frame_height, packets in samples:
        height = frame_height or height  # 0 until the stats name one
        start = t if prev_t is None else prev_t
        video += [(round(at - offset, 3), height) for at in _spread(start, t, frames - prev_frames)]
        audio += [round(at - offset, 3) for at in _spread(start, t, packets - prev_audio)]
        prev_t, prev_frames, prev_audio = t, frames, packets
    return video, audio


def _spread(start: float, end: float, count: int) -> list[float]:
    """``count`` times evenly over (start, end], the last at ``end``."""
    return [start + (end - start) * (k + 1) / count for k in range(count)]


def decoder_columns(samples: list[dict], video: list[tuple[float, int]], interval: float) -> None:
    """Give each sample ``fps`` (frames decoded over the ``interval`` up to its ``t``) and
    ``height`` (of the last frame decoded by then, None before the first), in place."""
    times = [t for t, _ in video]
    for s in samples:
        last = bisect_right(times, s["t"])
        s["fps"] = round((last - bisect_right(times, s["t"] - interval)) / interval, 1)
        s["height"] = video[last - 1][1] if last else None


def settle_times(samples: list[dict], changes: list[float], end: float) -> list[float | None]:
    """For each link change (a time, the first one being the start), how long until the
    sampled layer reached the value it then kept until the next change (or ``end``);
    None when it never held one (no layer known in that span)."""
    out: list[float | None] = []
    bounds = [*changes, end]
    for start, stop in pairwise(bounds):
        span = [s for s in samples if start <= s["t"] < stop and s.get("layer") is not None]
        if not span:
            out.append(None)
            continue
        final = span[-1]["layer"]
        settled = span[-1]["t"]
        for s in reversed(span):
            if s["layer"] != final:
                break
            settled = s["t"]
        out.append(round(settled - start, 2))
    return out


def analyse(sub: dict, duration: float, interval: float) -> dict:
    """One subscriber's figures: seconds on each layer, freezes, audio, settle times."""
    samples = sub.get("samples", [])
    on_layer: dict[str, float] = {}
    for s in samples:
        if s["t"] >= duration:  # the last sample closes the run
            continue
        name = LAYER_NAMES.get(s.get("layer"), "unknown") if s.get("layer") is not None else "unknown"
        on_layer[name] = round(on_layer.get(name, 0.0) + interval, 2)
    video_times = [t for t, _ in sub.get("video", [])]
    first = video_times[0] if video_times else None
    video_freezes = freezes(video_times)
    if video_times and duration - video_times[-1] > FREEZE_S:  # frozen at the end
        video_freezes.append((video_times[-1], duration))
    audio = sub.get("audio", [])
    changes = [0.0] + [t for t, _ in sub.get("link", [])[1:]]
    return {
        "seconds_on_layer": on_layer,
        "first_frame_s": None if first is None else round(first, 2),
        "frames": len(video_times),
        "freezes": len(video_freezes),
        "longest_freeze_s": round(max((b - a for a, b in video_freezes), default=0.0), 2),
        "freeze_spans": [[round(a, 2), round(b, 2)] for a, b in video_freezes],
        "audio_frames": len(audio),
        "longest_audio_gap_s": round(max((b - a for a, b in pairwise(audio)), default=0.0), 2),
        "settle_s": settle_times(samples, changes, duration),
        "last_height": sub["video"][-1][1] if sub.get("video") else None,
        "transport_cc_feedbacks": _last(samples, "feedbacks"),
        "probe_clusters": _last(samples, "probe_clusters"),
    }


def _last(samples: list[dict], key: str) -> int | None:
    """The last value of ``key`` the node gave (None: never, e.g. not transport-cc)."""
    return next((int(s[key]) for s in reversed(samples) if s.get(key) is not None), None)


def _link_text(link: list) -> str:
    return " → ".join(f"{kbps} kbit/s" + (f" at {t:g} s" if t else "") for t, kbps in link)


def quality_markdown(result: dict) -> str:
    """The per-subscriber table of a ``quality`` result."""
    rows = []
    for name, sub in result.get("subscribers", {}).items():
        a = sub.get("analysis") or {}
        if "error" in sub:
            rows.append(f"| {name} | {_link_text(sub.get('link', []))} | error: {sub['error']} "
                        + "| " * 7)
            continue
        layers = ", ".join(f"{k} {v:g} s" for k, v in sorted(a.get("seconds_on_layer", {}).items()))
        settle = ", ".join("–" if s is None else f"{s:g} s" for s in a.get("settle_s", []))
        rows.append(f"| {name} | {_link_text(sub.get('link', []))} | {layers} | {a.get('frames', 0)} "
                    f"| {a.get('freezes', 0)} (longest {a.get('longest_freeze_s', 0):g} s) "
                    f"| {a.get('audio_frames', 0)} (longest gap {a.get('longest_audio_gap_s', 0):g} s) "
                    f"| {settle} | {a.get('last_height') or '–'} "
                    f"| {_estimation(a, result.get('gauges_missing'))} |")
    header = ("| subscriber | link | time on each layer | frames decoded | freezes > 1 s "
              "| audio frames | layer settled after each change | last height | estimated from |\n"
              + "|---" * 9 + "|")
    chromium = result.get("params", {}).get("viewers") == "chromium"
    decoders = ("freezes and audio gaps from each Chromium page's decoder stats, read every "
                "0.1 s (audio frames are the packets it received)" if chromium else
                "freezes and audio gaps from the decoders' output times")
    notes = [(f"Publisher: {result.get('publisher', 'Chromium simulcast q/h/f')}; "
             f"subscribers: {_viewers_text(chromium)}; "
             f"samples every {result.get('params', {}).get('interval', 0.5)} s from the node's "
             f"debug gauges; {decoders}; a layer settles when it takes the value it keeps "
             "until the next change.")]
    if result.get("gauges_missing"):
        notes.append("The node did not expose its debug gauges (an attached node without "
                     "DOCKCAST_DEBUG_SUBSCRIBER_GAUGES=1): no layer or estimate.")
    return header + "\n" + "\n".join(rows) + "\n\n" + "\n".join(notes)


def _viewers_text(chromium: bool) -> str:
    return ("headless Chromium pages (transport-cc: the node estimates from their feedback "
            "and probes)" if chromium else "aiortc peers (REMB)")


def _estimation(a: dict, gauges_missing: bool | None) -> str:
    """How the node estimated a subscriber: transport-cc (feedbacks, probe clusters) or REMB."""
    if gauges_missing:
        return "–"
    if a.get("transport_cc_feedbacks") is None:
        return "REMB"
    return (f"transport-cc: {a['transport_cc_feedbacks']} feedbacks, "
            f"{a.get('probe_clusters') or 0} probe clusters")


def quality_plot(result: dict, out: pathlib.Path) -> list[str]:
    """``quality.png``: per subscriber the layer, the estimate (and the link's rate) and
    the decoded frames per second over time, freezes shaded (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subs = {n: s for n, s in result.get("subscribers", {}).items() if s.get("samples")}
    if not subs:
        return []
    duration = result.get("params", {}).get("duration", 0)
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for i, (name, sub) in enumerate(subs.items()):
        color = f"C{i}"
        samples = sub["samples"]
        t = [s["t"] for s in samples]
        axes[0].step(t, [_nan(s.get("layer")) for s in samples], where="post", color=color,
                     label=name)
        axes[1].plot(t, [_kbps(s.get("estimate_bps")) for s in samples], color=color, label=f"{name} estimate")
        xs, ys = link_steps(sub.get("link", []), duration)
        if xs:
            axes[1].step(xs, ys, where="post", color=color, linestyle=":", label=f"{name} link")
        axes[2].plot(t, [s.get("fps", 0) for s in samples], color=color, label=name)
        for a, b in (sub.get("analysis") or {}).get("freeze_spans", []):
            axes[2].axvspan(a, b, color=color, alpha=0.15)
    axes[0].set_yticks(sorted(LAYER_NAMES), [LAYER_NAMES[k] for k in sorted(LAYER_NAMES)])
    axes[0].set_ylabel("layer forwarded")
    axes[1].set_ylabel("kbit/s")
    axes[2].set_ylabel("decoded frames/s")
    axes[2].set_xlabel("seconds since the subscriptions")
    axes[0].set_title("Layer chosen per subscriber", fontsize=9, loc="left")
    axes[1].set_title("The node's estimate (solid) and the link's rate (dotted)", fontsize=9, loc="left")
    axes[2].set_title("Decoded video (freezes > 1 s shaded)", fontsize=9, loc="left")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(pathlib.Path(out) / "quality.png", dpi=110)
    plt.close(fig)
    return ["quality.png"]


def link_steps(link: list, duration: float) -> tuple[list[float], list[int]]:
    """A link's schedule as the points of a step plot over ``[0, duration]``: the changes
    before the end (a run shorter than its schedule stops there), then the end."""
    steps = [step for step in link if step[0] < duration or step[0] == 0]
    if not steps:
        return [], []
    return [t for t, _ in steps] + [duration], [kbps for _, kbps in steps] + [steps[-1][1]]


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _kbps(value: Any) -> float:
    return float("nan") if value is None else value / 1000
