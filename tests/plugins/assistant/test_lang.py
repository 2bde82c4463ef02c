"""plugins.assistant.lang: zh / en / mixed, and the language an answer is written in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.assistant.lang import LANGS, answer_lang, detect


@pytest.mark.parametrize("text, kind, answer", [
    ("我的包裹在哪里？", "zh", "zh"),
    ("Where is my parcel?", "en", "en"),
    ("我的 parcel 到哪了？", "mixed", "zh"),
    ("Where is my 包裹?", "mixed", "en"),
    ("ETA 是什么时候？", "mixed", "zh"),
    ("转 human agent please", "mixed", "en"),
    ("SF1234567890 到了吗", "zh", "zh"),        # a tracking number is not English
    ("S-100?", "none", "en"),
    ("", "none", "en"),
])
def test_detect(text, kind, answer):
    found = detect(text)
    assert (found.kind, found.answer, answer_lang(text)) == (kind, answer, answer)


def test_a_tie_goes_to_chinese():
    # two Han characters weigh one English word
    assert detect("包裹 parcel").answer == "zh"
    assert detect("包 parcel").answer == "en"


@given(st.text(max_size=200))
def test_any_text_has_a_language_to_answer_in(text):
    found = detect(text)
    assert found.kind in ("zh", "en", "mixed", "none")
    assert found.answer in LANGS
    assert (found.kind == "mixed") == bool(found.han and found.words)
