"""plugins.assistant.cache: the shipped example vectors match the intents and the encoder."""

from __future__ import annotations

import numpy as np

from plugins.assistant.cache import encoder_id, example_vectors, read_cache, write_cache
from plugins.assistant.intents import load_intents


def test_the_shipped_cache_is_up_to_date(encoder):
    made_by, cached = read_cache()
    texts, _ = load_intents().labelled_phrases()
    assert made_by == encoder_id(encoder), "regenerate: python -m plugins.assistant.cache"
    assert set(texts) <= set(cached), "regenerate: python -m plugins.assistant.cache"
    sample = texts[::20]
    fresh = encoder.encode(sample)
    assert np.allclose(np.stack([cached[t] for t in sample]), fresh, atol=1e-4)


async def test_missing_phrases_are_encoded_and_another_encoders_cache_ignored(tmp_path, encoder):
    path = tmp_path / "cache.npz"
    write_cache(["where is my parcel"], encoder, path)
    vectors = await example_vectors(["where is my parcel", "我的托盘呢"], encoder, path)
    assert vectors.shape == (2, encoder.dim)
    assert np.allclose(vectors[1], encoder.encode(["我的托盘呢"])[0], atol=1e-5)
    # a cache made by another encoder is not used: planted vectors are not returned
    np.savez(path, texts=np.array(["where is my parcel"]), vectors=np.zeros((1, encoder.dim)),
             encoder=np.array("another encoder"))
    [vector] = await example_vectors(["where is my parcel"], encoder, path)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3
    assert (await example_vectors([], encoder, tmp_path / "absent.npz")).shape[0] == 0
