"""The energy voice detector: utterances from tone bursts, silence and gaps (sans-IO)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.assistant.segmenter import Segmenter

RATE = 16000


def signal(*parts: tuple[str, float]) -> np.ndarray:
    """("tone"|"quiet", seconds)... as one array: a -10 dBFS 300 Hz tone or -70 dBFS noise."""
    rng = np.random.default_rng(0)
    out = []
    for kind, seconds in parts:
        n = int(seconds * RATE)
        if kind == "tone":
            out.append(0.3 * np.sin(2 * np.pi * 300 * np.arange(n) / RATE))
        else:
            out.append(rng.normal(0, 0.0003, n))
    return np.concatenate(out).astype(np.float32)


def run(segmenter: Segmenter, samples: np.ndarray, chunk: int, start: float = 100.0) -> list:
    out = []
    for i in range(0, len(samples), chunk):
        out += segmenter.feed(samples[i:i + chunk], start + i / RATE)
    return out + segmenter.flush()


def test_two_words_separated_by_silence_are_two_utterances_with_their_times():
    audio = signal(("quiet", 0.5), ("tone", 1.0), ("quiet", 1.0), ("tone", 0.6), ("quiet", 1.0))
    first, second = run(Segmenter(), audio, 320)
    assert first.start == pytest.approx(100.5, abs=0.04) and first.end == pytest.approx(101.5, abs=0.04)
    assert second.start == pytest.approx(102.5, abs=0.04) and second.end == pytest.approx(103.1, abs=0.04)
    # the pre-roll and the trailing silence travel with the speech
    assert len(first.samples) / RATE == pytest.approx(0.2 + 1.0 + 0.6, abs=0.05)


def test_a_click_shorter_than_min_speech_is_dropped():
    assert run(Segmenter(), signal(("quiet", 0.5), ("tone", 0.1), ("quiet", 1.0)), 320) == []


def test_a_long_speech_is_cut_at_max_utterance():
    parts = run(Segmenter(max_utterance_s=2.0), signal(("tone", 5.0), ("quiet", 1.0)), 320)
    assert len(parts) == 3 and all(p.seconds <= 2.0 + 1e-9 for p in parts)
    assert parts[1].start == pytest.approx(parts[0].end, abs=0.04)


def test_a_gap_in_time_ends_the_utterance_as_silence_would():
    segmenter = Segmenter()
    tone = signal(("tone", 0.8))
    assert segmenter.feed(tone, 10.0) == []
    # DTX: nothing for 2 s, then speech again
    [ended] = segmenter.feed(tone, 12.8)
    assert ended.end == pytest.approx(10.8, abs=0.04)
    [again] = segmenter.flush()
    assert again.start == pytest.approx(12.8, abs=0.04)


def test_silence_alone_yields_nothing():
    assert run(Segmenter(), signal(("quiet", 3.0)), 480) == []


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 2000), min_size=1, max_size=40))
def test_how_the_samples_are_chunked_does_not_change_the_utterances(sizes):
    audio = signal(("quiet", 0.3), ("tone", 0.7), ("quiet", 0.8), ("tone", 0.5), ("quiet", 0.7))
    reference = run(Segmenter(), audio, len(audio))
    out, pos, segmenter = [], 0, Segmenter()
    while pos < len(audio):
        for size in sizes:
            if pos >= len(audio):
                break
            out += segmenter.feed(audio[pos:pos + size], 100.0 + pos / RATE)
            pos += size
    out += segmenter.flush()
    assert [(round(u.start, 6), round(u.end, 6), len(u.samples)) for u in out] == \
        [(round(u.start, 6), round(u.end, 6), len(u.samples)) for u in reference]


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="segmenter"):
        Segmenter(max_utterance_s=0.1, min_speech_s=0.3)
