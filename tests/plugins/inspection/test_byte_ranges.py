"""Range headers into slices: RFC 9110's examples, and any header whatever gives a slice
inside the file or a 416 (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.inspection.byte_ranges import (
    MAX_RANGES,
    ByteRange,
    RangeNotSatisfiable,
    byte_range,
)

SIZE = 10000


@pytest.mark.parametrize("header, expected", [
    # RFC 9110 section 14.1.2, on a representation of 10000 bytes
    ("bytes=0-499", (0, 500)),
    ("bytes=500-999", (500, 1000)),
    ("bytes=-500", (9500, 10000)),
    ("bytes=9500-", (9500, 10000)),
    ("bytes=0-0,-1", (0, 10000)),  # first and last byte: served as one slice covering both
    ("bytes= 500-600 , 601-999", (500, 1000)),
    # what browsers' media elements send
    ("bytes=0-", (0, 10000)),
    ("bytes=1234-", (1234, 10000)),
    # the end is clipped to the file; the unit is case-insensitive
    ("bytes=9000-20000", (9000, 10000)),
    ("Bytes=-20000", (0, 10000)),
    ("bytes=0-1,,", (0, 2)),
])
def test_rfc_examples_and_browsers(header, expected):
    got = byte_range(header, SIZE)
    assert (got.start, got.stop) == expected
    assert got.content_range == f"bytes {expected[0]}-{expected[1] - 1}/{SIZE}"


@pytest.mark.parametrize("header", [None, "items=0-5", "0-5", "", "pages=1"])
def test_no_range_or_an_unknown_unit_is_the_whole_file(header):
    assert byte_range(header, SIZE) is None


@pytest.mark.parametrize("header", [
    "bytes=10000-", "bytes=20000-30000", "bytes=-0", "bytes=", "bytes=,", "bytes=5-4", "bytes=a-b",
    "bytes=1-2-3", "bytes=-", "bytes=0x10-", "bytes=١-٢", "bytes=" + ",".join(["0-1"] * (MAX_RANGES + 1)),
])
def test_malformed_or_outside_the_file_is_416(header):
    with pytest.raises(RangeNotSatisfiable) as info:
        byte_range(header, SIZE)
    assert info.value.content_range == f"bytes */{SIZE}"


def test_an_empty_file_satisfies_no_range():
    for header in ("bytes=0-", "bytes=-5", "bytes=0-0"):
        with pytest.raises(RangeNotSatisfiable):
            byte_range(header, 0)
    assert byte_range(None, 0) is None


def test_a_long_slice_is_cut_to_max_length():
    got = byte_range("bytes=100-", SIZE, max_length=1000)
    assert got == ByteRange(100, 1100, SIZE) and got.length == 1000
    assert got.content_range == "bytes 100-1099/10000"
    assert byte_range("bytes=-50", SIZE, max_length=1000) == ByteRange(9950, 10000, SIZE)


_spec = st.one_of(
    st.tuples(st.integers(0, 3 * SIZE), st.integers(0, 3 * SIZE)).map(lambda t: f"{t[0]}-{t[1]}"),
    st.integers(0, 3 * SIZE).map(lambda n: f"{n}-"),
    st.integers(0, 3 * SIZE).map(lambda n: f"-{n}"),
    st.text(alphabet="0123456789-, \t", max_size=12),
)
_header = st.one_of(
    st.text(max_size=60),
    st.lists(_spec, min_size=0, max_size=MAX_RANGES + 2).map(lambda specs: "bytes=" + ",".join(specs)),
)


@given(header=_header, size=st.integers(0, 3 * SIZE), max_length=st.none() | st.integers(1, SIZE))
def test_any_header_is_a_slice_inside_the_file_or_416(header, size, max_length):
    try:
        got = byte_range(header, size, max_length)
    except RangeNotSatisfiable as exc:
        assert exc.code == "bad_request" and exc.content_range == f"bytes */{size}"
        return
    if got is None:
        return  # the whole file
    assert 0 <= got.start < got.stop <= got.size == size
    if max_length is not None:
        assert got.length <= max_length


@given(size=st.integers(1, 3 * SIZE), first=st.integers(0, 3 * SIZE), length=st.integers(1, 3 * SIZE))
def test_one_range_selects_exactly_its_bytes(size, first, length):
    data = bytes(i % 251 for i in range(size))
    header = f"bytes={first}-{first + length - 1}"
    if first >= size:
        with pytest.raises(RangeNotSatisfiable):
            byte_range(header, size)
        return
    got = byte_range(header, size)
    assert data[got.start:got.stop] == data[first:first + length]
