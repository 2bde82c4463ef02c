"""Whisper base loaded from its two packages with the hub offline, on espeak-ng speech."""

from __future__ import annotations

import os

import pytest

from plugins.assistant import speech
from plugins.assistant.errors import SpeechUnavailable

from .media import ERROR_LIMIT, error_rate, samples


def test_the_model_files_come_from_the_packages_joined_in_memory():
    files = speech.model_files()
    assert set(files) == {"config.json", "tokenizer.json", "vocabulary.txt", "model.bin"}
    assert len(files["model.bin"]) == 145_217_532


def test_loading_sets_the_hub_offline(transcriber):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert transcriber.languages == ("zh", "en")


def test_english_speech_is_transcribed_and_detected_as_english(transcriber, clips):
    result = transcriber.transcribe(samples(clips["en"]))
    assert result.lang == "en"
    assert error_rate(result.text, "en") <= ERROR_LIMIT["en"], result.text


def test_mandarin_speech_with_the_language_given_is_mostly_heard(transcriber, clips):
    result = transcriber.transcribe(samples(clips["zh"]), "zh")
    assert (result.lang, result.lang_probability) == ("zh", 1.0)
    assert error_rate(result.text, "zh") <= ERROR_LIMIT["zh"], result.text  # robotic Mandarin: see media.py


def test_detection_chooses_only_between_the_configured_languages(transcriber, clips):
    lang, probability = transcriber.detect(samples(clips["zh"]))
    assert lang in ("zh", "en") and 0.0 <= probability <= 1.0


def test_a_language_whisper_lacks_is_refused():
    with pytest.raises(SpeechUnavailable, match="knows no language"):
        speech.WhisperTranscriber(languages=("zh", "xx"))
