"""The load clients' receive path: :class:`Receiver` reads a subscriber's socket itself.

The compiled ``bench._receive`` (``recvmmsg``, libsrtp and the counting in C) when it
is built, else its pure-Python twin ``bench._receive_py`` (``DOCKCAST_PUREPYTHON=1``
forces the twin, as for the SFU's own modules). :func:`take_reading` makes an asyncio
datagram transport call a function instead of reading its socket.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from sfu.speedups import implementation, load

__all__ = ["Receiver", "IMPLEMENTATION", "take_reading", "enable_kernel_stamps"]

_impl = load("bench._receive", "bench._receive_py")
Receiver = _impl.Receiver
IMPLEMENTATION = implementation(_impl)

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def enable_kernel_stamps(sock: Any) -> None:
    """Ask the kernel to stamp every datagram ``sock`` receives (``SCM_TIMESTAMPNS``)."""
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def take_reading(transport: Any, readable: Callable[[], None]) -> bool:
    """Make an asyncio selector-loop datagram ``transport`` call ``readable()`` when its
    socket has data, instead of reading it; False (nothing changed) on a transport that
    cannot (uvloop's UDP transport reads in C and has no ``pause_reading``).

    The selector transport registers ``self._read_ready`` with the loop whenever it
    resumes reading: the instance attribute set here is what it registers."""
    if not (hasattr(transport, "pause_reading") and hasattr(transport, "_read_ready")):
        return False
    if transport.is_closing():
        return False
    transport._read_ready = readable
    transport.pause_reading()
    transport.resume_reading()
    return True
