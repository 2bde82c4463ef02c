"""Which language a question is in: Chinese, English, or both mixed, and which to answer in.

Counted, not guessed by a model: Han characters against Latin words. Identifiers
(``SF1234567890``, ``S-100``: anything with a digit) are neither, so a tracking number
does not make a Chinese question English. A mixed question (``我的 parcel 到哪了``) is
answered in the language with more of the question: two Han characters count as one
English word (a Chinese word is about two characters), and a tie goes to Chinese (an
English word in a Chinese sentence is common in this trade; the reverse is rare).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["LANGS", "Language", "answer_lang", "detect"]

LANGS = ("zh", "en")
"""The languages answers are written in."""

# CJK Unified Ideographs, extension A and compatibility ideographs.
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|[A-Za-z]")
_TOKEN = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class Language:
    """What a question is written in: ``kind`` is ``zh``, ``en``, ``mixed`` or ``none``
    (no Han character and no English word), with the counts behind it."""

    kind: str
    han: int
    words: int

    @property
    def answer(self) -> str:
        """The language to answer in: ``zh`` or ``en`` (``en`` when there is neither)."""
        return "zh" if self.han and self.han >= 2 * self.words else "en"


def _latin_words(text: str) -> int:
    count = 0
    for token in _TOKEN.findall(_HAN.sub(" ", text)):
        if any(ch.isdigit() for ch in token):
            continue  # a tracking number or shipment id, not English
        count += len(_WORD.findall(token))
    return count


def detect(text: str) -> Language:
    """The `Language` of ``text`` (any string; nothing is refused)."""
    han = len(_HAN.findall(text))
    words = _latin_words(text)
    if han and words:
        kind = "mixed"
    elif han:
        kind = "zh"
    elif words:
        kind = "en"
    else:
        kind = "none"
    return Language(kind, han, words)


def answer_lang(text: str) -> str:
    """``zh`` or ``en``: the language to answer ``text`` in."""
    return detect(text).answer
