"""An evidence bundle: one zip that someone without Dockcast can check and watch.

`export_bundle` writes, in this order (the same order every time):

    README.md                  what the files are, how to check them, how to play the media
    public-key.txt             the node's audit public key (a convenience copy, see README)
    verify.py                  plugins/audit/verify.py, the standalone verifier
    recording.json             the recording's manifest, as on disk
    <recording_id>.webm|.mp4   the exported media (MP4 for H.264, C2PA-signed when asked)
    audit/entries.jsonl        the session's audit log, as on disk
    audit/checkpoints.jsonl    its signed checkpoints
    segments/<recording_id>/<file>   every segment of the recording, then the other
                               segment files the session's log names (other recordings
                               of the same session), sorted

Nothing in it is re-encoded or rewritten except the media (an export). The zip is
written under a temporary name beside ``out`` (mode 0600) and renamed when complete,
then checked with the verifier (`plugins.audit.verify_path`) against the given public
key: `BundleResult.verification` says whether it verifies as a recipient would see it.

The checkpoints are read before the entries: the log fsyncs its entries before it
writes a checkpoint, so a bundle of a live session never holds a checkpoint over
entries it lacks (entries written after the last checkpoint are reported uncovered).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plugins.audit import Report, verify_path
from plugins.audit import verify as _verify_module
from plugins.recorder import Manifest, ManifestError
from plugins.recorder import RecordingNotFound as _NoManifest

from .content_credentials import C2paCredentials, export_signed_mp4, session_dir
from .errors import ExportError, RecordingNotFound
from .export import ExportResult, export_recording
from .bundle_readme import bundle_readme

__all__ = ["BundleError", "BundleResult", "export_bundle", "media_extension"]

_STORED = (".mjr", ".webm", ".mp4")  # already compressed: deflate would only cost time


class BundleError(ExportError):
    """No bundle can be made: the recording names no session, or the session's audit
    log is not there. The message names the recording and the directory looked in."""

    code = "not_found"


@dataclass(frozen=True)
class BundleResult:
    """What `export_bundle` wrote: the zip's members in order, the media's export
    (None when the recording has no media a container here can hold: ``problems``
    says why), its C2PA manifest (MP4 with credentials) and the verifier's report on
    the finished zip."""

    path: pathlib.Path
    session_id: str
    members: tuple[str, ...]
    media: ExportResult | None
    c2pa: dict[str, Any] | None
    verification: Report
    problems: tuple[str, ...] = ()


def media_extension(manifest: Manifest) -> str | None:
    """The container the bundle's media goes in: ``.mp4`` when any track is H.264,
    else ``.webm`` (VP8, VP9, Opus). None when H.264 sits beside VP8, which no
    container here holds together."""
    codecs = {t.codec.lower() for t in manifest.tracks if t.segments}
    if "video/h264" in codecs:
        return None if "video/vp8" in codecs else ".mp4"
    return ".webm"


def _segment_files(manifest: Manifest, directory: pathlib.Path, entries: bytes,
                   problems: list[str]) -> list[tuple[str, pathlib.Path]]:
    """``(member name, file)`` of the recording's segments, then of the other segment
    files the log names; a named file that is not on disk is a problem line."""
    rid = manifest.recording_id
    own = sorted({s.file for t in manifest.tracks for s in t.segments}
                 | {u["file"] for u in manifest.unreadable if u.get("file")})
    found = [(f"segments/{rid}/{name}", directory / name) for name in own
             if (directory / name).is_file()]
    named: set[tuple[str, str]] = set()
    for index, line in enumerate(entries.split(b"\n")):
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # the verifier names a malformed line; the bundle carries it as it is
        if isinstance(entry, dict) and entry.get("type") == "segment":
            named.add((str(entry.get("recording_id")), str(entry.get("file"))))
    have = {name for name, _ in found}
    for other, name in sorted(named):
        member = f"segments/{other}/{name}"
        if member in have:
            continue
        path = directory.parent / other / name
        if _plain(other, name) and path.is_file():
            found.append((member, path))
            have.add(member)
        else:
            problems.append(f"segment {other}/{name}, named by the audit log, is not in "
                            f"{directory.parent}: the bundle will say it is missing")
    return found


def _plain(rid: str, name: str) -> bool:
    parts = [rid, *name.split("/")]
    return "/" not in rid and not any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts)


def _export_media(directory: pathlib.Path, manifest: Manifest, tmp_dir: pathlib.Path,
                  audit_root: pathlib.Path, credentials: C2paCredentials | None,
                  tool: dict[str, str], progress, problems: list[str]):
    ext = media_extension(manifest)
    if ext is None:
        problems.append(f"no media file: recording {manifest.recording_id} holds H.264 and VP8, "
                        "which no container here holds together (export each track apart)")
        return None, None, None
    path = tmp_dir / f".{manifest.recording_id}.{os.getpid()}.media{ext}"
    try:
        if ext == ".mp4" and credentials is not None:
            result, signed = export_signed_mp4(directory, path, credentials, audit_root=audit_root,
                                               tool=tool, progress=progress)
        else:
            result, signed = export_recording(directory, path, progress=progress), None
    except RecordingNotFound:
        raise
    except ExportError as exc:
        problems.append(f"no media file: {exc}")
        return None, None, None
    problems.extend(result.problems)
    return path, result, signed


def _add_file(zf: zipfile.ZipFile, member: str, path: pathlib.Path) -> None:
    info = zipfile.ZipInfo.from_file(path, member, strict_timestamps=False)
    info.external_attr = 0o100600 << 16  # extracted evidence stays private to its owner
    info.compress_type = zipfile.ZIP_STORED if member.endswith(_STORED) else zipfile.ZIP_DEFLATED
    with open(path, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _add_bytes(zf: zipfile.ZipFile, member: str, data: bytes, when: float) -> None:
    info = zipfile.ZipInfo(member, time.localtime(when)[:6])
    info.external_attr = 0o100600 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def export_bundle(directory: pathlib.Path, out: pathlib.Path, *, audit_root: pathlib.Path,
                  public_key: str, credentials: C2paCredentials | None = None,
                  tool: dict[str, str] | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  now: float | None = None) -> BundleResult:
    """Write the evidence bundle of the recording in ``directory`` to ``out`` (a
    ``.zip``). ``audit_root``: the node's ``<data-dir>/audit``; ``public_key``: the
    node's audit public key text (put in the bundle and used to check it);
    ``credentials``: sign an MP4 media file with C2PA (None: unsigned); ``tool``: the
    exporting tool's ``{"name", "version"}``, named in the C2PA manifest and README.

    Raises `RecordingNotFound`, `BundleError` (no session, no audit log) or
    `ExportError` (the zip cannot be written). Media that cannot be exported is not an
    error: the bundle is made without it and ``problems`` says why.
    """
    tool = tool or {"name": "dockcast export", "version": "unknown"}
    now = time.time() if now is None else now
    try:
        manifest = Manifest.load(directory)
        manifest_bytes = (directory / "recording.json").read_bytes()
    except _NoManifest:
        raise RecordingNotFound(f"no recording in {directory} (no recording.json)") from None
    except (ManifestError, OSError) as exc:
        raise ExportError(f"recording {directory.name}: {exc}") from None
    audit_dir = session_dir(audit_root, manifest)
    if audit_dir is None:
        raise BundleError(f"recording {manifest.recording_id} names no inspection session "
                          f"(session_id {manifest.fields.get('session_id')!r}): no audit log to bundle")
    try:
        checkpoints = (audit_dir / "checkpoints.jsonl").read_bytes()  # first: see the docstring
        entries = (audit_dir / "entries.jsonl").read_bytes()
    except FileNotFoundError:
        raise BundleError(f"no audit log of session {audit_dir.name} (recording "
                          f"{manifest.recording_id}) in {audit_dir}") from None
    except OSError as exc:
        raise ExportError(f"cannot read the audit log in {audit_dir}: {exc.strerror}") from None

    problems: list[str] = []
    segments = _segment_files(manifest, directory, entries, problems)
    media, result, signed = _export_media(directory, manifest, out.parent, audit_root,
                                          credentials, tool, progress, problems)
    media_name = f"{manifest.recording_id}{media.suffix}" if media else None
    readme = bundle_readme(manifest, out.name, audit_dir.name, media_name, signed is not None, tool,
                           len(segments), problems)
    members: list[str] = []
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with zipfile.ZipFile(raw, "w") as zf:
                for member, data in (("README.md", readme.encode()),
                                     ("public-key.txt", public_key.strip().encode() + b"\n")):
                    _add_bytes(zf, member, data, now)
                    members.append(member)
                _add_file(zf, "verify.py", pathlib.Path(_verify_module.__file__))
                members.append("verify.py")
                _add_bytes(zf, "recording.json", manifest_bytes, now)
                members.append("recording.json")
                if media is not None:
                    _add_file(zf, media_name, media)
                    members.append(media_name)
                for member, data in (("audit/entries.jsonl", entries),
                                     ("audit/checkpoints.jsonl", checkpoints)):
                    _add_bytes(zf, member, data, now)
                    members.append(member)
                for member, path in segments:
                    _add_file(zf, member, path)
                    members.append(member)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
        if media is not None:
            media.unlink(missing_ok=True)
    _fsync_dir(out.parent)
    report = verify_path(str(out), public_key)
    if result is not None:
        result = dataclasses.replace(result, path=out)
    return BundleResult(out, audit_dir.name, tuple(members), result, signed, report,
                        tuple(problems))


def _fsync_dir(directory: pathlib.Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
