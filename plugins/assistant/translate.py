"""Captions translated between Chinese and English by an OpenAI-compatible endpoint.

Off by default: a node translates only when ``translate_url`` is configured (the base
URL of an OpenAI-compatible API, e.g. ``http://127.0.0.1:8000/v1``, or a hosted one;
``POST <url>/chat/completions``) with its key (``translate_key``, or better
``translate_key_env``: the name of an environment variable holding it). The key is sent
as ``Authorization: Bearer`` and never logged nor shown (``repr`` hides it).

`translation_fields` is what a caption carries: ``{"translation": {"lang", "text"}}``
when the endpoint answered, else ``{"translation": None, "translation_unavailable":
True}`` (with ``translation_error`` when it was configured and failed): the node never
guesses a translation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import urllib.error
import urllib.request
from typing import Any

from .errors import AssistantError, TranslationFailed

__all__ = ["LANG_NAMES", "Translator", "translation_fields", "translator_from_options"]

log = logging.getLogger(__name__)

LANG_NAMES = {"zh": "Simplified Chinese", "en": "English"}
_OTHER = {"zh": "en", "en": "zh"}
_MAX_ANSWER_BYTES = 64 * 1024


class Translator:
    """One OpenAI-compatible chat endpoint; `translate` runs the request in a thread."""

    def __init__(self, url: str, key: str | None = None, model: str = "gpt-4o-mini",
                 timeout_s: float = 10.0) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise AssistantError("translate_url must be an http:// or https:// URL")
        self.endpoint = url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout_s = float(timeout_s)
        self._key = key

    def __repr__(self) -> str:
        return f"Translator({self.endpoint!r}, model={self.model!r}, key={'***' if self._key else None})"

    async def translate(self, text: str, source: str, target: str) -> str:
        """``text`` in ``source`` (``zh``/``en``) translated into ``target``; raises
        `TranslationFailed` (the endpoint named, never the key)."""
        return await asyncio.to_thread(self._post, text, source, target)

    def _post(self, text: str, source: str, target: str) -> str:
        body = json.dumps({
            "model": self.model, "temperature": 0,
            "messages": [
                {"role": "system", "content":
                    f"Translate the user's {LANG_NAMES[source]} text into {LANG_NAMES[target]}. "
                    "Answer with the translation only, nothing else."},
                {"role": "user", "content": text}]}).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.endpoint, body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                answer = json.loads(reply.read(_MAX_ANSWER_BYTES + 1)[:_MAX_ANSWER_BYTES])
        except urllib.error.HTTPError as exc:
            raise TranslationFailed(f"{self.endpoint} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TranslationFailed(f"{self.endpoint} did not answer: {reason}") from None
        try:
            translated = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise TranslationFailed(f"{self.endpoint} answered without choices[0].message.content") from None
        if not isinstance(translated, str) or not translated.strip():
            raise TranslationFailed(f"{self.endpoint} answered an empty translation")
        return translated.strip()


def translator_from_options(url: str | None, key: str | None = None, key_env: str | None = None,
                            model: str | None = None, timeout_s: float | None = None) -> Translator | None:
    """The configured translator, or ``None`` (translation off) without a URL."""
    if not url:
        return None
    if key_env:
        key = os.environ.get(key_env)
        if not key:
            raise AssistantError(f"translate_key_env names {key_env}, which is not set")
    options: dict[str, Any] = {}
    if model:
        options["model"] = model
    if timeout_s is not None:
        options["timeout_s"] = timeout_s
    return Translator(url, key, **options)


async def translation_fields(translator: Translator | None, text: str, lang: str) -> dict[str, Any]:
    """The translation fields of a caption in ``lang`` (see the module docstring)."""
    target = _OTHER.get(lang)
    if translator is None or target is None or not text:
        return {"translation": None, "translation_unavailable": True}
    try:
        translated = await translator.translate(text, lang, target)
    except TranslationFailed as exc:
        log.warning("assistant: translation failed: %s", exc)
        return {"translation": None, "translation_unavailable": True, "translation_error": str(exc)}
    return {"translation": {"lang": target, "text": translated}}
