"""Stub for the compiled ``sfu._forward`` (same API as ``sfu._forward_py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_SEQ_JUMP: int
MAX_SEQ_AGE: int
SEQ_RING: int
MAX_RESERVED_GAP: int
ALL_TEMPORAL: int
PARALLEL_MIN: int

def set_fanout_threads(helpers: int) -> int: ...
def fanout_threads() -> int: ...
def parallel_stats() -> dict[str, int]: ...

def vp8_info(data: bytes, vp8_offset: int, payload_len: int) -> tuple[int, int, int, int, int, int, bool]: ...

class SendLog:
    capacity: int
    next_seq: int
    def __init__(self, capacity: int = 8192) -> None: ...
    def send(self, now: float, size: int, probe: int = -1) -> int: ...
    def unwrap(self, seq16: int) -> int: ...
    def lookup(self, seq: int) -> tuple[float, int, int] | None: ...

class NackCache:
    size: int
    def __init__(self, size: int = 1024) -> None: ...
    def put(self, seq: int, data: bytes) -> None: ...
    def get(self, seq: int) -> bytes | None: ...
    def clear(self) -> None: ...

class ConsumerState:
    ssrc: int
    payload_type: int
    ext_map: bytes | None
    abs_send_time_id: int
    video: bool
    paused: bool
    started: bool
    seq_offset: int
    ts_offset: int
    next_seq: int
    next_ts: int
    last_seq: int
    last_ts: int
    packets: int
    octets: int
    dropped: int
    send_errors: int
    layer: int
    vp8: bool
    temporal_limit: int
    temporal: int
    pic_offset: int
    tl0_offset: int
    next_pic: int
    next_tl0: int
    last_pic: int
    last_tl0: int
    temporal_dropped: int
    twcc_unstamped: int
    @property
    def native(self) -> bool: ...
    @property
    def twcc(self) -> SendLog | None: ...
    @twcc.setter
    def twcc(self, value: SendLog | None) -> None: ...
    @property
    def twcc_id(self) -> int: ...
    @twcc_id.setter
    def twcc_id(self, value: int) -> None: ...
    def __init__(self, ssrc: int, payload_type: int, ext_map: bytes | None,
                 abs_send_time_id: int, video: bool) -> None: ...
    def bind(self, protect: Callable[[bytes], bytes], sendto: Callable[[bytes, Any], None],
             addr: Any, native: tuple[Any, int, int, int, bytes] | None = None) -> None: ...
    def unbind(self) -> None: ...
    def restart(self) -> None: ...
    def forward(self, data: bytes, seq: int, ts: int, payload_len: int, keyframe: bool,
                abs_send_time: int, layer: int = 0, vp8_offset: int = -1, *,
                now: float = 0.0) -> bool: ...
    def retransmit(self, data: bytes, abs_send_time: int, out_seq: int = -1, rtx_ssrc: int = 0,
                   rtx_payload_type: int = -1, rtx_seq: int = 0, *, now: float = 0.0) -> bool: ...
    def producer_seq(self, out_seq: int) -> int: ...

def to_rtx(packet: bytes, ssrc: int, payload_type: int, seq: int) -> bytes: ...

def fan_out(states: list[ConsumerState], data: bytes, seq: int, ts: int, payload_len: int,
            keyframe: bool, abs_send_time: int, layer: int = 0, vp8_offset: int = -1, *,
            now: float = 0.0) -> int: ...
