"""Stub for the compiled ``sfu._vp8`` (same API as ``sfu._vp8_py``)."""

from __future__ import annotations

class Vp8Descriptor:
    start_of_partition: bool
    partition_id: int
    non_reference: bool
    picture_id: int
    picture_id_long: bool
    tl0picidx: int
    tid: int
    layer_sync: bool
    keyidx: int
    size: int
    is_keyframe: bool
    def __init__(
        self,
        start_of_partition: bool = False,
        partition_id: int = 0,
        non_reference: bool = False,
        picture_id: int = -1,
        picture_id_long: bool = False,
        tl0picidx: int = -1,
        tid: int = -1,
        layer_sync: bool = False,
        keyidx: int = -1,
        size: int = 1,
        is_keyframe: bool = False,
    ) -> None: ...
    @classmethod
    def parse(cls, payload: bytes) -> Vp8Descriptor: ...
    def serialize(self) -> bytes: ...

def vp8_is_keyframe(payload: bytes) -> bool: ...
def vp8_rewrite_picture_id(payload: bytes, picture_id: int, tl0picidx: int) -> bytes: ...
def vp8_temporal_id(data: bytes, offset: int) -> int: ...
def vp8_frame_size(payload: bytes) -> tuple[int, int] | None: ...
