"""Retention: the rule (`retention_cut`, a pure function), each limit against both
backends, cursors of members and followers holding messages back, and a property: the
memory and the SQLite backend keep exactly the same messages."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalling.messages import (
    MemoryRoomLog,
    RetentionPolicy,
    RoomLog,
    SqliteRoomLog,
    retention_cut,
)

from .support import fill, make_log, send

# -- the rule ------------------------------------------------------------------------------

FACTS = {"last_seq": 10, "lowest_cursor": None, "first_young_seq": None, "bytes_cut_seq": 0}


@pytest.mark.parametrize(
    "policy, facts, cut",
    [
        (RetentionPolicy(None, None, None), {}, 0),
        (RetentionPolicy(100, None, None), {"first_young_seq": 4}, 3),
        (RetentionPolicy(100, None, None), {"first_young_seq": None}, 10),  # all are old
        (RetentionPolicy(None, 3, None), {}, 7),
        (RetentionPolicy(None, 30, None), {}, 0),
        (RetentionPolicy(None, None, 50), {"bytes_cut_seq": 6}, 6),
        (RetentionPolicy(100, 3, 50), {"first_young_seq": 3, "bytes_cut_seq": 5}, 7),  # the most
        (RetentionPolicy(None, 0, None), {"lowest_cursor": 4}, 4),
        (RetentionPolicy(None, 0, None), {"lowest_cursor": 0}, 0),
        (RetentionPolicy(None, 0, None, drop_unacked=True), {"lowest_cursor": 0}, 10),
        (RetentionPolicy(None, 8, None), {"lowest_cursor": 9}, 2),  # a cursor never raises it
        # A fact whose limit is off is not read.
        (RetentionPolicy(None, None, None), {"first_young_seq": 9, "bytes_cut_seq": 9}, 0),
    ],
)
def test_retention_cut(policy, facts, cut):
    assert retention_cut(policy, **{**FACTS, **facts}) == cut


def test_young_since():
    assert RetentionPolicy(max_age_s=60).young_since(1000.0) == 940.0
    assert RetentionPolicy(max_age_s=None).young_since(1000.0) is None


# -- each limit, against both backends -------------------------------------------------------


async def test_prune_by_age(kind, tmp_path):
    log = make_log(kind, tmp_path, RetentionPolicy(max_age_s=100, max_messages=None, max_bytes=None))
    await fill(log, "r", 10, start_ts=1000)  # ts 1000..1009
    assert await log.prune(now=1105.5) == {"r": 6}  # ts < 1005.5 go
    assert [m.seq for m in await log.read("r")] == [7, 8, 9, 10]
    assert await log.first_seq("r") == 7
    assert await log.prune(now=1105.5) == {}
    await log.close()


async def test_prune_by_count(kind, tmp_path):
    log = make_log(kind, tmp_path, RetentionPolicy(max_age_s=None, max_messages=3, max_bytes=None))
    await fill(log, "a", 10)
    await fill(log, "b", 2)
    assert await log.prune(now=0) == {"a": 7}
    assert [m.seq for m in await log.read("a")] == [8, 9, 10]
    assert len(await log.read("b")) == 2
    await log.close()


async def test_prune_by_bytes(kind, tmp_path):
    # Each payload is bin 8 of 100 bytes: 102 bytes once encoded.
    log = make_log(kind, tmp_path, RetentionPolicy(max_age_s=None, max_messages=None, max_bytes=350))
    await fill(log, "r", 6, size=100)
    assert await log.prune(now=0) == {"r": 3}
    assert [m.seq for m in await log.read("r")] == [4, 5, 6]
    await log.close()


async def test_prune_keeps_what_a_member_has_not_acked(kind, tmp_path):
    log = make_log(kind, tmp_path, RetentionPolicy(max_age_s=0, max_messages=0, max_bytes=0))
    await fill(log, "r", 10)
    await log.ack("r", "fast", 9)
    await log.ack("r", "slow", 4)
    assert await log.prune(now=10**9) == {"r": 4}
    assert [m.seq for m in await log.read("r")] == [5, 6, 7, 8, 9, 10]
    await log.remove_member("r", "slow")
    assert await log.prune(now=10**9) == {"r": 5}
    await log.remove_member("r", "fast")
    assert await log.prune(now=10**9) == {"r": 1}
    assert await log.read("r") == []
    # The room keeps counting after everything went.
    assert await log.last_seq("r") == 10
    assert await log.first_seq("r") == 11
    assert (await send(log, "r", "after")).seq == 11
    await log.close()


async def test_a_member_idle_too_long_no_longer_holds_messages_back(kind, tmp_path):
    day = 24 * 3600.0
    policy = RetentionPolicy(max_age_s=None, max_messages=0, max_bytes=None, member_idle_s=7 * day)
    log = make_log(kind, tmp_path, policy)
    await log.add_member("r", "gone", now=0.0)  # joined, never acked, never came back
    await log.add_member("r", "active", now=0.0)
    await fill(log, "r", 5)
    await log.ack("r", "active", 2, now=6 * day)
    assert await log.prune(now=6 * day) == {}  # "gone" (cursor 0) still holds everything
    assert await log.prune(now=7 * day + 1) == {"r": 2}  # "gone" expired; "active" holds 3..5
    assert await log.members("r") == {"active": 2}
    await log.add_member("r", "active", now=8 * day)  # a rejoin touches the cursor too
    assert await log.prune(now=14 * day) == {}
    assert await log.members("r") == {"active": 2}
    assert await log.prune(now=15 * day + 1) == {"r": 3}
    assert await log.members("r") == {}
    await log.close()


async def test_new_member_does_not_hold_back_old_messages(kind, tmp_path):
    log = make_log(kind, tmp_path, RetentionPolicy(max_age_s=None, max_messages=0, max_bytes=None))
    await fill(log, "r", 5)
    await log.add_member("r", "late")
    assert await log.prune(now=0) == {"r": 5}
    await log.close()


async def test_drop_unacked_ignores_cursors(kind, tmp_path):
    policy = RetentionPolicy(max_age_s=None, max_messages=2, max_bytes=None, drop_unacked=True)
    log = make_log(kind, tmp_path, policy)
    await fill(log, "r", 5)
    await log.ack("r", "slow", 1)
    assert await log.prune(now=0) == {"r": 3}
    await log.close()


async def test_pruned_msg_id_is_forgotten(kind, tmp_path):
    log = make_log(kind, tmp_path, RetentionPolicy(max_age_s=None, max_messages=1, max_bytes=None))
    await send(log, "r", "old")
    await send(log, "r", "new")
    await log.prune(now=0)
    assert (await send(log, "r", "new")).duplicate is True
    assert (await send(log, "r", "old")).seq == 3  # dedupe lasts as long as retention
    await log.close()


@pytest.mark.parametrize(
    "cursors, drop_unacked, first_kept",
    [
        ({"follower hook": 3, "member bob": 8}, False, 4),
        ({"follower hook": 8, "member bob": 3}, False, 4),
        ({"follower hook": 6, "follower other": 7}, False, 7),
        ({"follower hook": 10}, False, 11),
        ({"follower hook": 3, "member bob": 8}, True, 11),
    ],
)
async def test_follower_cursors_hold_messages_back_like_member_cursors(
    kind, tmp_path, cursors, drop_unacked, first_kept
):
    policy = RetentionPolicy(max_age_s=0, max_messages=0, max_bytes=0, drop_unacked=drop_unacked)
    log = make_log(kind, tmp_path, policy)
    await fill(log, "r", 10)
    for holder, seq in cursors.items():
        what, name = holder.split()
        await (log.follower_ack if what == "follower" else log.ack)("r", name, seq)
    await log.prune(now=10**9)
    assert await log.first_seq("r") == first_kept
    # A cursor stays where it was, even before first_seq (drop_unacked).
    assert await log.follower_cursors("hook") == {"r": (cursors["follower hook"], 10)}
    for holder in cursors:
        what, name = holder.split()
        await (log.unfollow if what == "follower" else log.remove_member)("r", name)
    await log.prune(now=10**9)
    assert await log.read("r") == []  # once unfollowed, nothing is held back
    await log.close()


async def test_new_follower_does_not_hold_back_old_messages(kind, tmp_path):
    log = make_log(kind, tmp_path, RetentionPolicy(max_age_s=None, max_messages=0, max_bytes=None))
    await fill(log, "r", 5)
    assert await log.follow("r", "hook") == 5
    assert await log.prune(now=0) == {"r": 5}
    await send(log, "r", "new")
    assert await log.prune(now=0) == {}  # the follower has not acked 6
    await log.close()


@pytest.mark.parametrize("bad", [{"max_age_s": -1}, {"max_messages": -5}, {"max_bytes": True},
                                 {"member_idle_s": -1.0}])
def test_retention_policy_refuses_bad_limits(bad):
    with pytest.raises(ValueError):
        RetentionPolicy(**bad)


# -- property: both backends keep the same messages ---------------------------------------

policies = st.builds(
    RetentionPolicy,
    max_age_s=st.none() | st.integers(0, 60),
    max_messages=st.none() | st.integers(0, 4),
    max_bytes=st.none() | st.integers(0, 30),
    drop_unacked=st.booleans(),
)
ROOMS = st.sampled_from("ab")
NAMES = st.sampled_from("xy")
SEQS = st.integers(0, 8)
append = st.tuples(st.just("append"), ROOMS, st.integers(0, 9), st.integers(0, 12), st.integers(0, 100))
prune = st.tuples(st.just("prune"), st.integers(0, 160))
steps = st.lists(
    st.one_of(
        append,
        append,
        append,
        prune,
        prune,
        st.tuples(st.sampled_from(["ack", "follower_ack"]), ROOMS, NAMES, SEQS),
        st.tuples(st.sampled_from(["add_member", "follow", "remove_member", "unfollow"]), ROOMS, NAMES),
    ),
    max_size=50,
)


async def apply(log: RoomLog, step: tuple):
    """Run one step; return what it answered, or the type of the error it raised."""
    op, *args = step
    try:
        if op == "append":
            room, n, size, ts = args
            return (await log.append(room, f"id{n}", "s", "t", b"x" * size, float(ts))).seq
        return await getattr(log, op)(*args)
    except Exception as exc:  # noqa: BLE001 - compared between backends
        return type(exc)


async def state(log: RoomLog) -> dict:
    """What each room retains, and every cursor of members and followers."""
    return {
        "retained": {room: [m.seq for m in await log.read(room, limit=100)] for room in "ab"},
        "members": {room: await log.members(room) for room in "ab"},
        "followers": {name: await log.follower_cursors(name) for name in "xy"},
    }


def lowest_cursors(seen: dict) -> dict[str, int]:
    """The lowest cursor of each room that has one, of members and followers."""
    lowest: dict[str, int] = {}
    for room, members in seen["members"].items():
        for cursor in members.values():
            lowest[room] = min(lowest.get(room, cursor), cursor)
    for rooms in seen["followers"].values():
        for room, (cursor, _last) in rooms.items():
            lowest[room] = min(lowest.get(room, cursor), cursor)
    return lowest


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies, steps=steps)
def test_memory_and_sqlite_keep_the_same_messages(policy, steps):
    async def main(directory):
        memory = MemoryRoomLog(policy)
        sqlite = SqliteRoomLog(Path(directory) / "messages.db", policy)
        try:
            seen = await state(memory)
            for step in steps:
                before = seen
                answers = [await apply(memory, step), await apply(sqlite, step)]
                assert answers[0] == answers[1], step
                seen = await state(memory)
                assert seen == await state(sqlite), step
                if step[0] == "prune" and not policy.drop_unacked:
                    # What a cursor had not acked is still there.
                    for room, lowest in lowest_cursors(before).items():
                        unacked = [seq for seq in before["retained"][room] if seq > lowest]
                        assert set(unacked) <= set(seen["retained"][room]), (room, step)
        finally:
            await memory.close()
            await sqlite.close()

    with tempfile.TemporaryDirectory() as directory:
        uvloop.run(main(directory))
