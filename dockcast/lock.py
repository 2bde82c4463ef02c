"""One data directory, one node: an exclusive ``flock`` on ``<data-dir>/node.lock``.

A node holds the lock for its whole life (``dockcast serve`` takes it before it touches
anything in the directory); a second node on the same directory is refused with
:class:`DataDirLockError` naming the holder's pid. The kernel releases the lock with the
process, so a node killed with SIGKILL leaves no stale lock: the file may stay, the lock
does not. The descriptor is not inherited by child processes (``O_CLOEXEC``).
"""

from __future__ import annotations

import fcntl
import os
import pathlib

__all__ = ["DataDirLock", "DataDirLockError", "LOCK_NAME"]

LOCK_NAME = "node.lock"


class DataDirLockError(RuntimeError):
    """Another process holds the data directory."""


class DataDirLock:
    """``lock = DataDirLock(data_dir); lock.acquire()`` ... ``lock.release()``."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = pathlib.Path(data_dir)
        self.path = self.data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (making the directory, 0700, if needed), or raise
        :class:`DataDirLockError` at once if another node holds it."""
        if self._fd is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLockError(
                f"data directory {self.data_dir} is in use by another node (pid {holder}); "
                "one data directory serves one node: stop that node or give another --data-dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (the file stays: removing it would race a node taking it)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
