"""Stub for the compiled ``sfu._rtp`` (same API as ``sfu._rtp_py``)."""

from __future__ import annotations

class RtpPacket:
    payload_type: int
    marker: int
    sequence_number: int
    timestamp: int
    ssrc: int
    csrcs: list[int]
    extension_profile: int
    extensions: list[tuple[int, bytes]]
    extension_data: bytes
    payload: bytes
    padding_size: int
    def __init__(
        self,
        payload_type: int = 0,
        marker: int = 0,
        sequence_number: int = 0,
        timestamp: int = 0,
        ssrc: int = 0,
        csrcs: list[int] = ...,
        extension_profile: int = 0,
        extensions: list[tuple[int, bytes]] = ...,
        extension_data: bytes = b"",
        payload: bytes = b"",
        padding_size: int = 0,
    ) -> None: ...
    @classmethod
    def parse(cls, data: bytes) -> RtpPacket: ...
    def serialize(self) -> bytes: ...
    def __eq__(self, other: object) -> bool: ...

def is_rtcp(data: bytes) -> bool: ...
def parse_header(
    data: bytes,
) -> tuple[int, int, int, int, int, int, int, int, int, int]: ...
def find_extension(data: bytes, ext_id: int) -> bytes | None: ...
def rewrite(
    data: bytes,
    ssrc: int,
    sequence_number: int,
    timestamp: int,
    payload_type: int,
    ext_map: bytes | None = None,
    abs_send_time_id: int = 0,
    abs_send_time: int = 0,
    twcc_id: int = 0,
    twcc_seq: int = -1,
) -> bytes: ...
def abs_send_time(seconds: float) -> int: ...
def seq_diff(a: int, b: int) -> int: ...
def seq_newer(a: int, b: int) -> bool: ...
