"""The VP8/Opus corpus: real encoder output, its cache file, the keyframe check."""

from __future__ import annotations

import pytest

from bench.corpus import Corpus, CorpusParams, generate, load_or_generate
from sfu.vp8 import vp8_is_keyframe

SMALL = CorpusParams(seconds=1.0, width=160, height=96, fps=30, video_bitrate=150_000,
                     keyframe_interval=0.5)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return generate(SMALL)


def test_frames_packets_and_keyframes(corpus):
    frames = corpus.frames("video")
    assert len(frames) == 30
    assert frames[0][0].keyframe and frames[15][0].keyframe
    assert sum(1 for f in frames if f[0].keyframe) == 2
    for i, frame in enumerate(frames):
        assert [p.marker for p in frame] == [False] * (len(frame) - 1) + [True]
        assert {p.frame for p in frame} == {i}
        assert frame[0].timestamp == i * 3000
        assert frame[0].offset == pytest.approx(i / 30)
        assert all(len(p.payload) <= 1300 for p in frame)
    assert len(corpus.audio) == 50
    assert [p.timestamp for p in corpus.audio[:3]] == [0, 960, 1920]


def test_bitrate_is_in_the_requested_range(corpus):
    assert 50_000 < corpus.bitrate("video") < 400_000
    assert 20_000 < corpus.bitrate("audio") < 120_000
    summary = corpus.summary()
    assert summary["video_frames"] == 30 and summary["keyframes"] == 2


def test_save_load_round_trip(corpus, tmp_path):
    path = tmp_path / "c.bin"
    corpus.save(path)
    again = Corpus.load(path)
    assert again.params == corpus.params
    assert again.video == corpus.video and again.audio == corpus.audio


def test_load_refuses_junk(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"not a corpus")
    with pytest.raises(ValueError):
        Corpus.load(path)


def test_load_or_generate_caches_and_repairs(corpus, tmp_path):
    first = load_or_generate(tmp_path, SMALL)
    files = list(tmp_path.glob("corpus-*.bin"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    assert load_or_generate(tmp_path, SMALL).video == first.video
    assert files[0].stat().st_mtime_ns == stamp  # served from the cache
    files[0].write_bytes(files[0].read_bytes()[:100])  # damaged: made again
    assert len(load_or_generate(tmp_path, SMALL).video) == len(first.video)


def test_vp8_keyframe_check():
    # S=1, PID=0, no extension; VP8 payload header P bit 0 = keyframe
    assert vp8_is_keyframe(bytes([0x10, 0x00]))
    assert not vp8_is_keyframe(bytes([0x10, 0x01]))
    assert not vp8_is_keyframe(bytes([0x00, 0x00]))  # not the start of a partition
    # X=1 with a 15-bit picture id
    assert vp8_is_keyframe(bytes([0x90, 0x80, 0x81, 0x23, 0x00]))
    assert not vp8_is_keyframe(bytes([0x90, 0x80, 0x81]))  # truncated
    assert not vp8_is_keyframe(b"")
