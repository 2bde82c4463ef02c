"""The event loop's lateness, measured on a real loop held up by real blocking calls."""

from __future__ import annotations

import asyncio
import time

import pytest

from dockcast.loop_lag import LoopLag


async def test_a_blocked_loop_shows_and_then_passes():
    lag = LoopLag(interval=0.02, window=0.5)
    lag.start()
    try:
        await asyncio.sleep(0.1)
        time.sleep(0.3)  # the loop is held: the next tick comes at least 0.28 s late
        assert lag.current_ms >= 250  # overdue now, before any tick has run
        await asyncio.sleep(0.05)
        assert lag.current_ms >= 250 and lag.worst_ms >= 250  # the late tick is on record
        await asyncio.sleep(0.8)  # longer than the window, the loop free
        assert lag.current_ms < 250
    finally:
        lag.stop()
    assert lag.current_ms < 250  # stopped: nothing overdue


def test_a_stopped_or_unstarted_monitor_reads_zero_and_bad_settings_are_refused():
    assert LoopLag().current_ms == 0.0
    with pytest.raises(ValueError):
        LoopLag(interval=0)
    with pytest.raises(ValueError):
        LoopLag(interval=1.0, window=0.5)
