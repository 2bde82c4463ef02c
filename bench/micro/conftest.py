"""Fixtures of the micro-benchmarks: each hot-path module in both of its builds."""

from __future__ import annotations

import importlib
import struct

import pytest

SSRC = 0x11223344
PAYLOAD = bytes(range(256)) * 4 + bytes(176)  # 1200 bytes, like a full video packet


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not built (run `make build`)")


def pair(compiled: str, pure: str):
    """A fixture parametrised over the compiled module and its pure-Python twin."""

    @pytest.fixture(params=["cython", "python"])
    def impl(request):
        return _module(compiled if request.param == "cython" else pure)

    return impl


rtp = pair("sfu._rtp", "sfu._rtp_py")
forward = pair("sfu._forward", "sfu._forward_py")
rtcp = pair("sfu._rtcp", "sfu._rtcp_py")


def rtp_packet(seq: int = 1000, ts: int = 90000, marker: bool = False, pt: int = 96) -> bytes:
    """A VP8 packet as a browser sends it: mid and abs-send-time extensions, 1200 bytes."""
    ext = bytes([0x10, ord("0"), 0x22, 0x01, 0x02, 0x03, 0, 0])  # mid "0", abs-send-time
    header = struct.pack("!BBHII", 0x90, (0x80 if marker else 0) | pt, seq, ts, SSRC)
    return header + struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext + PAYLOAD
