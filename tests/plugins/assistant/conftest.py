"""Fixtures of the assistant tests: the sentence encoder, loaded once per session
offline (the hub variables set before loading), and an assistant beside a real
shipments plugin on the recording context."""

from __future__ import annotations

import os

import pytest

from plugins.assistant import AssistantPlugin, E5Encoder
from plugins.assistant.encoder import OFFLINE_ENV
from plugins.shipments import ShipmentsPlugin
from signalling.hooks import HookRegistry


@pytest.fixture(scope="session")
def encoder() -> E5Encoder:
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value
    model = E5Encoder()
    yield model
    model.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_778_000_000.0  # 2026-05-05

    def __call__(self) -> float:
        self.now += 3600.0
        return self.now


@pytest.fixture
async def node(ctx, encoder):
    """Shipments and the assistant started on ``ctx`` (the plugins' registry)."""
    assistant = AssistantPlugin(encoder=encoder)
    registry = HookRegistry([ShipmentsPlugin(clock=Clock()), assistant])
    await registry.start(ctx)
    yield registry
    await registry.stop()


@pytest.fixture(scope="session")
def transcriber():
    """Whisper base from its packages, loaded once per session with the hub offline."""
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value
    from plugins.assistant.speech import WhisperTranscriber

    return WhisperTranscriber()


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict:
    """espeak-ng speech: ``{"en": path, "zh": path}`` (see ``media.SPEECH``)."""
    from .media import speak

    directory = tmp_path_factory.mktemp("speech")
    return {lang: speak(directory, lang) for lang in ("en", "zh")}
