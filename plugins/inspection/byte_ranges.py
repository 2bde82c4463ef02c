"""Which slice of a file an HTTP ``Range`` header asks for (RFC 9110, section 14).

Sans-IO: a header and the file's size in, a `ByteRange` (or ``None``, or
`RangeNotSatisfiable`) out. What a browser's media element sends (``bytes=0-``,
``bytes=123456-``) and every other form of the ``bytes`` unit are understood:

- no header, or a unit other than ``bytes``: ``None``, the whole file (200); RFC 9110
  says a server must ignore a unit it does not know;
- ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` (the last ``n`` bytes), the end clipped
  to the file; several ranges are served as one slice from the first byte asked for to
  the last (RFC 9110 allows coalescing; browsers never ask for more than one);
- a slice longer than ``max_length`` is cut to it: the reply's ``Content-Range`` says
  what it holds and the client asks again from there (what media elements do), so a
  reply never holds more than ``max_length`` bytes of a long recording in memory;
- a malformed ``bytes`` header, more than `MAX_RANGES` ranges, or none that overlaps the
  file: `RangeNotSatisfiable` (416, ``Content-Range: bytes */size``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from signalling.errors import FixedCodeError

__all__ = ["MAX_RANGES", "ByteRange", "RangeNotSatisfiable", "byte_range"]

#: More ranges than this in one header is refused (a request for many small pieces).
MAX_RANGES = 16

_SPEC = re.compile(r"([0-9]{1,20})?-([0-9]{1,20})?")


class RangeNotSatisfiable(FixedCodeError, ValueError):
    """A ``bytes`` range header that is malformed or selects nothing of the file."""

    code = "bad_request"

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` of the 416 reply."""
        return f"bytes */{self.size}"


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` up to (not including) ``stop`` of a file of ``size`` bytes."""

    start: int
    stop: int
    size: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` of the 206 reply."""
        return f"bytes {self.start}-{self.stop - 1}/{self.size}"


def byte_range(header: str | None, size: int, max_length: int | None = None) -> ByteRange | None:
    """The slice of a ``size``-byte file that ``header`` (a ``Range`` value) asks for;
    ``None``: the whole file. Raises `RangeNotSatisfiable`."""
    if size < 0 or (max_length is not None and max_length < 1):
        raise ValueError("size must be 0 or more and max_length at least 1")
    if header is None:
        return None
    unit, eq, ranges = header.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None  # no unit we know (or no unit at all): the whole file
    specs = [part.strip(" \t") for part in ranges.split(",")]
    specs = [spec for spec in specs if spec]  # RFC 9110 lists allow empty elements
    if not specs or len(specs) > MAX_RANGES:
        raise RangeNotSatisfiable(f"{len(specs)} ranges; 1 to {MAX_RANGES} are served", size)
    slices = []
    for spec in specs:
        match = _SPEC.fullmatch(spec)
        if match is None or (match.group(1) is None and match.group(2) is None):
            raise RangeNotSatisfiable(f"malformed byte range {spec[:40]!r}", size)
        first, last = match.group(1), match.group(2)
        if first is None:  # the last n bytes
            suffix = int(last)
            if suffix > 0 and size > 0:
                slices.append((max(size - suffix, 0), size))
            continue
        start = int(first)
        if last is not None and int(last) < start:
            raise RangeNotSatisfiable(f"byte range {spec[:40]!r} ends before it starts", size)
        if start < size:
            slices.append((start, size if last is None else min(int(last) + 1, size)))
    if not slices:
        raise RangeNotSatisfiable(f"no range of {header[:60]!r} lies in the {size} bytes", size)
    start, stop = min(s for s, _ in slices), max(e for _, e in slices)
    if max_length is not None:
        stop = min(stop, start + max_length)
    return ByteRange(start, stop, size)
