"""Example phrases' embeddings, shipped beside ``intents.json`` so a node starts at once.

Embedding the built-in examples takes a few seconds of a core (about 20 ms each); the
package ships them in ``intents.npz`` (``texts``, ``vectors``, ``encoder``: the encoder's
name and version). `example_vectors` takes a phrase's vector from there when the
encoder is the same, and encodes only the others (a seller's own phrases, or all of
them after the encoder changed). Regenerate the file after editing ``intents.json``::

    .venv/bin/python -m plugins.assistant.cache

(a test fails while it is out of date).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .encoder import Encoder

__all__ = ["CACHE_FILE", "encoder_id", "example_vectors", "read_cache", "write_cache"]

CACHE_FILE = Path(__file__).with_name("intents.npz")


def encoder_id(encoder: Encoder) -> str:
    return f"{encoder.name} {getattr(encoder, 'version', '?')}"


def read_cache(path: Path = CACHE_FILE) -> tuple[str, dict[str, np.ndarray]]:
    """The cache's encoder id and vectors by phrase (empty when there is no file)."""
    if not path.exists():
        return "", {}
    with np.load(path, allow_pickle=False) as data:
        return str(data["encoder"]), dict(zip(data["texts"].tolist(), data["vectors"]))


async def example_vectors(texts: Sequence[str], encoder: Encoder,
                          path: Path = CACHE_FILE) -> np.ndarray:
    """The vectors of ``texts``, from the cache where it was made by this encoder."""
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    made_by, cached = read_cache(path)
    if made_by != encoder_id(encoder):
        cached = {}
    missing = [t for t in dict.fromkeys(texts) if t not in cached]
    if missing:
        cached.update(zip(missing, await encoder.run(missing)))
    return np.stack([cached[t] for t in texts]).astype(np.float32)


def write_cache(texts: Sequence[str], encoder: Encoder, path: Path = CACHE_FILE) -> None:
    """Encode ``texts`` afresh and write them with the encoder's id."""
    unique = list(dict.fromkeys(texts))
    vectors = np.asarray(encoder.encode(unique), dtype=np.float32)
    np.savez_compressed(path, texts=np.array(unique), vectors=vectors,
                        encoder=np.array(encoder_id(encoder)))


def main(argv: Sequence[str] = ()) -> int:
    from .encoder import load_encoder
    from .intents import load_intents

    texts, _ = load_intents().labelled_phrases()
    encoder = load_encoder()
    write_cache(texts, encoder)
    print(f"wrote {len(set(texts))} phrases by {encoder_id(encoder)} to {CACHE_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
