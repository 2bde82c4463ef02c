"""Where recordings go after they are written, and how long they are kept.

`Archive` copies each closed segment (and each stopped recording's manifest) to the
configured `plugins.recorder.storage.SegmentStore` (nothing to do for the local store;
S3-compatible object storage otherwise), off the event loop. An upload that fails is
kept in a queue and tried again at the next sweep: the local file stays until the store
has it. The sweep (every ``sweep_interval_s``) also deletes the recordings stopped more
than ``max_age_s`` ago (0: keep them forever); each deletion is reported to
``on_deleted`` so the caller writes it in the audit log.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import time
from collections.abc import Awaitable, Callable

from plugins.recorder import SegmentClosed
from plugins.recorder.retention import Deleted, delete_recording, expired
from plugins.recorder.storage import LocalStore, SegmentStore, StorageError

__all__ = ["Archive"]

log = logging.getLogger(__name__)


class Archive:
    """Uploads and retention of the recordings in ``recordings_dir``."""

    def __init__(self, store: SegmentStore, recordings_dir: pathlib.Path, *,
                 max_age_s: float = 0.0, sweep_interval_s: float = 600.0,
                 on_deleted: Callable[[Deleted, str], Awaitable[None]] | None = None,
                 keep: Callable[[], set[str]] = set, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.recordings_dir = pathlib.Path(recordings_dir)
        self.max_age_s = max_age_s
        self.sweep_interval_s = sweep_interval_s
        self.on_deleted = on_deleted
        self.keep = keep
        self.clock = clock
        self.pending: list[tuple[str, str, str | None]] = []  # (recording_id, file, sha256)
        self._task: asyncio.Task | None = None

    @property
    def remote(self) -> bool:
        return not isinstance(self.store, LocalStore)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._sweeps())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def segment_closed(self, closed: SegmentClosed) -> None:
        if self.remote:
            await self._upload(closed.recording_id, closed.file, closed.sha256)

    async def recording_stopped(self, recording_id: str) -> None:
        if self.remote:
            await self._upload(recording_id, None, None)

    async def delete(self, recording_id: str, reason: str, *, force: bool = False) -> Deleted:
        """Delete a recording here and in the store; ``on_deleted`` is told."""
        deleted = await asyncio.to_thread(delete_recording, self.recordings_dir, recording_id,
                                          self.store, force=force)
        self.pending = [p for p in self.pending if p[0] != recording_id]
        log.info("recording %s deleted (%s): %d files, %d bytes", recording_id, reason,
                 len(deleted.files), deleted.bytes, extra={"recording_id": recording_id})
        if self.on_deleted is not None:
            await self.on_deleted(deleted, reason)
        return deleted

    async def sweep(self) -> list[str]:
        """Retry the failed uploads, then delete what retention says is due."""
        for recording_id, file, sha256 in list(self.pending):
            self.pending.remove((recording_id, file, sha256))
            await self._upload(recording_id, file, sha256)
        due = await asyncio.to_thread(expired, self.recordings_dir, self.clock(), self.max_age_s,
                                      keep=self.keep())
        for recording_id in due:
            try:
                await self.delete(recording_id, "retention")
            except Exception:  # noqa: BLE001 - the next sweep tries again
                log.exception("retention could not delete recording %s", recording_id)
        return due

    async def _upload(self, recording_id: str, file: str | None, sha256: str | None) -> None:
        directory = self.recordings_dir / recording_id
        try:
            if file is None:
                await asyncio.to_thread(self.store.upload_manifest, recording_id,
                                        directory / "recording.json")
            else:
                await asyncio.to_thread(self.store.upload, recording_id, directory / file,
                                        sha256=sha256)
        except StorageError as exc:
            log.warning("upload of %s/%s failed (kept here, tried again at the next sweep): %s",
                        recording_id, file or "recording.json", exc,
                        extra={"recording_id": recording_id})
            self.pending.append((recording_id, file, sha256))

    async def _sweeps(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # noqa: BLE001 - a sweep must not stop the next one
                log.exception("recordings sweep failed")
            await asyncio.sleep(self.sweep_interval_s)
