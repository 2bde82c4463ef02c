"""Short-lived signed links to a recording exported as one media file (``recording.media``).

`MediaLinks.link` answers ``recording.media {recording_id}`` with ``{url, expires_at,
container, media_start}``: ``url`` is ``/recordings/media?id=<rid>&exp=<unix>&sig=<hmac>``,
valid `LINK_TTL_S` (10 minutes), ``sig`` the HMAC-SHA256 (`LinkSigner`) of the id and
the expiry with a key of this node's (``<data-dir>/keys/media-links.key``, 32 random
bytes made at first use, mode 0600; no one else can mint a link, and a link names one
recording). A token scoped to a room gets links only for that room's recordings: any
other is ``not_found``, as if it did not exist; a recording still under way is
``conflict``.

`MediaLinks.handle` answers the link (``GET``/``HEAD``, registered with
``PluginContext.http_route``): a signature that does not check, or an expired link, is
403 with no detail. The recording is exported on first use (WebM for VP8/Opus, MP4 for
H.264: `plugins.playback.media_extension`, `plugins.playback.export_recording` in a
worker thread, one export at a time) into ``<data-dir>/exports/<rid>.<ext>`` (mode 0600,
directory 0700), and then served from there with ``Accept-Ranges: bytes``: a ``Range``
request is answered 206 with that slice alone read from disk (`byte_ranges`), at most
`CHUNK_BYTES` per reply, so a browser seeks without loading the whole file.
``Cache-Control: private, no-store``: evidence is not kept by caches. An unknown or
deleted recording is 404, one still recording 409, an export that fails 500, and one
still running after `EXPORT_WAIT_S` 503 with ``Retry-After`` (the export goes on; the
websocket library closes a request that takes more than ten seconds).

``media_start`` (Unix seconds) is when the export's time 0 happened: the earliest first
packet of the recording's tracks (the manifest's first segments). An audit entry's
``ts`` minus ``media_start`` is its place in the video (``docs/playback.md``).

    signalling.errors.SignallingError
    └── MediaLinkKeyError (also ValueError)   internal   the key file cannot be used
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import pathlib
import re
import secrets
import stat
import time
from collections.abc import Callable, Mapping
from typing import Any

from plugins.playback import (
    ExportError,
    RecordingNotFound,
    UnsupportedContainer,
    export_recording,
    media_extension,
)
from plugins.recorder import Manifest, ManifestError
from signalling.errors import Conflict, FixedCodeError, NotFound
from signalling.http import HttpReply, HttpRequest

from .byte_ranges import RangeNotSatisfiable, byte_range

__all__ = [
    "CHUNK_BYTES",
    "EXPORT_WAIT_S",
    "KEY_FILE",
    "LINK_PATH",
    "LINK_TTL_S",
    "MEDIA_TYPES",
    "LinkSigner",
    "MediaLinkKeyError",
    "MediaLinks",
    "load_or_create_link_key",
]

log = logging.getLogger(__name__)

LINK_PATH = "/recordings/media"
LINK_TTL_S = 600
KEY_FILE = pathlib.Path("keys") / "media-links.key"
CHUNK_BYTES = 4 * 1024 * 1024
"""The most a reply holds; a longer range is cut, and the browser asks for the rest."""
EXPORT_WAIT_S = 8.0
"""How long a request waits for an export under way before it is told to come back."""
MEDIA_TYPES = {".webm": "video/webm", ".mp4": "video/mp4"}

_KEY_BYTES = 32
_CONTEXT = b"dockcast-media-link/v1\n"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_EXP = re.compile(r"^[0-9]{1,12}$")
_TEXT = "text/plain; charset=utf-8"
_NO_STORE = (("Cache-Control", "private, no-store"), ("X-Content-Type-Options", "nosniff"))


class MediaLinkKeyError(FixedCodeError, ValueError):
    """The link key file (or its directory) cannot be used: readable by others than its
    owner, not a regular file, unreadable, or not 32 bytes. The message names the path."""

    code = "internal"


def load_or_create_link_key(data_dir: str | os.PathLike) -> bytes:
    """The node's link key, made (mode 0600, in ``keys/`` of mode 0700) if there is none.
    A key or directory others may read is refused, never used: it would let them mint
    links to any recording."""
    path = pathlib.Path(data_dir) / KEY_FILE
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        _private(path.parent, 0o700)
        if not path.exists():
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(secrets.token_bytes(_KEY_BYTES))
                    f.flush()
                    os.fsync(f.fileno())
                try:
                    os.link(tmp, path)  # two nodes starting at once: one key for both
                except FileExistsError:
                    pass
            finally:
                tmp.unlink(missing_ok=True)
        _private(path, 0o600)
        key = path.read_bytes()
    except OSError as exc:
        raise MediaLinkKeyError(f"{path}: cannot read or write the media link key ({exc})") from None
    if len(key) != _KEY_BYTES:
        raise MediaLinkKeyError(f"{path} holds {len(key)} bytes, not a {_KEY_BYTES}-byte key")
    return key


def _private(path: pathlib.Path, mode: int) -> None:
    st = path.lstat()
    if not (stat.S_ISDIR(st.st_mode) if mode == 0o700 else stat.S_ISREG(st.st_mode)):
        raise MediaLinkKeyError(f"{path} is not a {'directory' if mode == 0o700 else 'regular file'}")
    if st.st_mode & 0o077:
        raise MediaLinkKeyError(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; it must be "
                                f"private to its owner (chmod {mode:o} {path})")


class LinkSigner:
    """Signs and checks links (sans-IO: the time is passed in)."""

    def __init__(self, key: bytes, ttl_s: int = LINK_TTL_S) -> None:
        if len(key) < 16:
            raise ValueError("a link key has at least 16 bytes")
        self._key = key
        self.ttl_s = int(ttl_s)

    def _sig(self, recording_id: str, expires_at: int) -> str:
        mac = hmac.new(self._key, _CONTEXT + f"{recording_id}\n{expires_at}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    def sign(self, recording_id: str, now: float) -> tuple[str, int]:
        """``(url, expires_at)``: a link to ``recording_id`` valid `ttl_s` from ``now``."""
        if not _ID.match(recording_id):
            raise ValueError(f"not a recording id: {recording_id!r}")
        expires_at = int(now) + self.ttl_s
        sig = self._sig(recording_id, expires_at)
        return f"{LINK_PATH}?id={recording_id}&exp={expires_at}&sig={sig}", expires_at

    def check(self, query: Mapping[str, str], now: float) -> str | None:
        """The recording id a link's query names, if its signature checks and it has not
        expired at ``now``; ``None`` otherwise (no reason: the caller says 403, nothing more)."""
        recording_id, exp, sig = query.get("id", ""), query.get("exp", ""), query.get("sig", "")
        if not _ID.match(recording_id) or not _EXP.match(exp):
            return None
        expected = self._sig(recording_id, int(exp))
        if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")):
            return None
        return recording_id if now < int(exp) else None


class MediaLinks:
    """Links to recordings and the exports behind them (see the module docstring).

    ``lookup(rid)`` is the recording's ``recording`` fields (``room``, ``state``...) or
    None; ``prepare(recording_dir)`` runs in the export's thread before it (bring back
    segments kept only in an object store)."""

    def __init__(self, data_dir: pathlib.Path, recordings_dir: pathlib.Path,
                 lookup: Callable[[str], dict | None], *,
                 prepare: Callable[[pathlib.Path], Any] | None = None,
                 clock: Callable[[], float] = time.time, ttl_s: int = LINK_TTL_S,
                 export_wait_s: float = EXPORT_WAIT_S) -> None:
        self.data_dir = pathlib.Path(data_dir)
        self.recordings_dir = pathlib.Path(recordings_dir)
        self.exports_dir = self.data_dir / "exports"
        self.lookup = lookup
        self.prepare = prepare
        self.clock = clock
        self.ttl_s = ttl_s
        self.export_wait_s = export_wait_s
        self.signer: LinkSigner | None = None
        self._exports: dict[str, asyncio.Future] = {}
        self._one_at_a_time = asyncio.Semaphore(1)  # exports are CPU and disk work

    async def start(self) -> None:
        key = await asyncio.to_thread(load_or_create_link_key, self.data_dir)
        self.signer = LinkSigner(key, self.ttl_s)
        self.exports_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    async def stop(self) -> None:
        """Wait for the exports under way (a thread cannot be stopped halfway)."""
        await asyncio.gather(*self._exports.values(), return_exceptions=True)

    # -- recording.media -------------------------------------------------------------

    async def link(self, conn: Any, recording_id: str) -> dict[str, Any]:
        """The ``media_link`` reply fields for ``conn``; raises NotFound (also for another
        room's recording and a scoped token), Conflict (still recording) or
        `plugins.playback.UnsupportedContainer` (no container holds its tracks together)."""
        recording = self.lookup(recording_id)
        scope = getattr(getattr(conn, "claims", None), "room", None)
        if recording is None or (scope is not None and recording.get("room") != scope):
            raise NotFound(f"recording {recording_id!r} does not exist")
        if recording.get("state") != "stopped":
            raise Conflict(f"recording {recording_id!r} is still recording: stop it first")
        try:
            manifest = await asyncio.to_thread(self._manifest, recording_id)
        except RecordingNotFound as exc:
            raise NotFound(str(exc)) from None
        extension = media_extension(manifest)
        if extension is None:
            raise UnsupportedContainer(f"recording {recording_id!r} holds H.264 beside VP8, which "
                                   f"no container here holds together; use dockcast export --bundle")
        url, expires_at = self.signer.sign(recording_id, self.clock())
        if self._cached(recording_id) is None:
            self._export_soon(recording_id)  # the page asks for it next: start now
        starts = [t.segments[0].started_at for t in manifest.tracks if t.segments]
        return {"url": url, "expires_at": expires_at, "container": extension[1:],
                "media_start": min(starts) if starts else None}

    def forget(self, recording_id: str) -> None:
        """The recording was deleted: so is its export."""
        for extension in MEDIA_TYPES:
            (self.exports_dir / f"{recording_id}{extension}").unlink(missing_ok=True)

    # -- the link --------------------------------------------------------------------

    async def handle(self, request: HttpRequest) -> HttpReply:
        recording_id = self.signer.check(request.query, self.clock()) if self.signer else None
        if recording_id is None:
            return HttpReply(403, _TEXT, b"forbidden\n", _NO_STORE)
        recording = self.lookup(recording_id)
        if recording is None:
            return HttpReply(404, _TEXT, b"no such recording\n", _NO_STORE)
        if recording.get("state") != "stopped":
            return HttpReply(409, _TEXT, b"the recording is still under way\n", _NO_STORE)
        try:
            path = self._cached(recording_id) or await asyncio.wait_for(
                asyncio.shield(self._export_soon(recording_id)), self.export_wait_s)
        except TimeoutError:
            return HttpReply(503, _TEXT, b"the recording is being exported; try again\n",
                             (*_NO_STORE, ("Retry-After", "3")))
        except ExportError as exc:
            log.warning("recording %s cannot be exported: %s", recording_id, exc,
                        extra={"recording_id": recording_id})
            return HttpReply(404 if exc.code == "not_found" else 500, _TEXT,
                             b"the recording cannot be exported\n", _NO_STORE)
        return await self._serve(request, recording_id, path)

    async def _serve(self, request: HttpRequest, recording_id: str, path: pathlib.Path) -> HttpReply:
        kind = MEDIA_TYPES[path.suffix]
        headers = (*_NO_STORE, ("Accept-Ranges", "bytes"),
                   ("Content-Disposition", f'inline; filename="{recording_id}{path.suffix}"'))
        try:
            size = path.stat().st_size
            wanted = byte_range(request.headers.get("range"), size, CHUNK_BYTES)
        except FileNotFoundError:  # deleted meanwhile
            return HttpReply(404, _TEXT, b"no such recording\n", _NO_STORE)
        except RangeNotSatisfiable as exc:
            return HttpReply(416, _TEXT, b"range not satisfiable\n",
                             (*headers, ("Content-Range", exc.content_range)))
        start, length = (0, size) if wanted is None else (wanted.start, wanted.length)
        body = b"" if request.method == "HEAD" else await asyncio.to_thread(_read, path, start, length)
        if wanted is None:
            return HttpReply(200, kind, body, headers)
        return HttpReply(206, kind, body, (*headers, ("Content-Range", wanted.content_range)))

    # -- exports ---------------------------------------------------------------------

    def _manifest(self, recording_id: str) -> Manifest:
        try:
            return Manifest.load(self.recordings_dir / recording_id)
        except ManifestError as exc:
            raise RecordingNotFound(f"recording {recording_id!r} cannot be read: {exc}") from None

    def _export_soon(self, recording_id: str) -> asyncio.Future:
        """The export of ``recording_id`` (its path when done): the one under way, or a new one."""
        future = self._exports.get(recording_id)
        if future is None:
            future = asyncio.ensure_future(self._export(recording_id))
            self._exports[recording_id] = future
            future.add_done_callback(lambda f: self._exported(recording_id, f))
        return future

    def _exported(self, recording_id: str, future: asyncio.Future) -> None:
        self._exports.pop(recording_id, None)
        if not future.cancelled() and future.exception() is not None:  # retrieved: logged by who waits
            log.debug("export of %s failed: %s", recording_id, future.exception())

    def _cached(self, recording_id: str) -> pathlib.Path | None:
        for extension in MEDIA_TYPES:
            cached = self.exports_dir / f"{recording_id}{extension}"
            if cached.is_file():
                return cached
        return None

    async def _export(self, recording_id: str) -> pathlib.Path:
        cached = self._cached(recording_id)
        if cached is not None:
            return cached
        async with self._one_at_a_time:
            path = await asyncio.to_thread(self._export_now, recording_id)
        if self.lookup(recording_id) is None:  # deleted while it was exported
            self.forget(recording_id)
            raise ExportError(f"recording {recording_id!r} was deleted")
        return path

    def _export_now(self, recording_id: str) -> pathlib.Path:
        directory = self.recordings_dir / recording_id
        if self.prepare is not None:
            self.prepare(directory)
        extension = media_extension(self._manifest(recording_id))
        if extension is None:
            raise ExportError(f"recording {recording_id!r}: no container holds its tracks together")
        out = self.exports_dir / f"{recording_id}{extension}"
        started = time.monotonic()
        result = export_recording(directory, out)  # written beside, then renamed: never partial
        log.info("recording %s exported to %s (%.1f s of media in %.1f s)", recording_id, out.name,
                 result.duration, time.monotonic() - started, extra={"recording_id": recording_id})
        return out


def _read(path: pathlib.Path, start: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(length)
