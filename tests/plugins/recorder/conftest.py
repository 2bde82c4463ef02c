"""Fixtures of the recorder tests: a writer on a temporary directory that is stopped at
the end, and the segments it reported closed."""

from __future__ import annotations

import pytest

from plugins.recorder import RecordingWriter

from .media import T0


@pytest.fixture
def closed():
    return []


@pytest.fixture
def make_writer(tmp_path, closed):
    writers = []

    def make(**options) -> RecordingWriter:
        options.setdefault("on_segment_closed", closed.append)
        writer = RecordingWriter(tmp_path / "rec-1", "rec-1", started_at=T0, **options)
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        writer.stop(at=T0 + 1000)
