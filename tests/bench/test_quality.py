"""The ``quality`` scenario's parts that need no network: the link schedules, the
command line, a Chromium page's samples turned into the report's series, and the
analysis, table, target and figure from a canned result."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.cli import build_parser, main
from bench.quality import DEFAULT_LINKS, VIEWERS, parse_link, quality
from bench.quality_report import (
    analyse,
    decoder_columns,
    freezes,
    link_steps,
    page_series,
    settle_times,
)
from bench.report import write_report

HEADER = {"scenario": "quality", "command": "dockcast bench quality", "commit": "abc1234",
          "started": "now", "corpus": {}, "options": {"duration": 60, "wan": None},
          "machine": {"cpu_model": "cpu", "cores": 2, "load_avg": [0.1, 0.2, 0.3],
                      "kernel": "k", "python": "3.11", "versions": {}}}


# -- links ----------------------------------------------------------------------------------


def test_a_link_is_a_rate_then_timed_changes():
    link = parse_link("3000@20=300@40=3000")
    assert link.steps == ((0.0, 3000), (20.0, 300), (40.0, 3000))
    assert [link.rate_at(t) for t in (0, 19.5, 20, 39.9, 40, 60)] == [3000, 3000, 300, 300, 3000, 3000]
    assert parse_link("300").steps == ((0.0, 300),)
    assert [parse_link(x).steps[0][1] for x in DEFAULT_LINKS] == [300, 3000, 3000]


@pytest.mark.parametrize("text", ["", "fast", "3000@", "3000@20", "3000@20=300@10=3000",
                                  "3000@0=300", "0", "3000=300"])
def test_a_malformed_link_is_refused_by_name(text):
    with pytest.raises(ValueError, match="link"):
        parse_link(text)


@given(st.text(max_size=30))
def test_any_text_parses_or_raises_value_error(text):
    try:
        link = parse_link(text)
    except ValueError:
        return
    assert link.steps[0][0] == 0 and all(k >= 1 for _, k in link.steps)


# -- the command line -----------------------------------------------------------------------


def test_quality_defaults_to_sixty_seconds_and_three_links():
    args = build_parser().parse_args(["quality"])
    assert args.links == ("300", "3000", "3000@20=300@40=3000")
    assert args.duration is None  # main() makes it 60 for quality, 10 for the others
    args = build_parser().parse_args(["quality", "--duration", "20", "--links", "500, 2000@5=200"])
    assert (args.duration, args.links) == (20.0, ("500", "2000@5=200"))


def test_quality_viewers_are_chromium_unless_aiortc_is_asked():
    assert build_parser().parse_args(["quality"]).viewers == "chromium" == VIEWERS[0]
    assert build_parser().parse_args(["quality", "--viewers", "aiortc"]).viewers == "aiortc"
    assert set(VIEWERS) == {"chromium", "aiortc"}


@pytest.mark.parametrize("argv", [["quality", "--links", "fast"], ["quality", "--links", ","],
                                  ["quality", "--duration", "0"], ["quality", "--viewers", "firefox"]])
def test_bad_quality_options_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "link" in err or "--duration must be positive" in err or "'firefox'" in err


async def test_an_unknown_kind_of_viewer_is_refused_before_anything_starts():
    with pytest.raises(ValueError, match="viewers are one of chromium, aiortc, not 'firefox'"):
        await quality(None, viewers="firefox")


# -- a Chromium page's samples --------------------------------------------------------------


def _page(stall: tuple[float, float] | None = None, seconds: float = 10.0, page_t0: float = 100.0):
    """What `BrowserViewer.samples` gives: every 0.1 s from page time ``page_t0``, 3 more
    frames (30 fps) of height 360 (none during ``stall``, run seconds) and 5 audio packets."""
    out, frames, audio = [], 0, 0
    for i in range(int(seconds * 10) + 1):
        t = round(i / 10, 1)
        if i and not (stall and stall[0] < t <= stall[1]):
            frames += 3
        audio += 5 if i else 0
        out.append((page_t0 + t, frames, 360 if frames else 0, audio))
    return out


def test_page_samples_become_one_entry_per_frame_and_packet_on_the_run_clock():
    video, audio = page_series(_page(), offset=100.0)
    assert len(video) == 300 and len(audio) == 500
    assert video[:3] == [(pytest.approx(0.033, abs=1e-3), 360), (pytest.approx(0.067, abs=1e-3), 360),
                         (0.1, 360)]
    assert video[-1] == (10.0, 360) and audio[-1] == 10.0
    assert [t for t, _ in video] == sorted(t for t, _ in video)
    assert max(b - a for a, b in pairwise(audio)) == pytest.approx(0.02, abs=1e-3)


def test_a_stalled_page_decoder_is_a_freeze_of_the_stall_to_a_tenth_of_a_second():
    video, _ = page_series(_page(stall=(3.0, 4.5)), offset=100.0)
    assert len(video) == 300 - 45
    spans = freezes([t for t, _ in video])
    assert len(spans) == 1
    (start, end), = spans
    assert start == pytest.approx(3.0) and 4.5 < end <= 4.6


def test_page_heights_hold_until_the_stats_name_one_and_a_count_that_falls_adds_nothing():
    samples = [(0.0, 0, 0, 0), (0.1, 2, 0, 1), (0.2, 4, 180, 2), (0.3, 1, 180, 2), (0.4, 3, 720, 3)]
    video, audio = page_series(samples)
    assert [h for _, h in video] == [0, 0, 180, 180, 720, 720]
    assert [t for t, _ in video] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.35, 0.4])
    assert audio == pytest.approx([0.1, 0.2, 0.4])
    assert page_series([]) == ([], [])


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1080), st.integers(0, 4)), max_size=40),
       st.floats(-1e3, 1e3, allow_nan=False))
def test_page_series_of_growing_counts_has_one_entry_per_unit_in_order(steps, offset):
    samples, frames, audio = [], 0, 0
    for i, (more, height, packets) in enumerate(steps):
        frames, audio = frames + more, audio + packets
        samples.append((i * 0.1, frames, height, audio))
    video, heard = page_series(samples, offset)
    assert len(video) == frames and len(heard) == audio
    times = [t for t, _ in video]
    assert times == sorted(times) and heard == sorted(heard)
    if samples:
        assert all(-offset - 1e-3 <= t <= samples[-1][0] - offset + 1e-3 for t in times + heard)


def test_each_node_sample_gets_the_frame_rate_and_height_decoded_up_to_it():
    video = [(round(i / 30, 3), 180 if i < 60 else 720) for i in range(1, 91)]  # 3 s, 720p from 2 s
    samples = [{"t": t} for t in (0.0, 0.5, 1.0, 2.5, 3.5, 4.0)]
    decoder_columns(samples, video, 0.5)
    assert [s["fps"] for s in samples] == [0.0, 30.0, 30.0, 30.0, 0.0, 0.0]
    assert [s["height"] for s in samples] == [None, 180, 180, 720, 720, 720]


# -- the analysis ---------------------------------------------------------------------------


def test_freezes_are_gaps_over_a_second():
    assert freezes([0.0, 0.5, 1.4, 3.0, 3.1, 4.2]) == [(1.4, 3.0), (3.1, 4.2)]
    assert freezes([0.0, 0.5, 1.4, 3.0], since=1.5) == []


def test_settling_is_when_the_layer_takes_the_value_it_keeps():
    layers = [2, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2]
    samples = [{"t": i * 0.5, "layer": layer} for i, layer in enumerate(layers)]
    # changes at 0 (start), 2.5 (down) and 6 (up); the run ends at 10
    assert settle_times(samples, [0.0, 2.5, 6.0], 10.0) == [0.0, 1.0, 0.5]
    assert settle_times([{"t": 0.0, "layer": None}], [0.0], 10.0) == [None]


def _canned() -> dict:
    subs = {}
    for name, link, layer_of, gap in (("s1 (300)", [[0.0, 300]], lambda t: 0, None),
                                      ("s2 (3000)", [[0.0, 3000]], lambda t: 1 if t < 3 else 2, (4.0, 6.0)),
                                      ("s3 (3000@4=300)", [[0.0, 3000], [4.0, 300]],
                                       lambda t: 2 if t < 5 else 0, None)):
        video = [(round(i / 30, 3), 360) for i in range(300)
                 if not (gap and gap[0] < i / 30 < gap[1])]
        samples = [{"t": i * 0.5, "layer": layer_of(i * 0.5), "estimate_bps": 250_000.0 + i * 1000,
                    "budget_bps": 200_000.0, "fps": 30.0, "height": 360, "link_kbps": link[-1][1]}
                   for i in range(21)]
        sub = {"link": link, "samples": samples, "video": video,
               "audio": [i / 50 for i in range(500)]}
        sub["analysis"] = analyse(sub, 10.0, 0.5)
        subs[name] = sub
    return {"scenario": "quality", "params": {"links": ["300", "3000", "3000@4=300"],
                                              "duration": 10.0, "interval": 0.5},
            "systems": {"dockcast": {"label": "Dockcast", "how": "on loopback"}},
            "subscribers": subs, "gauges_missing": False}


def test_analysis_counts_layers_freezes_audio_and_settling():
    a = _canned()["subscribers"]
    fast, changing = a["s2 (3000)"]["analysis"], a["s3 (3000@4=300)"]["analysis"]
    assert fast["seconds_on_layer"] == {"h": 3.0, "f": 7.0}
    assert fast["freezes"] == 1 and fast["longest_freeze_s"] == pytest.approx(2.03, abs=0.05)
    assert a["s1 (300)"]["analysis"]["freezes"] == 0
    assert changing["settle_s"] == [0.0, 1.0]
    assert changing["audio_frames"] == 500 and changing["longest_audio_gap_s"] == 0.02


def test_a_chromium_subscriber_is_analysed_from_its_page_samples_with_its_probes():
    video, audio = page_series(_page(stall=(3.0, 4.5)), offset=100.0)
    samples = [{"t": i * 0.5, "layer": 1, "feedbacks": None if i < 2 else 10.0 * i,
                "probe_clusters": None if i < 2 else float(i // 10)} for i in range(21)]
    decoder_columns(samples, video, 0.5)
    a = analyse({"link": [[0.0, 3000]], "samples": samples, "video": video, "audio": audio}, 10.0, 0.5)
    assert (a["frames"], a["freezes"], a["audio_frames"], a["last_height"]) == (255, 1, 500, 360)
    assert 1.5 < a["longest_freeze_s"] <= 1.6
    assert (a["transport_cc_feedbacks"], a["probe_clusters"]) == (200, 2)
    assert samples[8]["fps"] == 0.0 and samples[4]["fps"] == 30.0  # t=4 stalled, t=2 not


def test_a_video_that_stops_before_the_end_is_frozen_at_the_end():
    sub = {"link": [[0.0, 300]], "samples": [], "video": [(0.0, 180), (0.5, 180)], "audio": []}
    assert analyse(sub, 10.0, 0.5)["freeze_spans"] == [[0.5, 10.0]]


# -- the report -----------------------------------------------------------------------------


def test_the_figure_draws_a_link_only_up_to_the_end_of_the_run():
    link = [[0.0, 3000], [20.0, 300], [40.0, 3000]]
    assert link_steps(link, 60.0) == ([0.0, 20.0, 40.0, 60.0], [3000, 300, 3000, 3000])
    assert link_steps(link, 20.0) == ([0.0, 20.0], [3000, 3000])
    assert link_steps(link, 30.0) == ([0.0, 20.0, 30.0], [3000, 300, 300])
    assert link_steps([], 10.0) == ([], [])


def test_the_report_has_a_row_per_subscriber_a_target_and_the_figure(tmp_path):
    data = write_report(tmp_path, HEADER, [_canned()])
    assert data["plots"] == ["quality.png"]
    assert (tmp_path / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "summary.md").read_text()
    assert "| s2 (3000) | 3000 kbit/s | f 7 s, h 3 s | 241 | 1 (longest 2 s) |" in text
    assert "| s3 (3000@4=300) | 3000 kbit/s → 300 kbit/s at 4 s |" in text
    assert "| 360 | REMB |" in text and "subscribers: aiortc peers (REMB)" in text
    assert "![quality.png](quality.png)" in text
    target = next(r for r in data["targets"] if r["target"].startswith("Quality"))
    assert target["pass"] is False and target["values"]["dockcast"] == pytest.approx(2.03, abs=0.05)
    assert json.loads((tmp_path / "results.json").read_text())["results"][0]["scenario"] == "quality"


def test_with_chromium_viewers_the_table_gives_feedbacks_and_probe_clusters(tmp_path):
    result = _canned()
    result["params"]["viewers"] = "chromium"
    for i, s in enumerate(result["subscribers"]["s2 (3000)"]["samples"]):
        s["feedbacks"], s["probe_clusters"] = 20.0 * i, float(i // 5)
    for sub in result["subscribers"].values():
        sub["analysis"] = analyse(sub, 10.0, 0.5)
    write_report(tmp_path, HEADER, [result])
    text = (tmp_path / "summary.md").read_text()
    assert "| 360 | transport-cc: 400 feedbacks, 4 probe clusters |" in text
    assert "subscribers: headless Chromium pages (transport-cc" in text
    assert "decoder stats, read every 0.1 s" in text


def test_without_the_node_gauges_the_report_says_so(tmp_path):
    result = _canned()
    result["gauges_missing"] = True
    write_report(tmp_path, HEADER, [result])
    assert "did not expose its debug gauges" in (tmp_path / "summary.md").read_text()
