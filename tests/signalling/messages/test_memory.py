"""MemoryRoomLog specifics: it matches the model of seq and dedupe, and keeps no
reference to what the caller passed in."""

from __future__ import annotations

import uvloop
from hypothesis import HealthCheck, given, settings

from signalling.messages import MemoryRoomLog

from .support import NO_RETENTION, operations, run_against_model, send


async def test_stored_payload_is_a_copy_of_the_callers():
    log = MemoryRoomLog()
    payload = {"pallets": [1, 2]}
    result = await send(log, "r", "m", payload)
    payload["pallets"].append(3)
    assert result.message.payload == {"pallets": [1, 2]}
    assert [m.payload for m in await log.read("r")] == [{"pallets": [1, 2]}]
    await log.close()


async def test_a_new_memory_log_starts_empty():
    first = MemoryRoomLog()
    await send(first, "r", "m")
    await first.follow("r", "hook")
    second = MemoryRoomLog()
    assert await second.last_seq("r") == 0
    assert await second.follower_cursors("hook") == {}
    await first.close()
    await second.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_memory_log_matches_model(ops):
    async def main():
        log = MemoryRoomLog(NO_RETENTION)
        await run_against_model(log, ops)
        await log.close()

    uvloop.run(main())
