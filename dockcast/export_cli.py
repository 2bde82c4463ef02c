"""``dockcast export RECORDING_ID --out FILE [--bundle]``: a recording as one media file.

The container follows FILE's extension (``.webm``: VP8/VP9 + Opus, ``.mp4``: H.264/VP9
+ Opus, ``.ogg``: Opus only); nothing is transcoded (``docs/export.md``). An MP4 is
signed with a C2PA manifest (the node's own certificate from <data-dir>/keys/, or
--c2pa-cert/--c2pa-key; --no-c2pa to skip); WebM and Ogg are not. With --bundle, FILE
is a .zip evidence bundle: the media, the segments, the session's audit log, the
node's public key, the verifier and a README. The recording is
``<recordings-dir>/<RECORDING_ID>/``; ``--recordings-dir`` defaults to
``<data-dir>/recordings`` and ``--data-dir`` to ``$DOCKCAST_DATA_DIR`` or ``./data``.

Exit status: 0 written; 1 the recording cannot be exported (the reason on stderr: no
frame to export, a codec the container cannot hold, a failed write, C2PA credentials
that cannot sign, no audit log or key for a bundle); 2 usage (an unknown extension, a
malformed id) or no such recording.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

__all__ = ["add_parser", "run", "main"]

_EXTENSIONS = (".webm", ".mp4", ".ogg")  # plugins.playback.CONTAINERS, without importing av
_NO_C2PA = ("no C2PA manifest: C2PA signs MP4 exports only (WebM and Ogg cannot carry one); "
            "this file's evidence is the session's audit log (dockcast export --bundle)")


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording_id", metavar="RECORDING_ID", help="the recording to export")
    p.add_argument("--out", required=True, metavar="FILE",
                   help=f"the file to write; its extension picks the container ({', '.join(_EXTENSIONS)})")
    p.add_argument("--data-dir", metavar="D",
                   help="the node's data directory (default $DOCKCAST_DATA_DIR, else ./data)")
    p.add_argument("--recordings-dir", metavar="DIR",
                   help="where recordings are (default <data-dir>/recordings)")
    p.add_argument("--bundle", action="store_true",
                   help="write an evidence bundle (FILE ends in .zip): media, segments, audit "
                        "log, public key, verify.py and a README")
    p.add_argument("--c2pa-cert", metavar="PEM",
                   help="sign MP4 exports with this certificate chain (signer first) instead of "
                        "the node's own self-issued one")
    p.add_argument("--c2pa-key", metavar="PEM", help="the private key of --c2pa-cert")
    p.add_argument("--no-c2pa", action="store_true", help="write MP4 exports without a C2PA manifest")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``export`` to the ``dockcast`` command's subparsers."""
    p = sub.add_parser("export", help="export a recording to WebM, MP4 or Ogg (no transcoding)",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(p)


def _data_dir(args: argparse.Namespace) -> pathlib.Path:
    return pathlib.Path(args.data_dir or os.environ.get("DOCKCAST_DATA_DIR") or "./data")


def _recording_dir(args: argparse.Namespace) -> pathlib.Path | None:
    rid = args.recording_id
    if not rid or rid in (".", "..") or any(c in rid for c in "/\\\0"):
        return None
    if args.recordings_dir:
        return pathlib.Path(args.recordings_dir) / rid
    return _data_dir(args) / "recordings" / rid


def _progress_bar():
    """A rich progress bar on stderr, or None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None, None
    try:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    except ImportError:  # an install without it still exports, silently
        return None, None

    bar = Progress(TextColumn("exporting"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                   TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    task = bar.add_task("export", total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


def _usage_error(args: argparse.Namespace, out: pathlib.Path) -> str | None:
    ext = out.suffix.lower()
    if args.bundle:
        return None if ext == ".zip" else (f"cannot write {out.name!r}: an evidence bundle "
                                            "(--bundle) is a .zip")
    if ext == ".zip":
        return f"cannot write {out.name!r}: a .zip is an evidence bundle; add --bundle"
    if ext not in _EXTENSIONS:
        return (f"cannot write {out.name!r}: the extension must be one of "
                f"{', '.join(_EXTENSIONS)} (or .zip with --bundle)")
    if bool(args.c2pa_cert) != bool(args.c2pa_key):
        return "--c2pa-cert and --c2pa-key go together"
    return None


def _tool() -> dict[str, str]:
    from dockcast import __version__

    return {"name": "dockcast export", "version": __version__}


def _credentials(args: argparse.Namespace):
    """The C2PA credentials an MP4 is signed with, or None with --no-c2pa."""
    from plugins.playback import load_credentials, node_credentials

    if args.no_c2pa:
        return None
    if args.c2pa_cert:
        return load_credentials(args.c2pa_cert, args.c2pa_key)
    return node_credentials(_data_dir(args))


def _print_streams(result) -> None:
    for s in result.streams:
        size = f" {s.size[0]}x{s.size[1]}" if s.size else ""
        dropped = f", {s.dropped} dropped" if s.dropped else ""
        silent = f" ({s.silent_frames} silent fill)" if s.silent_frames else ""
        print(f"  #{s.index} {s.track}: {s.codec}{size}, {s.frames} frames{silent}{dropped}, "
              f"{s.start:.2f}-{s.end:.2f} s")


def _c2pa_line(signed: dict) -> str:
    from plugins.playback import ASSERTION_LABEL

    who = signed.get("signature_info", {})
    ours = next((a["data"] for a in signed.get("assertions", []) if a.get("label") == ASSERTION_LABEL), {})
    checkpoint = ours.get("checkpoint")
    covers = (f"the checkpoint of {checkpoint['size']} entries" if checkpoint else
              "no checkpoint (no audit log of the session here)")
    return (f"  C2PA manifest {signed.get('label')}: session {ours.get('session_id')}, {covers}; "
            f"signed by {who.get('common_name')} ({who.get('issuer')}), {who.get('alg')}")


def _public_key(data: pathlib.Path) -> str:
    """The node's audit public key text, from the key file that is there (never made)."""
    from plugins.audit import public_key_text
    from plugins.audit.keys import key_path, load_or_create_signing_key

    if not key_path(data).is_file():
        raise LookupError(f"no audit signing key at {key_path(data)}: a bundle needs the key of "
                          "the node that signed the log (give that node's --data-dir)")
    return public_key_text(load_or_create_signing_key(data))  # it exists: nothing is made


def _with_progress(work):
    """``work(update)`` under a progress bar when stderr is a terminal; the bar is gone
    when it returns, so that the summary prints after it."""
    bar, update = _progress_bar()
    if bar is None:
        return work(None)
    with bar:
        return work(update)


def _bundle(args: argparse.Namespace, directory: pathlib.Path, out: pathlib.Path) -> int:
    from plugins.audit import AuditError
    from plugins.playback import export_bundle

    data = _data_dir(args)
    try:
        key = _public_key(data)
    except (LookupError, AuditError) as exc:
        print(f"dockcast export: {exc}", file=sys.stderr)
        return 1
    credentials = _credentials(args)
    result = _with_progress(lambda update: export_bundle(
        directory, out, audit_root=data / "audit", public_key=key, credentials=credentials,
        tool=_tool(), progress=update))
    for problem in result.problems:
        print(f"dockcast export: warning: {problem}", file=sys.stderr)
    print(f"{result.path}: evidence bundle of recording {args.recording_id}, session "
          f"{result.session_id}, {len(result.members)} files")
    if result.media is not None:
        media = next(m for m in result.members if m.startswith(args.recording_id + "."))
        print(f"  {media}: {result.media.container}, {result.media.duration:.2f} s")
        _print_streams(result.media)
        if result.c2pa is not None:
            print(_c2pa_line(result.c2pa))
        elif result.media.container != "mp4":
            print(f"  {_NO_C2PA}")
    report = result.verification
    if report.ok:
        print(f"  {report.summary()}")
    else:
        print(f"dockcast export: warning: the bundle does not verify: {report.difference}",
              file=sys.stderr)
    for note in report.notes:
        print(f"  note: {note}")
    return 0


def _media(args: argparse.Namespace, directory: pathlib.Path, out: pathlib.Path) -> int:
    from plugins.playback import export_recording, export_signed_mp4

    credentials = _credentials(args) if out.suffix.lower() == ".mp4" else None
    signed = None
    if credentials is not None:
        result, signed = _with_progress(lambda update: export_signed_mp4(
            directory, out, credentials, audit_root=_data_dir(args) / "audit", tool=_tool(),
            progress=update))
    else:
        result = _with_progress(lambda update: export_recording(directory, out, progress=update))
    for problem in result.problems:
        print(f"dockcast export: warning: {problem}", file=sys.stderr)
    print(f"{result.path}: {result.container}, {result.duration:.2f} s")
    _print_streams(result)
    if signed is not None:
        print(_c2pa_line(signed))
    elif result.container != "mp4":
        print(_NO_C2PA)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``dockcast export`` with parsed arguments; returns the exit status."""
    out = pathlib.Path(args.out)
    problem = _usage_error(args, out)
    if problem:
        print(f"dockcast export: {problem}", file=sys.stderr)
        return 2
    directory = _recording_dir(args)
    if directory is None:
        print(f"dockcast export: {args.recording_id!r} is not a recording id", file=sys.stderr)
        return 2
    from plugins.playback import ExportError, RecordingNotFound

    try:
        return (_bundle if args.bundle else _media)(args, directory, out)
    except RecordingNotFound:
        print(f"dockcast export: no recording {args.recording_id} in {directory.parent}",
              file=sys.stderr)
        return 2
    except ExportError as exc:
        print(f"dockcast export: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    """``python -m dockcast.export_cli RECORDING_ID --out FILE ...``."""
    parser = argparse.ArgumentParser(prog="dockcast export", description=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
