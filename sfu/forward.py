"""The forwarding hot path: per-consumer rewriting, fan-out, NACK cache.

Compiled from ``sfu/_forward.pyx`` when built, else the pure twin ``sfu/_forward_py.py``
(``DOCKCAST_PUREPYTHON=1`` forces the twin).
"""

from __future__ import annotations

from . import speedups

_impl = speedups.load("sfu._forward", "sfu._forward_py")

ConsumerState = _impl.ConsumerState
NackCache = _impl.NackCache
SendLog = _impl.SendLog  # a transport's transport-cc send log, the kind ConsumerState.twcc takes
fan_out = _impl.fan_out
to_rtx = _impl.to_rtx
MAX_SEQ_JUMP = _impl.MAX_SEQ_JUMP
MAX_SEQ_AGE = _impl.MAX_SEQ_AGE
vp8_info = _impl.vp8_info
SEQ_RING = _impl.SEQ_RING
MAX_RESERVED_GAP = _impl.MAX_RESERVED_GAP
ALL_TEMPORAL = _impl.ALL_TEMPORAL
PARALLEL_MIN = _impl.PARALLEL_MIN
set_fanout_threads = _impl.set_fanout_threads  # helper threads of the compiled fan-out
fanout_threads = _impl.fanout_threads
parallel_stats = _impl.parallel_stats
IMPLEMENTATION = speedups.implementation(_impl)

__all__ = ["IMPLEMENTATION", *_impl.__all__]
