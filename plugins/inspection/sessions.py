"""Inspection sessions: one audit log per room while it records or takes a verdict.

`AuditSessions` owns the open `plugins.audit.AuditLog` of each room and is the only
writer of them. A session opens when a room starts recording or receives a verdict,
and closes when the room closes (``session_closed``, a last checkpoint). Every entry is
appended in the order the node saw it; the file work (a write per entry, an fsync per
checkpoint) runs in a worker thread, one operation at a time per session.

Checkpoints are signed with the node's key (and, with a time-stamping authority
configured, carry its RFC 3161 token: a TSA that fails leaves the checkpoint without
one, never without the checkpoint) and published as `AuditCheckpoint` events
(members, watchers, webhooks): after a segment closes, when a session closes, and every
``checkpoint_interval_s`` while entries wait. At start, sessions a crash left open are
reopened (the log drops a torn tail and says so in ``session_recovered``) and closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plugins.audit import AuditLog, Checkpoint
from signalling.events import AuditCheckpoint
from signalling.errors import NotFound

__all__ = ["AuditSessions", "Session"]

log = logging.getLogger(__name__)


@dataclass
class Session:
    """An open inspection session of ``room``."""

    session_id: str
    room: str
    shipment_id: str | None
    audit: AuditLog
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: int = 0  # entries since the last checkpoint


class AuditSessions:
    """The open sessions, by room; see the module docstring.

    ``publish(event)`` puts an `AuditCheckpoint` on the node's bus; ``clock`` gives unix
    seconds.
    """

    def __init__(self, root: pathlib.Path, signer: Any, publish: Callable[[Any], Any], *,
                 checkpoint_interval_s: float = 10.0, clock: Callable[[], float] = time.time,
                 tsa: Any = None) -> None:
        self.root = pathlib.Path(root)
        self.signer = signer
        self.tsa = tsa  # a plugins.audit.TimestampAuthority: checkpoints get RFC 3161 tokens
        self.publish = publish
        self.checkpoint_interval_s = checkpoint_interval_s
        self.clock = clock
        self._by_room: dict[str, Session] = {}
        self._by_id: dict[str, Session] = {}
        self._ticker: asyncio.Task | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, pending: Mapping[str, list[tuple[str, dict]]] | None = None) -> list[str]:
        """Close the sessions a previous run left open, after appending ``pending[id]``
        (what the recordings recovered: segments, stops); start the checkpoint timer.
        Returns the ids of the sessions recovered."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        pending = pending or {}
        recovered = []
        for directory in sorted(p for p in self.root.iterdir() if p.is_dir()):
            try:
                checkpoint = await asyncio.to_thread(self._recover, directory,
                                                     pending.get(directory.name, ()))
            except Exception:  # noqa: BLE001 - one bad directory must not stop the node
                log.exception("audit session %s could not be reopened", directory.name)
                continue
            if checkpoint is not None:
                recovered.append(directory.name)
                self._checkpoint_published(directory.name, None, checkpoint)
        if recovered:
            log.warning("closed %d audit session(s) left open by a previous run", len(recovered),
                        extra={"sessions": recovered})
        self._ticker = asyncio.ensure_future(self._tick())
        return recovered

    def _recover(self, directory: pathlib.Path, entries: Any) -> Checkpoint | None:
        """Close a session left open (worker thread); its last checkpoint, or ``None``
        when it was closed already."""
        if not entries and _closed_cleanly(directory):
            return None  # the common case, checked without reading the whole log
        audit = AuditLog.open(directory, self.signer, self.clock(), tsa=self.tsa)
        try:
            if audit.closed:
                return None
            for type, fields in entries:
                audit.append(type, fields, self.clock())
            audit.close(self.clock(), tsa=self.tsa)
            return audit.checkpoints()[-1]
        finally:
            audit.release()

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        for room in list(self._by_room):
            await self.close(room)

    # -- sessions --------------------------------------------------------------------

    def session_of(self, room: str) -> Session | None:
        return self._by_room.get(room)

    async def open(self, room: str, shipment_id: str | None, **fields: Any) -> Session:
        """The room's open session, or a new one whose first entry is
        ``session_started {session_id, room, shipment_id, **fields}``."""
        session = self._by_room.get(room)
        if session is not None:
            return session
        session_id = "AS_" + uuid.uuid4().hex[:16]
        audit = await asyncio.to_thread(AuditLog.create, self.root, session_id, self.signer,
                                        self.clock(), room=room, shipment_id=shipment_id, **fields)
        session = self._by_room.setdefault(room, Session(session_id, room, shipment_id, audit))
        if session.audit is not audit:  # another open won the race: ours is not needed
            await asyncio.to_thread(audit.close, self.clock())
            audit.release()
            return session
        self._by_id[session_id] = session
        session.pending = 1
        log.info("audit session %s opened for room %s", session_id, room,
                 extra={"session_id": session_id, "room": room})
        return session

    async def append(self, room: str, type: str, fields: Mapping[str, Any]) -> int | None:
        """Append an entry to the room's session; ``None`` when it has none."""
        session = self._by_room.get(room)
        if session is None:
            return None
        return await self.append_to(session, type, fields)

    async def append_to(self, session: Session, type: str, fields: Mapping[str, Any]) -> int:
        async with session.lock:
            entry = await asyncio.to_thread(session.audit.append, type, dict(fields), self.clock())
            session.pending += 1
            return entry.index

    async def checkpoint(self, session: Session) -> Checkpoint | None:
        """Sign what the session holds now and publish it (nothing new: ``None``)."""
        async with session.lock:
            if session.pending == 0:
                return None
            checkpoint = await asyncio.to_thread(session.audit.checkpoint, self.clock(), self.tsa)
            session.pending = 0
        self._checkpoint_published(session.session_id, session.room, checkpoint)
        return checkpoint

    async def close(self, room: str) -> Session | None:
        """``session_closed`` and a last checkpoint; the session is done."""
        session = self._by_room.pop(room, None)
        if session is None:
            return None
        self._by_id.pop(session.session_id, None)
        async with session.lock:
            await asyncio.to_thread(session.audit.close, self.clock(), self.tsa)
            checkpoint = session.audit.checkpoints()[-1]
            session.audit.release()
        self._checkpoint_published(session.session_id, room, checkpoint)
        log.info("audit session %s closed (%d entries)", session.session_id, checkpoint.size,
                 extra={"session_id": session.session_id, "room": room})
        return session

    # -- reading ---------------------------------------------------------------------

    async def read(self, session_id: str) -> dict[str, Any]:
        """``audit {session_id, entries, checkpoints}`` of an open or closed session."""
        session = self._by_id.get(session_id)
        if session is not None:
            async with session.lock:
                return await asyncio.to_thread(_describe, session.audit, session_id)
        directory = self.root / session_id
        if not _is_session_id(session_id) or not directory.is_dir():
            raise NotFound(f"audit session {session_id!r} does not exist")
        return await asyncio.to_thread(_read_files, directory, session_id)

    # -- inside ----------------------------------------------------------------------

    def _checkpoint_published(self, session_id: str, room: str | None, checkpoint: Checkpoint) -> None:
        wire = checkpoint.to_json()
        self.publish(AuditCheckpoint(room=room, session_id=session_id, size=checkpoint.size,
                                     root=wire["root"], signature=wire["signature"]))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_interval_s)
            for session in list(self._by_room.values()):
                try:
                    await self.checkpoint(session)
                except Exception:  # noqa: BLE001 - try again at the next tick
                    log.exception("checkpoint of audit session %s failed", session.session_id)


def _closed_cleanly(directory: pathlib.Path) -> bool:
    """Whether the session's last entry is ``session_closed`` (read from the file's end)."""
    path = directory / "entries.jsonl"
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 4096))
            tail = f.read()
    except OSError:
        return False
    if not tail.endswith(b"\n"):
        return False  # a torn last line: the log must look at it
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        return json.loads(last).get("type") == "session_closed"
    except ValueError:
        return False


def _is_session_id(value: str) -> bool:
    return value.startswith("AS_") and value[3:].isalnum()


def _describe(audit: AuditLog, session_id: str) -> dict[str, Any]:
    return {"session_id": session_id,
            "entries": [json.loads(entry.data) for entry in audit.entries()],
            "checkpoints": [c.to_json() for c in audit.checkpoints()]}


def _read_files(directory: pathlib.Path, session_id: str) -> dict[str, Any]:
    """A closed session as its files hold it (whole lines only: no writer holds them)."""
    def lines(name: str) -> list[dict]:
        path = directory / name
        data = path.read_bytes() if path.exists() else b""
        return [json.loads(line) for line in data.split(b"\n")[:-1] if line]

    return {"session_id": session_id, "entries": lines("entries.jsonl"),
            "checkpoints": lines("checkpoints.jsonl")}
