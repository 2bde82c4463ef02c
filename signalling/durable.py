"""Durable SQLite files: private permissions, WAL with ``synchronous=FULL``, group commit.

A `DurableDb` owns one SQLite file through two connections:

- a writer thread with its own connection runs write jobs. The jobs queued while a
  transaction commits run together in the next transaction (group commit): one fsync
  serves the whole batch, and a job's future resolves only after ``COMMIT`` returned,
  so an answered write is on disk. Each job runs inside a savepoint: a job that raises
  leaves no trace and does not disturb the other jobs of its batch.
- a reader thread with a second connection runs read jobs, each in one read
  transaction (a consistent snapshot). In WAL mode readers see every committed
  transaction and never wait for the writer.

The file is created 0600 in a 0700 directory (the directory is tightened to 0700 when
it is looser and ours). Every store of the node (room messages, shipments, webhook
deliveries) uses this, so they share one set of durability rules.

    DurableDbError
    ├── StoreUnavailable   the disk or the database failed; the batch was rolled back (unavailable)
    └── StoreClosed        the database was closed (unavailable)
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import stat
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import FixedCodeError

__all__ = ["DurableDb", "DurableDbError", "StoreUnavailable", "StoreClosed"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]


class DurableDbError(FixedCodeError):
    code = "unavailable"


class StoreUnavailable(DurableDbError):
    """The database or the disk failed; nothing of the failed batch was kept."""


class StoreClosed(DurableDbError):
    """The database was closed."""


@dataclass(slots=True)
class _WriteJob:
    fn: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


_STOP = object()


def _prepare_private_file(path: Path) -> None:
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = parent.stat()
    if st.st_mode & 0o077 and st.st_uid == os.getuid():
        os.chmod(parent, 0o700)
        log.info("tightened %s to 0700", parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


# Primary SQLite result codes that mean the store, not the query, failed: BUSY, LOCKED,
# NOMEM, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
_STORE_FAILURES = frozenset({5, 6, 7, 10, 11, 13, 14, 15, 26})


def _as_store_failure(exc: BaseException) -> BaseException:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in _STORE_FAILURES:
        return StoreUnavailable(str(exc))
    return exc


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are opened explicitly, never implicitly.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class DurableDb:
    """One SQLite file with a group-committing writer thread and a reader thread.

    ``schema`` is a list of idempotent statements (``CREATE TABLE IF NOT EXISTS``...)
    run in one transaction at open. ``version`` is stored as ``user_version``; a file
    written by a newer version is refused rather than misread.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        schema: Sequence[str] = (),
        *,
        version: int = 1,
        name: str = "db",
        max_batch: int = 1024,
    ) -> None:
        self.path = Path(path)
        self._max_batch = max_batch
        _prepare_private_file(self.path)
        conn = _connect(self.path)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreUnavailable(f"{self.path}: cannot use WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found > version:
                raise StoreUnavailable(
                    f"{self.path}: written by a newer version (schema {found} > {version})"
                )
            conn.execute("BEGIN IMMEDIATE")
            for statement in schema:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={int(version)}")
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            conn.close()
            # "file is not a database", "database disk image is malformed": say which file
            raise StoreUnavailable(
                f"{self.path}: cannot open the database ({exc}); it is corrupt or not a "
                "SQLite file: restore it from a backup or move it away") from exc
        except BaseException:
            conn.close()
            raise
        self._writer_conn = conn
        self._reader_conn = _connect(self.path)
        self._reader_conn.execute("PRAGMA query_only=ON")
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self.commits = 0
        """Transactions committed so far (each one carried a batch of writes)."""
        self._reader = ThreadPoolExecutor(1, thread_name_prefix=f"{name}-reader")
        self._writer = threading.Thread(target=self._write_loop, name=f"{name}-writer", daemon=True)
        self._writer.start()

    @property
    def closed(self) -> bool:
        return self._closed

    async def write(self, fn: Job[T]) -> T:
        """Run ``fn(conn)`` in the writer thread; return its result once committed.

        ``fn`` must not commit or roll back. If it raises, its writes are undone and the
        exception is raised here; the other jobs of the batch are not affected.
        """
        if self._closed:
            raise StoreClosed(f"{self.path} is closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_WriteJob(fn, loop, future))
        return await future

    async def read(self, fn: Job[T]) -> T:
        """Run ``fn(conn)`` in the reader thread, inside one read transaction."""
        if self._closed:
            raise StoreClosed(f"{self.path} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._reader, self._run_read, fn)

    async def close(self) -> None:
        """Finish the queued writes, then close both connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.to_thread(self._writer.join)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._reader, self._reader_conn.close)
        self._reader.shutdown(wait=True)

    # -- reader thread --------------------------------------------------------------

    def _run_read(self, fn: Job[T]) -> T:
        conn = self._reader_conn
        conn.execute("BEGIN")
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            failure = _as_store_failure(exc)
            if failure is exc:
                raise
            raise failure from exc
        finally:
            conn.execute("COMMIT")

    # -- writer thread --------------------------------------------------------------

    def _write_loop(self) -> None:
        conn = self._writer_conn
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            try:
                self._run_batch(conn, batch)
            except BaseException as exc:  # noqa: BLE001 - the writer must outlive any batch
                # A job that ended the transaction itself, a savepoint that failed: refuse
                # the batch, roll back what is left, and keep serving the next one.
                log.exception("%s: write batch of %d broke the writer's transaction", self.path,
                              len(batch))
                self._fail(batch, exc)
        # Jobs queued after the stop marker (a write racing close()) are refused.
        leftovers = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                leftovers.append((item, StoreClosed(f"{self.path} is closed"), False))
        self._settle(leftovers)
        conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_WriteJob]) -> None:
        outcomes: list[tuple[_WriteJob, Any, bool]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._fail(batch, exc)
            return
        for index, job in enumerate(batch):
            conn.execute("SAVEPOINT job")
            try:
                value = job.fn(conn)
            except Exception as exc:  # noqa: BLE001 - delivered to the job's caller
                if not conn.in_transaction:
                    # SQLite rolled the whole transaction back (disk full, I/O error).
                    self._fail(batch, exc)
                    return
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((job, _as_store_failure(exc), False))
                continue
            conn.execute("RELEASE job")
            outcomes.append((job, value, True))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._fail(batch, exc)
            return
        self.commits += 1
        self._settle(outcomes)

    def _fail(self, batch: list[_WriteJob], exc: BaseException) -> None:
        try:
            if self._writer_conn.in_transaction:
                self._writer_conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("%s: rollback failed", self.path)
        log.error("%s: write batch of %d failed: %s", self.path, len(batch), exc)
        error = StoreUnavailable(f"{self.path}: {exc}")
        self._settle([(job, error, False) for job in batch])

    @staticmethod
    def _settle(outcomes: list[tuple[_WriteJob, Any, bool]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for job, value, ok in outcomes:
            by_loop.setdefault(job.loop, []).append((job.future, value, ok))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # the caller's loop is closed: nobody is waiting
                pass


def _resolve(items: list[tuple[asyncio.Future, Any, bool]]) -> None:
    for future, value, ok in items:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
