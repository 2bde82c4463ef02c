"""SqliteRoomLog specifics: what survives a close, a SIGKILL and a schema upgrade, and
the files being private."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import uvloop
from hypothesis import HealthCheck, given, settings

from signalling.messages import RetentionPolicy, SqliteRoomLog
from signalling.messages.sqlite import SCHEMA_VERSION

from .support import DATA, NO_RETENTION, REPO, operations, run_against_model, send


async def test_sqlite_survives_close_and_reopen(tmp_path):
    path = tmp_path / "data" / "messages.db"
    log = SqliteRoomLog(path)
    for i in range(20):
        await send(log, "r", f"m{i}", {"i": i})
    await log.ack("r", "bob", 12)
    await log.close()

    log = SqliteRoomLog(path)
    assert await log.last_seq("r") == 20
    assert [m.payload for m in await log.read("r")] == [{"i": i} for i in range(20)]
    assert await log.cursor("r", "bob") == 12
    assert (await send(log, "r", "m3")).duplicate is True
    assert (await send(log, "r", "m20")).seq == 21
    await log.close()


async def test_sqlite_files_are_private(tmp_path):
    path = tmp_path / "new-dir" / "messages.db"
    log = SqliteRoomLog(path)
    await send(log, "r", "m")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for file in path.parent.iterdir():  # the database, its WAL and shared memory
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    await log.close()


CHILD = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from signalling.messages import SqliteRoomLog

    async def main(path):
        log = SqliteRoomLog(path)

        async def sender(k):
            i = 0
            while True:
                result = await log.append("dock", f"{k}-{i}", "child", "t", {"k": k, "i": i}, time.time())
                os.write(1, f"{result.seq} {k}-{i}\\n".encode())
                i += 1

        await asyncio.gather(*(sender(k) for k in range(16)))

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_sqlite_answered_seqs_survive_sigkill(tmp_path):
    path = tmp_path / "crash" / "messages.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    answered: dict[int, str] = {}
    buffer = b""
    try:
        while len(answered) < 2000:
            chunk = await asyncio.to_thread(os.read, child.stdout.fileno(), 65536)
            assert chunk, "the child died before answering enough appends"
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                seq, msg_id = line.decode().split()
                answered[int(seq)] = msg_id
    finally:
        child.send_signal(signal.SIGKILL)
        rest = await asyncio.to_thread(child.stdout.read)
        child.wait()
    for line in (buffer + rest).split(b"\n")[:-1]:  # answered before it died
        seq, msg_id = line.decode().split()
        answered[int(seq)] = msg_id

    log = SqliteRoomLog(path)
    stored = await log.read("dock", limit=10_000)
    last = await log.last_seq("dock")
    assert [m.seq for m in stored] == list(range(1, last + 1))
    by_seq = {m.seq: m for m in stored}
    for seq, msg_id in answered.items():
        assert by_seq[seq].msg_id == msg_id
        k, i = map(int, msg_id.split("-"))
        assert by_seq[seq].payload == {"k": k, "i": i}
    assert len({m.msg_id for m in stored}) == len(stored)
    await log.close()

async def test_follower_cursors_survive_close_and_reopen(tmp_path):
    path = tmp_path / "messages.db"
    log = SqliteRoomLog(path)
    for i in range(4):
        await send(log, "r", f"m{i}")
    await log.follow("r", "hook")
    await log.follower_ack("q", "hook", 0)
    await log.ack("r", "bob", 1)
    await log.close()

    log = SqliteRoomLog(path)
    assert await log.follower_cursors("hook") == {"r": (4, 4), "q": (0, 0)}
    assert await log.members("r") == {"bob": 1}
    await log.close()


async def test_version_1_file_is_upgraded_and_keeps_everything(tmp_path):
    # data/roomlog-v1.db was written by the SqliteRoomLog of commit 27b37f5 (schema 1):
    # room dock-7 holds m-1..m-3 and bob's cursor at 2; dock-8 holds m-1 and carol at 1.
    path = tmp_path / "messages.db"
    shutil.copyfile(DATA / "roomlog-v1.db", path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    log = SqliteRoomLog(path, NO_RETENTION)
    assert [(m.seq, m.msg_id, m.sender, m.topic, m.payload, m.ts) for m in await log.read("dock-7")] == [
        (1, "m-1", "alice", "note", {"pallet": 4}, 1700000000.5),
        (2, "m-2", "bob", "chat", "清关 ✓", 1700000001.0),
        (3, "m-3", "alice", "photo", b"\x00\xffraw", 1700000002.25),
    ]
    assert [m.payload for m in await log.read("dock-8")] == [[1, [2, {"a": b"x"}]]]
    assert await log.members("dock-7") == {"bob": 2}
    assert await log.members("dock-8") == {"carol": 1}
    assert (await send(log, "dock-7", "m-2", sender="bob")).duplicate is True
    assert (await send(log, "dock-7", "m-4")).seq == 4
    # schema 3: the same msg_id from another sender is its own message
    assert (await send(log, "dock-7", "m-2", sender="alice")).seq == 5
    assert await log.follow("dock-7", "hook") == 5
    await log.close()

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        assert conn.execute("SELECT room, follower, seq FROM follower_cursors").fetchall() == [
            ("dock-7", "hook", 5)
        ]
    log = SqliteRoomLog(path)  # a current file opens again as it is
    assert await log.follower_cursors("hook") == {"dock-7": (5, 5)}
    assert await log.last_seq("dock-7") == 5
    assert (await send(log, "dock-7", "m-2", sender="alice")).seq == 5
    await log.close()


async def test_version_2_file_is_upgraded_to_dedupe_per_sender(tmp_path):
    # data/roomlog-v2.db was written by the SqliteRoomLog of commit 9f41662 (schema 2,
    # msg_id unique per room): dock-7 holds m-1 (alice), m-2 (bob), m-3 (alice), bob's
    # cursor at 3 and follower hook's at 3; dock-8 holds m-1 (carol), carol's cursor at 1.
    path = tmp_path / "messages.db"
    shutil.copyfile(DATA / "roomlog-v2.db", path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    log = SqliteRoomLog(path, NO_RETENTION)
    assert [(m.seq, m.msg_id, m.sender, m.topic, m.payload, m.ts) for m in await log.read("dock-7")] == [
        (1, "m-1", "alice", "note", {"pallet": 4}, 1700000000.5),
        (2, "m-2", "bob", "chat", "清关 ✓", 1700000001.0),
        (3, "m-3", "alice", "photo", b"\x00\xffraw", 1700000002.25),
    ]
    assert [m.payload for m in await log.read("dock-8")] == [[1, [2, {"a": b"x"}]]]
    assert await log.members("dock-7") == {"bob": 3}
    assert await log.members("dock-8") == {"carol": 1}
    assert await log.follower_cursors("hook") == {"dock-7": (3, 3)}
    # the rows of schema 2 still dedupe their own sender's retries ...
    again = await send(log, "dock-7", "m-2", sender="bob")
    assert (again.seq, again.duplicate, again.message.payload) == (2, True, "清关 ✓")
    assert (await send(log, "dock-8", "m-1", sender="carol")).duplicate is True
    # ... and no longer answer another sender with their seq
    theirs = await send(log, "dock-7", "m-2", {"n": 1}, sender="alice")
    assert (theirs.seq, theirs.duplicate, theirs.message.sender) == (4, False, "alice")
    assert (await send(log, "dock-8", "m-1", sender="dave")).seq == 2
    await log.close()

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        indexes = {row[1]: row[2] for row in conn.execute("PRAGMA index_list(messages)")}
        assert "messages_by_msg_id" not in indexes
        assert indexes["messages_by_sender_msg_id"] == 1  # unique
        columns = [row[2] for row in conn.execute("PRAGMA index_info(messages_by_sender_msg_id)")]
        assert columns == ["room", "sender", "msg_id"]
    log = SqliteRoomLog(path, NO_RETENTION)  # a version 3 file opens again as it is
    assert (await send(log, "dock-7", "m-2", sender="alice")).seq == 4
    assert await log.last_seq("dock-7") == 4
    await log.close()


async def test_retention_in_sqlite_deletes_the_rows(tmp_path):
    path = tmp_path / "messages.db"
    log = SqliteRoomLog(path, RetentionPolicy(max_age_s=None, max_messages=1, max_bytes=None))
    for i in range(5):
        await send(log, "r", f"m{i}")
    await log.follower_ack("r", "hook", 2)
    assert await log.prune(now=0) == {"r": 2}
    await log.close()
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT seq FROM messages ORDER BY seq")] == [3, 4, 5]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_sqlite_log_matches_model(ops):
    async def main(directory):
        log = SqliteRoomLog(Path(directory) / "messages.db", NO_RETENTION)
        await run_against_model(log, ops)
        await log.close()
        reopened = SqliteRoomLog(Path(directory) / "messages.db", NO_RETENTION)
        for room in "ab":
            assert [m.seq for m in await reopened.read(room)] == list(
                range(1, await reopened.last_seq(room) + 1)
            )
        await reopened.close()

    with tempfile.TemporaryDirectory() as directory:
        uvloop.run(main(directory))


async def test_cursors_from_before_version_4_are_touched_at_the_first_prune(tmp_path):
    # data/roomlog-v2.db: bob's cursor in dock-7 and carol's in dock-8, with no touch time
    path = tmp_path / "messages.db"
    shutil.copyfile(DATA / "roomlog-v2.db", path)
    day = 24 * 3600.0
    log = SqliteRoomLog(path, RetentionPolicy(max_age_s=None, max_messages=None, max_bytes=None,
                                              member_idle_s=7 * day))
    await log.prune(now=100 * day)  # far later: but nothing says they were idle
    assert await log.members("dock-7") == {"bob": 3}
    await log.prune(now=107 * day + 1)  # now they were, for a week
    assert await log.members("dock-7") == {} and await log.members("dock-8") == {}
    await log.close()
