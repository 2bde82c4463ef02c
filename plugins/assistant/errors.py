"""The errors of ``plugins.assistant`` (the tree is drawn in the package docstring)."""

from __future__ import annotations

from signalling.errors import FixedCodeError

__all__ = ["AssistantError", "BadAsk", "BadPhoto", "EncoderUnavailable", "ImageModelUnavailable",
           "IntentsError", "SpeechUnavailable", "TranslationFailed"]


class AssistantError(FixedCodeError, ValueError):
    """Base of this package's errors; the message names the file, option or field."""

    code = "internal"


class IntentsError(AssistantError):
    """An intents file that cannot be used: unreadable, not JSON, a bad shape or name."""


class EncoderUnavailable(AssistantError):
    """The sentence encoder cannot be loaded (its package is not installed, or broken)."""


class BadAsk(AssistantError):
    """An ``assistant.ask`` payload without usable ``text`` or with a bad ``shipment_id``."""

    code = "bad_request"


class SpeechUnavailable(AssistantError):
    """The captions' speech model cannot be loaded (faster-whisper or the packaged
    Whisper weights missing or broken)."""

    code = "unavailable"


class TranslationFailed(AssistantError):
    """The configured translation endpoint did not answer with a translation."""

    code = "unavailable"


class BadPhoto(AssistantError):
    """A photo or still that cannot be used: not base64, too large, not a picture."""

    code = "bad_request"


class ImageModelUnavailable(AssistantError):
    """The image model cannot be loaded: its package is not installed, or its weights
    file is not the EfficientNet-Lite0 file ``image_model`` reads."""

    code = "unavailable"
