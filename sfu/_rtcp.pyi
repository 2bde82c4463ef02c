"""Stub for the compiled ``sfu._rtcp`` (same API as ``sfu._rtcp_py``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Union

MAX_FEEDBACK_PACKETS: int

class ReportBlock:
    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: int
    lsr: int
    dlsr: int
    def __init__(
        self,
        ssrc: int = 0,
        fraction_lost: int = 0,
        packets_lost: int = 0,
        highest_sequence: int = 0,
        jitter: int = 0,
        lsr: int = 0,
        dlsr: int = 0,
    ) -> None: ...
    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> ReportBlock: ...
    def serialize(self) -> bytes: ...

class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock]
    def __init__(
        self,
        ssrc: int = 0,
        ntp_timestamp: int = 0,
        rtp_timestamp: int = 0,
        packet_count: int = 0,
        octet_count: int = 0,
        reports: list[ReportBlock] = ...,
    ) -> None: ...
    def serialize(self) -> bytes: ...

class ReceiverReport:
    ssrc: int
    reports: list[ReportBlock]
    def __init__(self, ssrc: int = 0, reports: list[ReportBlock] = ...) -> None: ...
    def serialize(self) -> bytes: ...

class Sdes:
    chunks: list[tuple[int, list[tuple[int, bytes]]]]
    def __init__(self, chunks: list[tuple[int, list[tuple[int, bytes]]]] = ...) -> None: ...
    def serialize(self) -> bytes: ...

class Bye:
    sources: list[int]
    reason: bytes | None
    def __init__(self, sources: list[int] = ..., reason: bytes | None = None) -> None: ...
    def serialize(self) -> bytes: ...

class Nack:
    sender_ssrc: int
    media_ssrc: int
    lost: list[int]
    def __init__(self, sender_ssrc: int = 0, media_ssrc: int = 0, lost: list[int] = ...) -> None: ...
    def serialize(self) -> bytes: ...

class TransportFeedback:
    sender_ssrc: int
    media_ssrc: int
    base_sequence: int
    reference_time: int
    feedback_count: int
    packets: list[tuple[int, int | None]]
    def __init__(
        self,
        sender_ssrc: int = 0,
        media_ssrc: int = 0,
        base_sequence: int = 0,
        reference_time: int = 0,
        feedback_count: int = 0,
        packets: list[tuple[int, int | None]] = ...,
    ) -> None: ...
    def serialize(self) -> bytes: ...

class Pli:
    sender_ssrc: int
    media_ssrc: int
    def __init__(self, sender_ssrc: int = 0, media_ssrc: int = 0) -> None: ...
    def serialize(self) -> bytes: ...

class Fir:
    sender_ssrc: int
    media_ssrc: int
    entries: list[tuple[int, int]]
    def __init__(
        self, sender_ssrc: int = 0, media_ssrc: int = 0, entries: list[tuple[int, int]] = ...
    ) -> None: ...
    def serialize(self) -> bytes: ...

class Remb:
    sender_ssrc: int
    bitrate: int
    ssrcs: list[int]
    def __init__(self, sender_ssrc: int = 0, bitrate: int = 0, ssrcs: list[int] = ...) -> None: ...
    def serialize(self) -> bytes: ...

class UnknownRtcp:
    packet_type: int
    count: int
    payload: bytes
    def __init__(self, packet_type: int = 0, count: int = 0, payload: bytes = b"") -> None: ...
    def serialize(self) -> bytes: ...

RtcpPacket = Union[
    SenderReport, ReceiverReport, Sdes, Bye, Nack, TransportFeedback, Pli, Fir, Remb, UnknownRtcp
]

def parse_rtcp(data: bytes) -> list[RtcpPacket]: ...
def serialize_rtcp(packets: Iterable[RtcpPacket]) -> bytes: ...
