"""The playback page's pure modules (signalling/web/playback/*.js) under ``node --test``:
``tests/web/playback/*.test.mjs``, run the way the console's are."""

from __future__ import annotations

import pathlib

import pytest

from .test_console_units import test_console_units as run_node_tests

HERE = pathlib.Path(__file__).resolve().parent / "playback"


@pytest.mark.parametrize("script", sorted(HERE.glob("*.test.mjs")), ids=lambda p: p.name)
def test_playback_units(script):
    run_node_tests(script)
