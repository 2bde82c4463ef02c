"""In-memory stand-ins for the unit tests of producer, consumer and participant: a
transport that records what is sent, a publisher that writes real RTP bytes (built
with sfu's own serializer) into a producer, and the codecs and payloads they use."""

from __future__ import annotations

import asyncio

from sfu.extensions import EXT_ABS_SEND_TIME, EXT_AUDIO_LEVEL, EXT_MID
from sfu.producer import CodecInfo, Producer
from sfu.rtcp import parse_rtcp
from sfu.rtp import RtpPacket, parse_header

PUBLISHER_SSRC = 0x5EED0001
VP8 = CodecInfo("video/VP8", 90000, 96, rtx_payload_type=97)
OPUS = CodecInfo("audio/opus", 48000, 111, channels=2)
# the publisher's extension ids (the subscriber negotiates others)
PUBLISHER_EXT_IDS = {EXT_MID: 1, EXT_ABS_SEND_TIME: 3, EXT_AUDIO_LEVEL: 4}
VP8_KEY = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A]) + b"K" * 40   # S=1, PID=0, P=0
VP8_DELTA = bytes([0x10, 0x01]) + b"D" * 40                    # S=1, P=1


class FakeTransport:
    """A WebRtcTransport stand-in for both legs: ``rtcp`` keeps what was sent with
    ``send_rtcp``, ``rtp`` what consumers wrote to its send path (protect is the
    identity); ``connected`` is set from the start."""

    def __init__(self, role: str = "sub", connected: bool = True) -> None:
        self.role = role
        self.rtcp: list[bytes] = []
        self.rtp: list[bytes] = []
        self.connected = asyncio.Event()
        if connected:
            self.connected.set()
        self.cname = "cname-of-the-sub"
        self.closed = False

    def diagnostics(self) -> dict:
        return {"dtls": "failed", "ice": "failed", "pairs": ["127.0.0.1:1->127.0.0.1:2 FAILED"]}

    def send_rtcp(self, packet: bytes) -> bool:
        self.rtcp.append(packet)
        return True

    def rtcp_packets(self, kind: type | None = None) -> list:
        packets = [p for data in self.rtcp for p in parse_rtcp(data)]
        return [p for p in packets if kind is None or isinstance(p, kind)]

    @property
    def send_path(self):
        return (lambda packet: packet), (lambda data, addr: self.rtp.append(data)), ("127.0.0.1", 9)

    def native_send_path(self):
        return None

    def headers(self) -> list[tuple]:
        """``parse_header`` of every RTP packet written, in order."""
        return [parse_header(d) for d in self.rtp]

    def payloads(self) -> list[bytes]:
        return [d[h[5]:h[6]] for d, h in zip(self.rtp, self.headers())]

    async def close(self) -> None:
        self.closed = True


class Publisher:
    """Writes RTP of one stream into a producer, as the publisher's transport would."""

    def __init__(self, producer: Producer, ssrc: int = PUBLISHER_SSRC, seq: int = 65530,
                 ts: int = 0xFFFFF000, step: int = 3000) -> None:
        self.producer = producer
        self.ssrc = ssrc
        self.seq = seq
        self.ts = ts
        self.step = step

    def packet(self, payload: bytes, seq: int, ts: int, *, payload_type: int | None = None,
               extensions: list | None = None) -> bytes:
        return RtpPacket(payload_type=self.producer.codec.payload_type if payload_type is None
                         else payload_type, sequence_number=seq, timestamp=ts, ssrc=self.ssrc,
                         extensions=extensions or [], payload=payload).serialize()

    def send(self, payload: bytes, *, skip: int = 0, extensions: list | None = None) -> bytes:
        """The next packet (one frame each), ``skip`` sequence numbers later."""
        self.seq = (self.seq + skip) & 0xFFFF
        data = self.packet(payload, self.seq, self.ts, extensions=extensions)
        self.receive(data)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + self.step) & 0xFFFFFFFF
        return data

    def receive(self, data: bytes) -> None:
        pt, _, seq, ts, ssrc, offset, end, *_ = parse_header(data)
        self.producer.receive_rtp(data, pt, seq, ts, ssrc, offset, end)

# what the subscriber's answer negotiated: other payload types and extension ids
SUBSCRIBER_PAYLOAD_TYPES = {"video/VP8": 120, "audio/opus": 109}
SUBSCRIBER_EXT_IDS = {EXT_MID: 9, EXT_ABS_SEND_TIME: 7, EXT_AUDIO_LEVEL: 6}
