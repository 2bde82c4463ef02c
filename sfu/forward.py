"""The forwarding hot path: per-consumer rewriting, fan-out, NACK cache.

Compiled from ``sfu/_forward.pyx`` when built, else the pure twin ``sfu/_forward_py.py``.
"""

from . import _speedups

_impl = _speedups.load("sfu._forward", "sfu._forward_py")

ConsumerState = _impl.ConsumerState
NackCache = _impl.NackCache
fan_out = _impl.fan_out
IMPLEMENTATION = _speedups.implementation(_impl)

__all__ = ["ConsumerState", "NackCache", "fan_out", "IMPLEMENTATION"]
