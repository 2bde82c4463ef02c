"""DurableDb: group commit, per-job isolation, private files, schema versions."""

from __future__ import annotations

import asyncio
import sqlite3
import stat

import pytest

from signalling.durable import DurableDb, StoreClosed, StoreUnavailable

SCHEMA = ["CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"]


def insert(k: str, v: int):
    def job(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, v))
        return v

    return job


def count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM t").fetchone()[0]


@pytest.fixture
async def db(tmp_path):
    database = DurableDb(tmp_path / "db" / "t.db", SCHEMA)
    yield database
    await database.close()


async def test_write_then_read_sees_it(db):
    assert await db.write(insert("a", 1)) == 1
    assert await db.read(count) == 1


async def test_concurrent_writes_share_transactions(db):
    before = db.commits
    results = await asyncio.gather(*(db.write(insert(f"k{i}", i)) for i in range(500)))
    assert results == list(range(500))
    assert await db.read(count) == 500
    assert 1 <= db.commits - before < 100  # group commit: far fewer transactions than writes


async def test_a_failing_job_leaves_no_trace_and_spares_its_batch(db):
    def half_then_fail(conn):
        conn.execute("INSERT INTO t (k, v) VALUES ('half', 0)")
        raise ValueError("refused")

    results = await asyncio.gather(
        db.write(insert("before", 1)),
        db.write(half_then_fail),
        db.write(insert("before", 2)),  # primary key clash: this job alone fails
        db.write(insert("after", 3)),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[3] == 3
    assert isinstance(results[1], ValueError)
    assert isinstance(results[2], sqlite3.IntegrityError)
    keys = await db.read(lambda conn: [r[0] for r in conn.execute("SELECT k FROM t ORDER BY k")])
    assert keys == ["after", "before"]


async def test_close_finishes_queued_writes_then_refuses(tmp_path):
    path = tmp_path / "t.db"
    db = DurableDb(path, SCHEMA)
    pending = [asyncio.ensure_future(db.write(insert(f"k{i}", i))) for i in range(50)]
    await asyncio.sleep(0)
    await db.close()
    assert await asyncio.gather(*pending) == list(range(50))
    with pytest.raises(StoreClosed):
        await db.write(insert("late", 0))
    with pytest.raises(StoreClosed):
        await db.read(count)
    reopened = DurableDb(path, SCHEMA)
    assert await reopened.read(count) == 50
    await reopened.close()


async def test_files_are_private_and_wal_full(tmp_path):
    directory = tmp_path / "fresh"
    db = DurableDb(directory / "t.db", SCHEMA)
    await db.write(insert("a", 1))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert sorted(p.name for p in directory.iterdir()) == ["t.db", "t.db-shm", "t.db-wal"]
    for file in directory.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert await db.write(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
    assert await db.write(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 2  # FULL
    await db.close()


async def test_loose_directory_is_tightened(tmp_path):
    directory = tmp_path / "loose"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    db = DurableDb(directory / "t.db", SCHEMA)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    await db.close()


async def test_reader_is_read_only(db):
    with pytest.raises(sqlite3.OperationalError):
        await db.read(insert("x", 1))


async def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "t.db"
    db = DurableDb(path, SCHEMA, version=3)
    await db.close()
    with pytest.raises(StoreUnavailable, match="newer version"):
        DurableDb(path, SCHEMA, version=2)


async def test_failed_commit_fails_the_batch(tmp_path):
    # A deferred foreign key check fails at COMMIT: the whole batch is refused.
    schema = [
        "CREATE TABLE IF NOT EXISTS p (id INTEGER PRIMARY KEY)",
        "CREATE TABLE IF NOT EXISTS c (p INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED)",
    ]
    db = DurableDb(tmp_path / "fk.db", schema)
    good = db.write(lambda conn: conn.execute("INSERT INTO p (id) VALUES (1)").rowcount)
    bad = db.write(lambda conn: conn.execute("INSERT INTO c (p) VALUES (99)").rowcount)
    results = await asyncio.gather(good, bad, return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert await db.read(lambda conn: conn.execute("SELECT COUNT(*) FROM p").fetchone()[0]) == 0
    await db.close()


async def test_a_job_that_breaks_the_transaction_fails_its_batch_and_the_writer_serves_on(tmp_path):
    db = DurableDb(tmp_path / "t.db", SCHEMA)
    await db.write(insert("kept", 1))

    def rogue(conn):  # ends the transaction itself: its savepoint is gone
        conn.execute("INSERT INTO t (k, v) VALUES ('rogue', 2)")
        conn.execute("COMMIT")

    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(db.write(rogue), 5)
    # the writer thread is alive: the next write is answered, nothing stored is lost
    assert await asyncio.wait_for(db.write(insert("after", 3)), 5) == 3
    keys = await db.read(lambda conn: [r[0] for r in conn.execute("SELECT k FROM t ORDER BY v")])
    assert keys[0] == "kept" and keys[-1] == "after"
    await db.close()


async def test_disk_full_answers_unavailable_and_keeps_what_was_stored(tmp_path):
    db = DurableDb(tmp_path / "t.db", SCHEMA)
    for i in range(20):
        await db.write(insert(f"k{i}", i))
    pages = await db.write(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
    # the store may not grow any more: as a full disk refuses new pages
    await db.write(lambda conn: conn.execute(f"PRAGMA max_page_count={pages}").fetchone())

    def big(conn):
        conn.execute("INSERT INTO t (k, v) VALUES (?, 0)", ("x" * 200_000,))

    with pytest.raises(StoreUnavailable, match="full"):
        await db.write(big)
    assert await db.read(count) == 20
    assert await db.write(lambda conn: conn.execute("UPDATE t SET v = v + 1 WHERE k = 'k0'").rowcount) == 1
    await db.close()
    again = DurableDb(tmp_path / "t.db", SCHEMA)  # reopens intact
    assert await again.read(lambda conn: conn.execute("PRAGMA integrity_check").fetchone()[0]) == "ok"
    assert await again.read(count) == 20
    await again.close()


@pytest.mark.parametrize("garbage", [b"this is not a database" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_corrupt_file_is_a_clear_error_at_open(tmp_path, garbage):
    path = tmp_path / "t.db"
    path.write_bytes(garbage)
    with pytest.raises(StoreUnavailable, match="corrupt or not a SQLite file"):
        DurableDb(path, SCHEMA)
    assert path.read_bytes() == garbage  # left as it was, for the operator
