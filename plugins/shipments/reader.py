"""`ShipmentsReader`: other plugins read shipment records without touching the store.

The shipments plugin owns its SQLite file and is the only writer. A reader opens the
same file read-only on a connection of its own (WAL: it sees every committed write and
never blocks the writer), in a thread of its own, and reads one shipment at a time in
one read transaction (a consistent snapshot of the record, its history, rooms and
recordings). The assistant uses it to answer questions from the record.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .store import ShipmentDetails, read_details

__all__ = ["SHIPMENTS_DB", "ShipmentsReader"]

SHIPMENTS_DB = "shipments.db"
"""The file's name in the node's data directory (the shipments plugin's default)."""


class ShipmentsReader:
    """Read-only access to the shipments file at ``path``; every method is a coroutine
    except `close`'s cleanup, which is awaited too."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="shipments-reader")
        self._closed = False

    async def details(self, shipment_id: str) -> ShipmentDetails | None:
        """The shipment with its history, rooms and recordings; ``None`` when it does not
        exist (or no shipment was ever stored: the file is not there yet)."""
        if self._closed:
            raise RuntimeError(f"the shipments reader of {self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._read, shipment_id)

    def _read(self, shipment_id: str) -> ShipmentDetails | None:
        if self._conn is None:
            if not self.path.exists():
                return None
            # Opened on first use: the shipments plugin creates the file when it starts.
            self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                         check_same_thread=False, isolation_level=None)
        self._conn.execute("BEGIN")
        try:
            return read_details(self._conn, shipment_id)
        finally:
            self._conn.execute("COMMIT")

    async def close(self) -> None:
        """Close the connection and the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._close_conn)
        self._thread.shutdown(wait=True)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
