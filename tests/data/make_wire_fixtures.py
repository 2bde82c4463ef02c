"""Regenerate the wire-format fixtures used by tests/sfu/test_rtp.py, test_rtcp.py,
test_vp8.py and test_h264.py. The packets come from aiortc's own encoders and
serializers (an independent implementation), plus one hand-built transport-cc
feedback; the tests pin the values written here.

    .venv/bin/python tests/data/make_wire_fixtures.py
"""

from __future__ import annotations

import fractions
import pathlib
import struct

import av
from aiortc import rtp
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

HERE = pathlib.Path(__file__).parent


def extension_map() -> rtp.HeaderExtensionsMap:
    uris = {
        1: "urn:ietf:params:rtp-hdrext:sdes:mid",
        3: "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        5: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    }
    extensions = [RTCRtpHeaderExtensionParameters(id=i, uri=uri) for i, uri in uris.items()]
    header_map = rtp.HeaderExtensionsMap()
    header_map.configure(RTCRtpParameters(headerExtensions=extensions))
    return header_map


def first_payloads(encoder) -> list[bytes]:
    frame = av.VideoFrame(width=64, height=48, format="yuv420p")
    frame.pts, frame.time_base = 0, fractions.Fraction(1, 90000)
    return encoder.encode(frame)[0]


def main() -> None:
    encoder = Vp8Encoder()
    encoder.picture_id = 4660  # random by default
    vp8 = first_payloads(encoder)[0][:120]
    packet = rtp.RtpPacket(payload_type=96, marker=0, sequence_number=4660,
                           timestamp=0x11223344, ssrc=0x5EED5EED, payload=vp8)
    packet.extensions.mid = "0"
    packet.extensions.abs_send_time = 0x0ABCDE
    packet.extensions.transport_sequence_number = 513
    (HERE / "rtp_vp8_keyframe.bin").write_bytes(packet.serialize(extension_map()))

    stap_a = first_payloads(H264Encoder())[0]
    packet = rtp.RtpPacket(payload_type=102, marker=0, sequence_number=1,
                           timestamp=90000, ssrc=0x0BADCAFE, payload=stap_a)
    (HERE / "rtp_h264_stap_a.bin").write_bytes(packet.serialize())

    block = rtp.RtcpReceiverInfo(ssrc=0x5EED5EED, fraction_lost=25, packets_lost=-2,
                                 highest_sequence=70000, jitter=12, lsr=0x12345678,
                                 dlsr=65536)
    compound = [
        rtp.RtcpSrPacket(ssrc=0x0BADCAFE, sender_info=rtp.RtcpSenderInfo(
            ntp_timestamp=0xE8F0A1B2C3D4E5F6, rtp_timestamp=90000, packet_count=100,
            octet_count=120000), reports=[block]),
        rtp.RtcpSdesPacket(chunks=[rtp.RtcpSourceInfo(ssrc=0x0BADCAFE, items=[(1, b"dockcast")])]),
        rtp.RtcpRtpfbPacket(fmt=1, ssrc=0x0BADCAFE, media_ssrc=0x5EED5EED,
                            lost=[100, 101, 104, 116, 117, 300]),
        rtp.RtcpPsfbPacket(fmt=1, ssrc=0x0BADCAFE, media_ssrc=0x5EED5EED),
        rtp.RtcpPsfbPacket(fmt=15, ssrc=0x0BADCAFE, media_ssrc=0,
                           fci=rtp.pack_remb_fci(2_500_000, [0x5EED5EED])),
        rtp.RtcpByePacket(sources=[0x0BADCAFE]),
    ]
    (HERE / "rtcp_compound.bin").write_bytes(b"".join(bytes(p) for p in compound))

    # transport-cc, by hand from draft-holmer-rmcat-transport-wide-cc-extensions-01:
    # 10 packets from 100: a run-length chunk (3 x small delta), then a two-bit status
    # vector (large, lost, small, lost x4); deltas 4, 0, 255 ticks, -200 ticks, 8 ticks;
    # 26 bytes of body padded to 28 with the P bit.
    body = struct.pack("!IIHH", 0x0BADCAFE, 0x5EED5EED, 100, 10)
    body += bytes((0x00, 0x01, 0x02, 7))  # reference time 258 (x 64 ms), feedback #7
    body += struct.pack("!HH", 0x2003, 0xE100)
    body += bytes((4, 0, 255)) + struct.pack("!h", -200) + bytes((8,))
    body += b"\x00\x02"
    (HERE / "rtcp_twcc.bin").write_bytes(struct.pack("!BBH", 0xAF, 205, len(body) // 4) + body)


if __name__ == "__main__":
    main()
