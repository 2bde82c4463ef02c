"""One inspection session's audit log: entries on disk, their Merkle tree, signed checkpoints.

A session directory ``<root>/<session_id>/`` (mode 0700) holds ``entries.jsonl`` (one
canonical JSON entry per line; an entry's Merkle leaf is exactly its line's bytes
without the newline) and ``checkpoints.jsonl`` (one signed `Checkpoint` per line), both
mode 0600. Each line goes to the file in one ``write`` (unbuffered, so nothing waits in
a user-space buffer); at a checkpoint the entries are fsynced first, then the checkpoint
line is written and fsynced, so a checkpoint never covers entries the disk may lose.

Sans-IO where it can be: the caller passes the time (``now``, unix seconds) into every
call that writes; the log never reads a clock. File I/O is plain and blocking: the node
calls it from a worker thread. An `AuditLog` is NOT thread-safe: one thread (or one
lock held by the caller) at a time.

After a stop or a crash, `AuditLog.open` reads every complete line, cuts off a torn last
line, rebuilds the tree, checks every checkpoint against it (a log whose surviving
entries contradict a signed checkpoint is refused, not repaired), then appends
``session_recovered`` unless the session had been closed, and checkpoints. What it cut
off is in `AuditLog.recovery`.

Checkpoints may carry an RFC 3161 time-stamp (``tst``) from a `TimestampAuthority`
passed to `checkpoint`, `close` or `open`. Evidence first: when the authority fails, the
checkpoint is written without ``tst``, a warning names the authority's URL, and
`AuditLog.timestamp_error` holds the error.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .checkpoint import Checkpoint
from .keys import public_key_text
from .merkle import MerkleTree
from .timestamp import TimestampAuthority, stamp_checkpoint
from .verify import AuditError, InvalidEntryLine, canonical_json, parse_entry, split_lines

__all__ = [
    "AuditLog",
    "AuditLogError",
    "InvalidEntry",
    "Entry",
    "Recovery",
    "ENTRIES_FILE",
    "CHECKPOINTS_FILE",
    "RESERVED_FIELDS",
    "LOG_TYPES",
]

logger = logging.getLogger(__name__)

ENTRIES_FILE = "entries.jsonl"
CHECKPOINTS_FILE = "checkpoints.jsonl"
#: Fields every entry has, set by the log; an entry's own fields may not use them.
RESERVED_FIELDS = frozenset({"i", "ts", "type"})
#: Entry types only the log itself writes (create, open, close).
LOG_TYPES = frozenset({"session_started", "session_recovered", "session_closed"})
# A session id is a directory name and a line of the signed message: keep it plain.
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class AuditLogError(AuditError):
    """The log cannot do this: it is closed or released, a write failed, or the files on
    disk contradict themselves (reopening refuses such a log). The message names the file."""


class InvalidEntry(AuditLogError, ValueError):
    """Fields the log refuses: not JSON, a reserved name, a bad type or session id."""

    code = "bad_request"


@dataclass(frozen=True)
class Entry:
    """One entry: its ``index``, its ``data`` (the line without the newline: the Merkle
    leaf) and its RFC 6962 ``leaf_hash``."""

    index: int
    data: bytes
    leaf_hash: bytes

    def as_dict(self) -> dict:
        """The entry as JSON: ``i``, ``ts``, ``type`` and the type's own fields."""
        return json.loads(self.data)


@dataclass(frozen=True)
class Recovery:
    """What `AuditLog.open` found: bytes of a torn last line cut off each file, the
    complete entries no checkpoint covered, and whether the session had been closed."""

    torn_entry_bytes: int
    torn_checkpoint_bytes: int
    uncovered_entries: int
    was_closed: bool

    @property
    def lost_anything(self) -> bool:
        return bool(self.torn_entry_bytes or self.torn_checkpoint_bytes)

    def __str__(self) -> str:
        parts = [f"dropped a torn last entry line ({self.torn_entry_bytes} bytes)"
                 if self.torn_entry_bytes else "no torn entry line"]
        if self.torn_checkpoint_bytes:
            parts.append(f"dropped a torn last checkpoint line ({self.torn_checkpoint_bytes} bytes)")
        parts.append(f"{self.uncovered_entries} complete entries were not covered by a checkpoint")
        parts.append("the session had been closed" if self.was_closed else "the session was not closed")
        return "; ".join(parts)


class AuditLog:
    """The audit log of one session directory. Make one with `create` or `open`; not
    thread-safe (see the module docstring)."""

    def __init__(self, directory: Path, signer: Ed25519PrivateKey) -> None:
        self.directory = Path(directory)
        self.session_id = ""
        self.recovery: Recovery | None = None
        #: Why the last checkpoint asked to be time-stamped has no ``tst`` (None: it has).
        self.timestamp_error: Exception | None = None
        self._signer = signer
        self._tree = MerkleTree()
        self._offsets = [0]  # where each entry line starts, then where the file ends
        self._checkpoints: list[Checkpoint] = []
        self._checkpoints_end = 0
        self._closed = False
        self._fds: tuple[int, int] | None = None
        self._broken: str | None = None

    # --- making and reopening ---------------------------------------------------------

    @classmethod
    def create(cls, root_dir: str | os.PathLike, session_id: str, signer: Ed25519PrivateKey,
               now: float, **session_fields: Any) -> AuditLog:
        """A new session's log in ``root_dir/session_id`` (made mode 0700), starting with
        ``session_started {session_id, **session_fields}`` (the node passes ``room`` and
        ``shipment_id``). A directory that already holds a log is refused."""
        if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
            raise InvalidEntry(f"session id {session_id!r} must be 1-128 letters, digits, '.', "
                               "'_' or '-', starting with a letter or digit")
        root = Path(root_dir)
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        log = cls(root / session_id, signer)
        log.session_id = session_id
        if "session_id" in session_fields:
            raise InvalidEntry("session_started: session_id is the log's own argument")
        first = log._encode("session_started", {"session_id": session_id, **session_fields}, now)
        try:
            log.directory.mkdir(mode=0o700)
        except FileExistsError:
            if (log.directory / ENTRIES_FILE).exists():
                raise AuditLogError(f"{log.directory}: session {session_id} already has an audit "
                                    "log (reopen it with AuditLog.open)") from None
        log._attach(exclusive=True)
        log._write_entry(first)
        _fsync_dir(log.directory)
        return log

    @classmethod
    def open(cls, directory: str | os.PathLike, signer: Ed25519PrivateKey, now: float,
             tsa: TimestampAuthority | None = None) -> AuditLog:
        """Reopen a session's log after a stop or a crash (see the module docstring); its
        new checkpoint is time-stamped by ``tsa`` when given.

        A session that was closed comes back closed (readable, no appends). Otherwise
        ``session_recovered {entries_lost_tail}`` is appended (``entries_lost_tail``: the
        number of torn entry lines cut off, 0 or 1; entries that never reached the disk
        cannot be counted) and a checkpoint covers everything that survived.
        """
        log = cls(Path(directory), signer)
        entries_path = log.directory / ENTRIES_FILE
        checkpoints_path = log.directory / CHECKPOINTS_FILE
        try:
            data = entries_path.read_bytes()
            cp_data = checkpoints_path.read_bytes() if checkpoints_path.exists() else b""
        except OSError as exc:
            raise AuditLogError(f"{log.directory}: cannot read the audit log ({exc})") from None
        lines, torn = split_lines(data)
        if not lines:
            raise AuditLogError(f"{entries_path}: no complete entry, not even session_started")
        last_type = log._rebuild(entries_path, lines)
        cp_lines, cp_torn = split_lines(cp_data)
        log._reload_checkpoints(checkpoints_path, cp_lines)
        covered = log._checkpoints[-1].size if log._checkpoints else 0
        log.recovery = Recovery(len(torn), len(cp_torn), log.size - covered,
                                last_type == "session_closed")
        log._checkpoints_end = len(cp_data) - len(cp_torn)
        log._attach(exclusive=False, truncate_to=(log._offsets[-1], log._checkpoints_end))
        if log.recovery.lost_anything:
            logger.warning("audit log %s reopened: %s", log.directory, log.recovery)
        if log._checkpoints and log._checkpoints[-1].key != public_key_text(signer):
            logger.warning("audit log %s was signed with another key (%s); its new checkpoints "
                           "will not verify with the old key", log.directory, log._checkpoints[-1].key)
        if log.recovery.was_closed:
            log._closed = True
            log.checkpoint(now, tsa)  # a close that crashed before its checkpoint ends here
            log.release()
        else:
            log._write_entry(log._encode("session_recovered",
                                         {"entries_lost_tail": 1 if torn else 0}, now))
            log.checkpoint(now, tsa)
        return log

    def _rebuild(self, path: Path, lines: list[bytes]) -> str:
        obj: dict = {}
        for index, line in enumerate(lines):
            try:
                obj = parse_entry(line, index)
            except InvalidEntryLine as exc:
                raise AuditLogError(f"{path}: entry {index}: {exc}; a log that differs from what "
                                    "was written is not reopened (check it with dockcast audit "
                                    "verify)") from None
            if index == 0:
                self.session_id = obj["session_id"]
            self._tree.append(line)
            self._offsets.append(self._offsets[-1] + len(line) + 1)
        return obj["type"]

    def _reload_checkpoints(self, path: Path, lines: list[bytes]) -> None:
        for number, raw in enumerate(lines, 1):
            try:
                cp = Checkpoint.parse(json.loads(raw))
            except (ValueError, RecursionError) as exc:
                raise AuditLogError(f"{path}: checkpoint {number}: {exc}") from None
            previous = self._checkpoints[-1].size if self._checkpoints else 0
            if cp.session_id != self.session_id or not previous < cp.size <= self.size \
                    or cp.root != self._tree.root(cp.size):
                raise AuditLogError(f"{path}: checkpoint {number} (size {cp.size}) does not match "
                                    f"the {self.size} entries on disk: entries it signed were lost "
                                    "or changed; not reopening (check it with dockcast audit verify)")
            self._checkpoints.append(cp)

    # --- writing ----------------------------------------------------------------------

    def append(self, type: str, fields: Mapping[str, Any], now: float) -> Entry:
        """Write one entry ``{i, ts: now, type, **fields}``; InvalidEntry when the fields
        are not JSON (NaN included), use ``i``/``ts``/``type``, or the type is one the log
        writes itself (`LOG_TYPES`)."""
        if type in LOG_TYPES:
            raise InvalidEntry(f"{type} entries are written by the log itself")
        return self._write_entry(self._encode(type, fields, now))

    def checkpoint(self, now: float, tsa: TimestampAuthority | None = None) -> Checkpoint:
        """Sign the current size and root; returns the last checkpoint when nothing was
        added since. The entries are fsynced before the checkpoint is written.

        With ``tsa``, the checkpoint carries its token (``tst``) when the authority gives
        one (this blocks for the HTTP round trip); when it fails, the checkpoint is
        written all the same without ``tst``, a warning names the authority's URL, and
        `timestamp_error` says why."""
        self._check_attached()
        if self._checkpoints and self._checkpoints[-1].size == self.size:
            return self._checkpoints[-1]
        entries_fd, checkpoints_fd = self._fds
        cp = Checkpoint.sign(self.session_id, self.size, self._tree.root(), now, self._signer)
        self._fsync(entries_fd, ENTRIES_FILE)
        if tsa is not None:
            cp, self.timestamp_error = stamp_checkpoint(cp, tsa, self.directory)
        line = canonical_json(cp.to_json()) + b"\n"
        self._write(checkpoints_fd, line, self._checkpoints_end, CHECKPOINTS_FILE)
        self._checkpoints_end += len(line)
        self._fsync(checkpoints_fd, CHECKPOINTS_FILE)
        self._checkpoints.append(cp)
        return cp

    def close(self, now: float, tsa: TimestampAuthority | None = None) -> Checkpoint:
        """End the session: append ``session_closed {}``, checkpoint (time-stamped by
        ``tsa`` when given, as `checkpoint` does), release the files. Reading (entries,
        proofs) still works afterwards. Closing twice returns the last checkpoint."""
        if not self._closed:
            self._write_entry(self._encode("session_closed", {}, now))
            self._closed = True
        cp = self.checkpoint(now, tsa) if self._fds else self._checkpoints[-1]
        self.release()
        return cp

    def release(self) -> None:
        """Close the file handles without ending the session (a node stopping: checkpoint
        first). Appends are refused afterwards; reopen with `AuditLog.open`."""
        fds, self._fds = self._fds, None
        for fd in fds or ():
            os.close(fd)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    # --- reading ----------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._tree.size

    @property
    def closed(self) -> bool:
        return self._closed

    def root(self, size: int | None = None) -> bytes:
        return self._tree.root(size)

    def entries(self, start: int = 0, end: int | None = None) -> list[Entry]:
        """Entries ``start`` to ``end`` (exclusive; default: all), read back from the file."""
        end = self.size if end is None else end
        if not 0 <= start <= end <= self.size:
            raise IndexError(f"entries {start}..{end} are not within 0..{self.size}")
        data = self._read(self._offsets[start], self._offsets[end])
        lines = data.split(b"\n")[:-1]
        return [Entry(start + k, line, self._tree.leaf_hash(start + k)) for k, line in enumerate(lines)]

    def checkpoints(self) -> list[Checkpoint]:
        return list(self._checkpoints)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path of entry ``index`` in the tree of ``size`` entries (default: all)."""
        return self._tree.inclusion_proof(index, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Proof that the first ``old_size`` entries are a prefix of the first ``new_size``."""
        return self._tree.consistency_proof(old_size, new_size)

    # --- inside -----------------------------------------------------------------------

    def _encode(self, type: str, fields: Mapping[str, Any], now: float) -> bytes:
        if not isinstance(type, str) or not type:
            raise InvalidEntry(f"an entry's type is a non-empty string, not {type!r}")
        if not isinstance(fields, Mapping) or not all(isinstance(k, str) for k in fields):
            raise InvalidEntry(f"{type} entry: fields must be a mapping with string keys")
        reserved = RESERVED_FIELDS.intersection(fields)
        if reserved:
            raise InvalidEntry(f"{type} entry: {sorted(reserved)} are the log's own fields")
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
            raise InvalidEntry(f"{type} entry: now must be a finite number of unix seconds")
        try:
            line = canonical_json({**fields, "i": self.size, "ts": float(now), "type": type})
            parse_entry(line, self.size)  # exactly what the verifier will accept
        except InvalidEntryLine as exc:
            raise InvalidEntry(f"{type} entry: {exc}") from None
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidEntry(f"{type} entry: its fields are not JSON ({exc})") from None
        return line

    def _write_entry(self, line: bytes) -> Entry:
        if self._closed:
            raise AuditLogError(f"{self.directory}: the session is closed")
        self._check_attached()
        self._write(self._fds[0], line + b"\n", self._offsets[-1], ENTRIES_FILE)
        index = self._tree.append(line)
        self._offsets.append(self._offsets[-1] + len(line) + 1)
        return Entry(index, line, self._tree.leaf_hash(index))

    def _write(self, fd: int, payload: bytes, end: int, name: str) -> None:
        try:
            written = os.write(fd, payload)
            if written != len(payload):
                raise OSError(f"short write: {written} of {len(payload)} bytes")
        except OSError as exc:
            try:  # take the partial line back, so the file and the tree agree
                os.ftruncate(fd, end)
            except OSError as again:
                self._broken = f"{name} could not be cut back after a failed write ({again})"
            raise AuditLogError(f"{self.directory / name}: write failed ({exc})") from exc

    def _fsync(self, fd: int, name: str) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            # After a failed fsync the kernel may have dropped the dirty pages: what is on
            # disk is unknown, so nothing more is written until the log is reopened.
            self._broken = f"fsync of {name} failed ({exc})"
            raise AuditLogError(f"{self.directory / name}: {self._broken}") from exc

    def _check_attached(self) -> None:
        if self._broken:
            raise AuditLogError(f"{self.directory}: {self._broken}; reopen it with AuditLog.open")
        if self._fds is None:
            raise AuditLogError(f"{self.directory}: the log was released; reopen it with AuditLog.open")

    def _attach(self, exclusive: bool, truncate_to: tuple[int, int] | None = None) -> None:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else 0)
        fds = []
        try:
            for name in (ENTRIES_FILE, CHECKPOINTS_FILE):
                fds.append(os.open(self.directory / name, flags, 0o600))
            for fd, end in zip(fds, truncate_to or ()):
                if os.fstat(fd).st_size != end:  # a torn last line: cut it off for good
                    os.ftruncate(fd, end)
                    os.fsync(fd)
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            raise AuditLogError(f"{self.directory}: cannot open the audit log ({exc})") from None
        self._fds = (fds[0], fds[1])

    def _read(self, start: int, end: int) -> bytes:
        if self._fds is None:
            with open(self.directory / ENTRIES_FILE, "rb") as f:
                f.seek(start)
                return f.read(end - start)
        chunks, pos = [], start
        while pos < end:
            chunk = os.pread(self._fds[0], end - pos, pos)
            if not chunk:
                raise AuditLogError(f"{self.directory / ENTRIES_FILE} is shorter than written")
            chunks.append(chunk)
            pos += len(chunk)
        return b"".join(chunks)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
