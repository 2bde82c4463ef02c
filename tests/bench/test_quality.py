"""The ``quality`` scenario's parts that need no network: the link schedules, the
command line, and the analysis, table, target and figure from a canned result."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.cli import build_parser, main
from bench.quality import DEFAULT_LINKS, parse_link
from bench.quality_report import analyse, freezes, settle_times
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


@pytest.mark.parametrize("argv", [["quality", "--links", "fast"], ["quality", "--links", ","],
                                  ["quality", "--duration", "0"]])
def test_bad_quality_options_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "link" in err or "--duration must be positive" in err


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


def test_a_video_that_stops_before_the_end_is_frozen_at_the_end():
    sub = {"link": [[0.0, 300]], "samples": [], "video": [(0.0, 180), (0.5, 180)], "audio": []}
    assert analyse(sub, 10.0, 0.5)["freeze_spans"] == [[0.5, 10.0]]


# -- the report -----------------------------------------------------------------------------


def test_the_report_has_a_row_per_subscriber_a_target_and_the_figure(tmp_path):
    data = write_report(tmp_path, HEADER, [_canned()])
    assert data["plots"] == ["quality.png"]
    assert (tmp_path / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "summary.md").read_text()
    assert "| s2 (3000) | 3000 kbit/s | f 7 s, h 3 s | 241 | 1 (longest 2 s) |" in text
    assert "| s3 (3000@4=300) | 3000 kbit/s → 300 kbit/s at 4 s |" in text
    assert "![quality.png](quality.png)" in text
    target = next(r for r in data["targets"] if r["target"].startswith("Quality"))
    assert target["pass"] is False and target["values"]["dockcast"] == pytest.approx(2.03, abs=0.05)
    assert json.loads((tmp_path / "results.json").read_text())["results"][0]["scenario"] == "quality"


def test_without_the_node_gauges_the_report_says_so(tmp_path):
    result = _canned()
    result["gauges_missing"] = True
    write_report(tmp_path, HEADER, [result])
    assert "did not expose its debug gauges" in (tmp_path / "summary.md").read_text()
