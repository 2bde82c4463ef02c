"""``dockcast export RECORDING_ID --out FILE``: a recording as one media file.

The container follows FILE's extension (``.webm``: VP8/VP9 + Opus, ``.mp4``: H.264/VP9
+ Opus, ``.ogg``: Opus only); nothing is transcoded (``docs/export.md``). The recording
is ``<recordings-dir>/<RECORDING_ID>/``; ``--recordings-dir`` defaults to
``<data-dir>/recordings`` and ``--data-dir`` to ``$DOCKCAST_DATA_DIR`` or ``./data``.

Exit status: 0 written; 1 the recording cannot be exported (the reason on stderr: no
frame to export, a codec the container cannot hold, a failed write); 2 usage (an
unknown extension, a malformed id) or no such recording.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

__all__ = ["add_parser", "run", "main"]

_EXTENSIONS = (".webm", ".mp4", ".ogg")  # plugins.playback.CONTAINERS, without importing av


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording_id", metavar="RECORDING_ID", help="the recording to export")
    p.add_argument("--out", required=True, metavar="FILE",
                   help=f"the file to write; its extension picks the container ({', '.join(_EXTENSIONS)})")
    p.add_argument("--data-dir", metavar="D",
                   help="the node's data directory (default $DOCKCAST_DATA_DIR, else ./data)")
    p.add_argument("--recordings-dir", metavar="DIR",
                   help="where recordings are (default <data-dir>/recordings)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``export`` to the ``dockcast`` command's subparsers."""
    p = sub.add_parser("export", help="export a recording to WebM, MP4 or Ogg (no transcoding)",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(p)


def _recording_dir(args: argparse.Namespace) -> pathlib.Path | None:
    rid = args.recording_id
    if not rid or rid in (".", "..") or any(c in rid for c in "/\\\0"):
        return None
    if args.recordings_dir:
        base = pathlib.Path(args.recordings_dir)
    else:
        data = args.data_dir or os.environ.get("DOCKCAST_DATA_DIR") or "./data"
        base = pathlib.Path(data) / "recordings"
    return base / rid


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


def run(args: argparse.Namespace) -> int:
    """Run ``dockcast export`` with parsed arguments; returns the exit status."""
    out = pathlib.Path(args.out)
    if out.suffix.lower() not in _EXTENSIONS:
        print(f"dockcast export: cannot write {out.name!r}: the extension must be one of "
              f"{', '.join(_EXTENSIONS)}", file=sys.stderr)
        return 2
    directory = _recording_dir(args)
    if directory is None:
        print(f"dockcast export: {args.recording_id!r} is not a recording id", file=sys.stderr)
        return 2
    from plugins.playback import ExportError, RecordingNotFound, export_recording

    bar, update = _progress_bar()
    try:
        if bar is not None:
            with bar:
                result = export_recording(directory, out, progress=update)
        else:
            result = export_recording(directory, out)
    except RecordingNotFound:
        print(f"dockcast export: no recording {args.recording_id} in {directory.parent}",
              file=sys.stderr)
        return 2
    except ExportError as exc:
        print(f"dockcast export: {exc}", file=sys.stderr)
        return 1
    for problem in result.problems:
        print(f"dockcast export: warning: {problem}", file=sys.stderr)
    print(f"{result.path}: {result.container}, {result.duration:.2f} s")
    for s in result.streams:
        size = f" {s.size[0]}x{s.size[1]}" if s.size else ""
        dropped = f", {s.dropped} dropped" if s.dropped else ""
        silent = f" ({s.silent_frames} silent fill)" if s.silent_frames else ""
        print(f"  #{s.index} {s.track}: {s.codec}{size}, {s.frames} frames{silent}{dropped}, "
              f"{s.start:.2f}-{s.end:.2f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m dockcast.export_cli RECORDING_ID --out FILE ...``."""
    parser = argparse.ArgumentParser(prog="dockcast export", description=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
