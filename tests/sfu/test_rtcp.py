"""sfu.rtcp: compound RTCP parsing and serializing, in the selected mode, against
aiortc's RTCP classes and hand-built RFC/draft examples; plus twin agreement."""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
import struct

import pytest
from aiortc import rtp as aiortc_rtp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfu import rtcp
from sfu import _rtcp_py as pure
from sfu.errors import MalformedPacket

DATA = pathlib.Path(__file__).parents[1] / "data"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

try:
    compiled = importlib.import_module("sfu._rtcp")
except ImportError:  # not built: the agreement tests skip
    compiled = None

BLOCK = aiortc_rtp.RtcpReceiverInfo(ssrc=1, fraction_lost=2, packets_lost=-3,
                                    highest_sequence=4, jitter=5, lsr=6, dlsr=7)


def ours_block():
    return rtcp.ReportBlock(ssrc=1, fraction_lost=2, packets_lost=-3, highest_sequence=4,
                            jitter=5, lsr=6, dlsr=7)


AIORTC_CASES = [
    (aiortc_rtp.RtcpSrPacket(ssrc=9, sender_info=aiortc_rtp.RtcpSenderInfo(
        ntp_timestamp=2**64 - 1, rtp_timestamp=7, packet_count=8, octet_count=9), reports=[BLOCK]),
     lambda: rtcp.SenderReport(ssrc=9, ntp_timestamp=2**64 - 1, rtp_timestamp=7, packet_count=8,
                               octet_count=9, reports=[ours_block()])),
    (aiortc_rtp.RtcpRrPacket(ssrc=10, reports=[BLOCK, BLOCK]),
     lambda: rtcp.ReceiverReport(ssrc=10, reports=[ours_block(), ours_block()])),
    (aiortc_rtp.RtcpRrPacket(ssrc=10), lambda: rtcp.ReceiverReport(ssrc=10)),
    (aiortc_rtp.RtcpByePacket(sources=[13, 14]), lambda: rtcp.Bye(sources=[13, 14])),
    (aiortc_rtp.RtcpRtpfbPacket(fmt=1, ssrc=15, media_ssrc=16, lost=[100, 101, 105, 116, 117, 300]),
     lambda: rtcp.Nack(sender_ssrc=15, media_ssrc=16, lost=[100, 101, 105, 116, 117, 300])),
    (aiortc_rtp.RtcpPsfbPacket(fmt=1, ssrc=17, media_ssrc=18),
     lambda: rtcp.Pli(sender_ssrc=17, media_ssrc=18)),
    (aiortc_rtp.RtcpPsfbPacket(fmt=15, ssrc=19, media_ssrc=0,
                               fci=aiortc_rtp.pack_remb_fci(1_234_560, [20, 21])),
     lambda: rtcp.Remb(sender_ssrc=19, bitrate=1_234_560, ssrcs=[20, 21])),
    (aiortc_rtp.RtcpPsfbPacket(fmt=4, ssrc=1, media_ssrc=0, fci=struct.pack("!IB3x", 77, 5)),
     lambda: rtcp.Fir(sender_ssrc=1, media_ssrc=0, entries=[(77, 5)])),
]


@pytest.mark.parametrize("theirs, expected", AIORTC_CASES)
def test_parse_and_serialize_match_aiortc(theirs, expected):
    data = bytes(theirs)
    assert rtcp.parse_rtcp(data) == [expected()]
    assert expected().serialize() == data
    assert len(aiortc_rtp.RtcpPacket.parse(expected().serialize())) == 1


def test_sdes_matches_aiortc_and_pads_each_chunk():
    theirs = aiortc_rtp.RtcpSdesPacket(chunks=[aiortc_rtp.RtcpSourceInfo(ssrc=12, items=[(1, b"ab"), (2, b"n")])])
    parsed = rtcp.parse_rtcp(bytes(theirs))
    assert parsed == [rtcp.Sdes(chunks=[(12, [(1, b"ab"), (2, b"n")])])]
    # RFC 3550: each chunk ends with a null item and pads to 32 bits (aiortc pads once).
    two = rtcp.Sdes(chunks=[(1, [(1, b"cname@x")]), (2, [])])
    data = two.serialize()
    assert data == bytes.fromhex("82ca0006" "00000001" "0107636e616d65407800" "0000" "00000002" "00000000")
    assert rtcp.parse_rtcp(data) == [two]


def test_compound_fixture():
    packets = rtcp.parse_rtcp((DATA / "rtcp_compound.bin").read_bytes())
    assert [type(p).__name__ for p in packets] == ["SenderReport", "Sdes", "Nack", "Pli", "Remb", "Bye"]
    sr = packets[0]
    assert (sr.ssrc, sr.ntp_timestamp, sr.rtp_timestamp, sr.packet_count, sr.octet_count) == (
        0x0BADCAFE, 0xE8F0A1B2C3D4E5F6, 90000, 100, 120000)
    assert sr.reports == [rtcp.ReportBlock(ssrc=0x5EED5EED, fraction_lost=25, packets_lost=-2,
                                           highest_sequence=70000, jitter=12, lsr=0x12345678,
                                           dlsr=65536)]
    assert packets[1].chunks == [(0x0BADCAFE, [(1, b"dockcast")])]
    assert packets[2].lost == [100, 101, 104, 116, 117, 300]
    assert packets[4].bitrate == 2_500_000 and packets[4].ssrcs == [0x5EED5EED]
    assert rtcp.parse_rtcp(rtcp.serialize_rtcp(packets)) == packets


def test_transport_feedback_fixture():
    (feedback,) = rtcp.parse_rtcp((DATA / "rtcp_twcc.bin").read_bytes())
    assert feedback == rtcp.TransportFeedback(
        sender_ssrc=0x0BADCAFE, media_ssrc=0x5EED5EED, base_sequence=100, reference_time=258,
        feedback_count=7, packets=[(100, 1000), (101, 0), (102, 63750), (103, -50000), (104, None),
                                   (105, 2000)] + [(seq, None) for seq in range(106, 110)])
    assert rtcp.parse_rtcp(feedback.serialize()) == [feedback]


def test_transport_feedback_chunk_kinds_and_wrap():
    packets = [((65530 + i) & 0xFFFF, None if i % 5 == 2 else 250 * i) for i in range(40)]
    packets[7] = (packets[7][0], -2500)  # a negative, so large, delta
    packets += [((65530 + i) & 0xFFFF, None) for i in range(40, 60)]  # a run of losses
    feedback = rtcp.TransportFeedback(sender_ssrc=1, media_ssrc=2, base_sequence=65530,
                                      reference_time=-5, feedback_count=255, packets=packets)
    data = feedback.serialize()
    assert rtcp.parse_rtcp(data) == [feedback]
    chunks = struct.unpack_from("!5H", data, 20)
    # two-bit vectors around the large delta, one-bit vectors, a run of 18 losses
    assert [chunk >> 14 for chunk in chunks] == [0b11, 0b11, 0b10, 0b10, 0b00]
    assert chunks[4] == 18
    assert len(data) % 4 == 0


def test_transport_feedback_rounds_on_the_running_total():
    feedback = rtcp.TransportFeedback(packets=[(0, 100), (1, 100), (2, 100), (3, None), (4, 100)])
    (back,) = rtcp.parse_rtcp(feedback.serialize())
    assert back.packets == [(0, 0), (1, 250), (2, 0), (3, None), (4, 250)]  # 100, 200, 300, 400 us


def test_a_transport_feedback_claiming_too_many_packets_is_malformed():
    # 20 bytes whose run-length chunks would claim 65,535 packets lost: refused, unread
    data = struct.pack("!BBHIIHH3sB", 0x80 | 15, 205, 6, 1, 2, 0, 0xFFFF, b"\0\0\0", 0)
    data += struct.pack("!4H", *[0x1FFF] * 4)
    with pytest.raises(MalformedPacket, match="at most 8192"):
        rtcp.parse_rtcp(data)
    most = [(i, None) for i in range(rtcp.MAX_FEEDBACK_PACKETS)]
    (back,) = rtcp.parse_rtcp(rtcp.TransportFeedback(packets=most).serialize())
    assert len(back.packets) == rtcp.MAX_FEEDBACK_PACKETS


@pytest.mark.parametrize("packets", [[(1, 0)], [(0, 250 * 40000)], [(0, None)] * 8193])
def test_transport_feedback_rejects(packets):
    with pytest.raises(ValueError):
        rtcp.TransportFeedback(base_sequence=0, packets=packets).serialize()


def test_nack_wraps_and_keeps_order():
    for lost in ([65534, 65535, 0, 1, 15], [5, 3, 3], [0, 16, 17], list(range(100, 140))):
        (back,) = rtcp.parse_rtcp(rtcp.Nack(sender_ssrc=1, media_ssrc=2, lost=lost).serialize())
        assert back.lost == lost
    data = rtcp.Nack(lost=[65535, 0, 15]).serialize()
    assert data[12:] == struct.pack("!HH", 65535, 0b1000000000000001)


def test_bye_reason_remb_exponent_and_opaque_kinds():
    for bye in (rtcp.Bye(sources=[1], reason=b"bye"), rtcp.Bye(reason=b""), rtcp.Bye(reason=b"x" * 255)):
        assert rtcp.parse_rtcp(bye.serialize()) == [bye]
    remb = rtcp.Remb(sender_ssrc=3, bitrate=0x3FFFF << 40)
    assert rtcp.parse_rtcp(remb.serialize()) == [remb]
    assert remb.serialize()[17] >> 2 == 40
    for unknown in (rtcp.UnknownRtcp(packet_type=204, count=3, payload=b"nameDATA"),  # APP
                    rtcp.UnknownRtcp(packet_type=207, count=0, payload=b"xr1"),  # XR, padded
                    rtcp.UnknownRtcp(packet_type=205, count=3, payload=bytes(12)),  # TMMBR
                    rtcp.UnknownRtcp(packet_type=206, count=15, payload=bytes(8) + b"GOOG")):
        assert rtcp.parse_rtcp(unknown.serialize()) == [unknown]


def test_padding_bit_on_the_last_packet():
    pli = rtcp.Pli(sender_ssrc=1, media_ssrc=2).serialize()
    padded = bytes([pli[0] | 0x20, pli[1]]) + struct.pack("!H", 3) + pli[4:] + b"\x00\x00\x00\x04"
    assert rtcp.parse_rtcp(padded) == [rtcp.Pli(sender_ssrc=1, media_ssrc=2)]


@pytest.mark.parametrize("data", [
    b"", b"\x80\xc9\x00", b"\x40\xc9\x00\x00",  # empty, short header, version 1
    b"\x80\xc9\x00\x02\x00\x00\x00\x01",  # length past the end
    b"\x81\xc9\x00\x01\x00\x00\x00\x01",  # RR promising a block it lacks
    b"\x80\xc8\x00\x01\x00\x00\x00\x01",  # SR without sender info
    b"\xa0\xc9\x00\x01\x00\x00\x00\x00",  # padding count 0
    b"\xa0\xc9\x00\x01\x00\x00\x00\x09",  # padding longer than the packet
    b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x05ab",  # SDES item truncated
    b"\x81\xca\x00\x01\x00\x00\x00\x01",  # SDES chunk without end
    b"\x82\xcb\x00\x01\x00\x00\x00\x01",  # BYE with one source of two
    b"\x80\xcb\x00\x01\x09abc",  # BYE reason truncated
    b"\x81\xcd\x00\x01\x00\x00\x00\x01",  # feedback without media SSRC
    b"\x8f\xcd\x00\x03" + bytes(8) + b"\x00\x00\x00\x05",  # TWCC truncated
    b"\x8f\xcd\x00\x04" + bytes(8) + b"\x00\x00\x00\x01\x00\x00\x00\x00",  # TWCC chunks missing
    b"\x8f\xcd\x00\x05" + bytes(8) + b"\x00\x00\x00\x02\x00\x00\x00\x00\x40\x02\x00\x00",  # no delta
    b"\x8f\xcd\x00\x05" + bytes(8) + b"\x00\x00\x00\x01\x00\x00\x00\x00\x60\x01\x00\x00",  # reserved
    b"\x8f\xce\x00\x04" + bytes(8) + b"REMB\x02\x00\x00\x00",  # REMB SSRCs missing
    b"\x84\xce\x00\x03" + bytes(12),  # FIR entry of 4 bytes
])
def test_malformed(data):
    with pytest.raises(MalformedPacket):
        rtcp.parse_rtcp(data)


@pytest.mark.parametrize("packet", [
    lambda: rtcp.Pli(sender_ssrc=2**32), lambda: rtcp.ReportBlock(packets_lost=2**23).serialize(),
    lambda: rtcp.ReceiverReport(reports=[rtcp.ReportBlock()] * 32),
    lambda: rtcp.Nack(lost=[65536]), lambda: rtcp.Fir(entries=[(1, 256)]),
    lambda: rtcp.Remb(bitrate=-1), lambda: rtcp.Sdes(chunks=[(1, [(0, b"x")])]),
    lambda: rtcp.Bye(reason=b"x" * 256), lambda: rtcp.UnknownRtcp(packet_type=256),
    lambda: rtcp.TransportFeedback(reference_time=2**23),
])
def test_serialize_rejects_out_of_range_fields(packet):
    with pytest.raises(ValueError):
        value = packet()
        value.serialize() if not isinstance(value, bytes) else None


# --- properties -----------------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
blocks = st.lists(st.builds(dict, ssrc=u32, fraction_lost=st.integers(0, 255),
                            packets_lost=st.integers(-(2**23), 2**23 - 1),
                            highest_sequence=u32, jitter=u32, lsr=u32, dlsr=u32), max_size=3)


@st.composite
def packet_specs(draw):
    """(class name, fields) of a valid packet; built per module by ``build``."""
    kind = draw(st.sampled_from(["SenderReport", "ReceiverReport", "Sdes", "Bye", "Nack",
                                 "TransportFeedback", "Pli", "Fir", "Remb", "UnknownRtcp"]))
    if kind == "SenderReport":
        fields = dict(ssrc=draw(u32), ntp_timestamp=draw(st.integers(0, 2**64 - 1)),
                      rtp_timestamp=draw(u32), packet_count=draw(u32), octet_count=draw(u32),
                      reports=draw(blocks))
    elif kind == "ReceiverReport":
        fields = dict(ssrc=draw(u32), reports=draw(blocks))
    elif kind == "Sdes":
        items = st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=20)), max_size=3)
        fields = dict(chunks=draw(st.lists(st.tuples(u32, items), max_size=3)))
    elif kind == "Bye":
        fields = dict(sources=draw(st.lists(u32, max_size=4)),
                      reason=draw(st.none() | st.binary(max_size=20)))
    elif kind == "Nack":
        fields = dict(sender_ssrc=draw(u32), media_ssrc=draw(u32),
                      lost=draw(st.lists(st.integers(0, 0xFFFF), max_size=30)))
    elif kind == "TransportFeedback":
        base = draw(st.integers(0, 0xFFFF))
        deltas = draw(st.lists(st.none() | st.integers(-0x8000, 0x7FFF).map(lambda t: 250 * t), max_size=60))
        fields = dict(sender_ssrc=draw(u32), media_ssrc=draw(u32), base_sequence=base,
                      reference_time=draw(st.integers(-(2**23), 2**23 - 1)),
                      feedback_count=draw(st.integers(0, 255)),
                      packets=[((base + i) & 0xFFFF, d) for i, d in enumerate(deltas)])
    elif kind == "Pli":
        fields = dict(sender_ssrc=draw(u32), media_ssrc=draw(u32))
    elif kind == "Fir":
        fields = dict(sender_ssrc=draw(u32), media_ssrc=draw(u32),
                      entries=draw(st.lists(st.tuples(u32, st.integers(0, 255)), max_size=3)))
    elif kind == "Remb":
        mantissa, exponent = draw(st.integers(0, 0x3FFFF)), draw(st.integers(0, 63))
        fields = dict(sender_ssrc=draw(u32), bitrate=mantissa << exponent,
                      ssrcs=draw(st.lists(u32, max_size=4)))
    else:
        fields = dict(packet_type=draw(st.sampled_from([204, 207, 210, 0, 255])),
                      count=draw(st.integers(0, 31)), payload=draw(st.binary(max_size=20)))
    return kind, fields


def build(module, spec):
    kind, fields = spec
    if kind in ("SenderReport", "ReceiverReport"):
        fields = dict(fields, reports=[module.ReportBlock(**block) for block in fields["reports"]])
    return getattr(module, kind)(**fields)


def normalized(value):
    if dataclasses.is_dataclass(value):
        return type(value).__name__, tuple(normalized(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (list, tuple)):
        return [normalized(v) for v in value]
    return value


def outcome(call, *args):
    """What a call gives, comparable between the compiled and the pure module."""
    try:
        return normalized(call(*args))
    except MalformedPacket:
        return "MalformedPacket"
    except Exception as exc:  # noqa: BLE001 - any other exception is the failure
        return f"unexpected {type(exc).__name__}: {exc}"


@st.composite
def rtcp_like(draw) -> bytes:
    """Bytes with a plausible common header, so the per-type parsers are reached."""
    out = b""
    for _ in range(draw(st.integers(1, 3))):
        body = draw(st.binary(max_size=40))
        body += bytes(-len(body) % 4)
        first = 0x80 | draw(st.integers(0, 0x3F))
        packet_type = draw(st.sampled_from([200, 201, 202, 203, 204, 205, 206, 207]))
        out += bytes([first, packet_type]) + struct.pack("!H", len(body) // 4) + body
    return out


def hostile(draw) -> bytes:
    base = draw(st.one_of(st.binary(max_size=60), rtcp_like(),
                          packet_specs().map(lambda spec: build(pure, spec).serialize())))
    if base and draw(st.booleans()):
        base = base[: draw(st.integers(0, len(base)))]
    return base


@SETTINGS
@given(st.lists(packet_specs(), min_size=1, max_size=4))
def test_compound_round_trip(specs):
    packets = [build(rtcp, spec) for spec in specs]
    data = rtcp.serialize_rtcp(packets)
    assert len(data) % 4 == 0
    assert rtcp.parse_rtcp(data) == packets
    assert rtcp.serialize_rtcp(rtcp.parse_rtcp(data)) == data


@SETTINGS
@given(st.data())
def test_hostile_bytes_give_a_result_or_malformed(data):
    result = outcome(rtcp.parse_rtcp, hostile(data.draw))
    assert not (isinstance(result, str) and result.startswith("unexpected")), result


@pytest.mark.skipif(compiled is None, reason="sfu._rtcp is not built")
@SETTINGS
@given(st.data())
def test_compiled_and_pure_agree(data):
    raw = hostile(data.draw)
    assert outcome(compiled.parse_rtcp, raw) == outcome(pure.parse_rtcp, raw)


@pytest.mark.skipif(compiled is None, reason="sfu._rtcp is not built")
@SETTINGS
@given(packet_specs())
def test_compiled_and_pure_serialize_alike(spec):
    assert build(compiled, spec).serialize() == build(pure, spec).serialize()
    assert repr(build(compiled, spec)) == repr(build(pure, spec))
