"""Retention and deletion of recordings.

`expired` picks the recordings old enough to go: stopped (or interrupted and recovered)
ones whose ``stopped_at`` is more than ``max_age_s`` ago, never one still recording.
`delete_recording` removes one: its stored objects first, then its local files (the
manifest last, so a deletion cut short is found again and finished by the next call),
then its directory; it returns what it removed, for the ``recording_deleted`` audit
entry. Both block on the disk (and the store): run them in a thread.

    signalling.errors.SignallingError
    ├── plugins.recorder.RecordingNotFound   not_found    no such recording, here nor in the store
    ├── storage.InvalidName (also ValueError) bad_request  a recording id that is not one plain path part
    └── RecordingInProgress                  conflict     its manifest says it is still being written
"""

from __future__ import annotations

import logging
import os
import pathlib
import stat
from collections.abc import Collection
from dataclasses import dataclass, field

from signalling.errors import FixedCodeError

from .manifest import MANIFEST_NAME, Manifest, ManifestError, RecordingNotFound
from .storage import SegmentStore, _fsync_dir, check_name

__all__ = ["expired", "delete_recording", "Deleted", "RecordingInProgress"]

logger = logging.getLogger(__name__)


class RecordingInProgress(FixedCodeError):
    """The recording's manifest says ``recording``: stop it (or recover it after a
    crash, `Manifest.recover`) before deleting it."""

    code = "conflict"


@dataclass(frozen=True)
class Deleted:
    """What `delete_recording` removed: local files (names relative to the recording's
    directory) and their bytes, and the keys of the stored objects."""

    recording_id: str
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    objects: list[str] = field(default_factory=list)


def expired(recordings_dir: pathlib.Path, now: float, max_age_s: float, *,
            keep: Collection[str] = frozenset()) -> list[str]:
    """Ids of the recordings in ``recordings_dir`` stopped more than ``max_age_s``
    seconds before ``now``, oldest first, but none in ``keep`` (a legal hold, one being
    exported) and none whose manifest says ``recording``. ``max_age_s`` of 0 (or less)
    means no age limit: nothing expires. Directories without a readable manifest are
    skipped (and logged); a recordings directory not made yet holds nothing."""
    recordings_dir = pathlib.Path(recordings_dir)
    if max_age_s <= 0 or not recordings_dir.is_dir():
        return []
    found = []
    for directory in recordings_dir.iterdir():
        if (directory.name in keep or directory.name.startswith(".") or directory.is_symlink()
                or not directory.is_dir()):
            continue
        try:
            manifest = Manifest.read(directory)
        except RecordingNotFound:
            continue
        except ManifestError as exc:
            logger.warning("retention: %s skipped: %s", directory.name, exc)
            continue
        if (manifest.state != "recording" and manifest.stopped_at is not None
                and manifest.recording_id == directory.name
                and now - manifest.stopped_at > max_age_s):
            found.append((manifest.stopped_at, directory.name))
    return [rid for _, rid in sorted(found)]


def delete_recording(recordings_dir: pathlib.Path, recording_id: str, store: SegmentStore,
                     *, force: bool = False) -> Deleted:
    """Delete recording ``recording_id``: its objects in ``store``, then every file in
    its directory (the manifest last), then the directory. Returns what went.

    Idempotent: a deletion cut short (a crash, a store that failed) is finished by the
    next call. A recording that is neither in ``recordings_dir`` nor in the store is
    `RecordingNotFound`. One whose manifest says ``recording`` is `RecordingInProgress`
    unless ``force``. Symbolic links are removed, never followed."""
    check_name(recording_id)
    directory = pathlib.Path(recordings_dir) / recording_id
    here = directory.is_dir() and not directory.is_symlink()
    if here and not force:
        try:
            state = Manifest.read(directory).state
        except ManifestError:  # none (a deletion cut short) or unreadable: nothing live
            state = None
        if state == "recording":
            raise RecordingInProgress(f"recording {recording_id} is still being written: "
                                      "stop it first")
    # the store first: while the manifest is here, a failure leaves the recording listed
    objects = store.delete(recording_id)
    if not here:
        if not objects:
            raise RecordingNotFound(f"no recording {recording_id} in {recordings_dir} or in {store!r}")
        return Deleted(recording_id, objects=objects)
    files, size = _remove_tree(directory)
    logger.info("recording %s deleted: %d files, %d bytes, %d stored objects",
                recording_id, len(files), size, len(objects))
    return Deleted(recording_id, files, size, objects)


def _remove_tree(directory: pathlib.Path) -> tuple[list[str], int]:
    """Remove every file under ``directory`` (the manifest last), then the directories,
    deepest first; ``(relative names, bytes)`` of the files."""
    files: list[pathlib.Path] = []
    folders: list[pathlib.Path] = []
    for root, dirs, names in os.walk(directory, topdown=False):  # never follows links
        base = pathlib.Path(root)
        files.extend(base / n for n in names)
        # os.walk lists a link to a directory among dirs: it is a file to unlink
        for d in dirs:
            (files if (base / d).is_symlink() else folders).append(base / d)
    manifest = directory / MANIFEST_NAME
    files.sort(key=lambda p: (p == manifest, str(p)))
    removed, size = [], 0
    for path in files:
        try:
            info = path.lstat()
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(str(path.relative_to(directory)))
        size += info.st_size if stat.S_ISREG(info.st_mode) else 0
    _fsync_dir(directory)
    for folder in [*folders, directory]:
        folder.rmdir()
    _fsync_dir(directory.parent)
    return removed, size

