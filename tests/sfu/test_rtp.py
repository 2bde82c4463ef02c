"""sfu.rtp: RTP header parsing, extensions and rewriting, in the selected mode, with
aiortc's serializer as the independent oracle; plus compiled-vs-pure agreement."""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
import struct

import pytest
from aiortc import rtp as aiortc_rtp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfu import rtp
from sfu import _rtp_py as pure
from sfu.errors import MalformedPacket

DATA = pathlib.Path(__file__).parents[1] / "data"
MID, ABS_SEND_TIME, AUDIO_LEVEL, TRANSPORT_CC = 1, 3, 5, 7
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

try:
    compiled = importlib.import_module("sfu._rtp")
except ImportError:  # not built: the agreement tests skip
    compiled = None


def aiortc_map() -> aiortc_rtp.HeaderExtensionsMap:
    uris = {
        MID: "urn:ietf:params:rtp-hdrext:sdes:mid",
        ABS_SEND_TIME: "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        AUDIO_LEVEL: "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        TRANSPORT_CC: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    }
    header_map = aiortc_rtp.HeaderExtensionsMap()
    header_map.configure(RTCRtpParameters(
        headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in uris.items()]
    ))
    return header_map


def aiortc_packet(padding: int = 0, csrcs=(), **extensions) -> bytes:
    packet = aiortc_rtp.RtpPacket(payload_type=111, marker=1, sequence_number=65535,
                                  timestamp=0xFFFFFFF0, ssrc=0x12345678, payload=b"\xab" * 50)
    packet.csrc = list(csrcs)
    packet.padding_size = padding
    for name, value in extensions.items():
        setattr(packet.extensions, name, value)
    return packet.serialize(aiortc_map())


ALL_EXTENSIONS = dict(mid="video0", abs_send_time=0x123456, audio_level=(True, 42),
                      transport_sequence_number=4242)


def identity_map(**changes) -> bytes:
    table = bytearray(range(256))
    for old, new in changes.items():
        table[int(old[1:])] = new
    return bytes(table)


# --- against aiortc -------------------------------------------------------------------


@pytest.mark.parametrize("padding", [0, 1, 7])
@pytest.mark.parametrize("csrcs", [(), (1, 0xFFFFFFFF)])
def test_parse_matches_aiortc(padding, csrcs):
    data = aiortc_packet(padding, csrcs, **ALL_EXTENSIONS)
    theirs = aiortc_rtp.RtpPacket.parse(data, aiortc_map())
    ours = rtp.RtpPacket.parse(data)
    assert (ours.payload_type, ours.marker, ours.sequence_number, ours.timestamp, ours.ssrc) == (
        theirs.payload_type, theirs.marker, theirs.sequence_number, theirs.timestamp, theirs.ssrc)
    assert ours.csrcs == theirs.csrc == list(csrcs)
    assert ours.payload == theirs.payload and ours.padding_size == padding
    assert ours.extension_profile == 0xBEDE
    assert ours.extensions == [
        (MID, b"video0"), (ABS_SEND_TIME, b"\x12\x34\x56"), (AUDIO_LEVEL, b"\xaa"),
        (TRANSPORT_CC, struct.pack("!H", 4242)),
    ]
    assert rtp.find_extension(data, ABS_SEND_TIME) == b"\x12\x34\x56"
    assert rtp.find_extension(data, 9) is None


def test_serialize_is_what_aiortc_writes_and_reads():
    data = aiortc_packet(0, (7,), **ALL_EXTENSIONS)
    packet = rtp.RtpPacket.parse(data)
    assert packet.serialize() == data
    back = aiortc_rtp.RtpPacket.parse(packet.serialize(), aiortc_map())
    assert back.extensions.mid == "video0" and back.extensions.audio_level == (True, 42)


def test_padding_is_rewritten_as_zeros_with_the_count_last():
    data = aiortc_packet(5, **ALL_EXTENSIONS)  # aiortc pads with random bytes
    assert rtp.RtpPacket.parse(data).serialize() == data[:-5] + bytes(4) + b"\x05"


def test_parse_header_locates_everything():
    data = aiortc_packet(3, (9,), mid="0", abs_send_time=1)
    pt, marker, seq, ts, ssrc, start, end, profile, ext_offset, ext_length = rtp.parse_header(data)
    assert (pt, marker, seq, ts, ssrc) == (111, 1, 65535, 0xFFFFFFF0, 0x12345678)
    assert (profile, ext_offset, ext_length) == (0xBEDE, 20, 8)
    assert (start, end) == (28, len(data) - 3) and data[start:end] == b"\xab" * 50
    plain = aiortc_packet()
    assert rtp.parse_header(plain)[5:] == (12, 62, 0, 0, 0)


def test_fixture_from_aiortc_vp8_sender():
    data = (DATA / "rtp_vp8_keyframe.bin").read_bytes()
    packet = rtp.RtpPacket.parse(data)
    assert (packet.payload_type, packet.sequence_number, packet.timestamp, packet.ssrc) == (
        96, 4660, 0x11223344, 0x5EED5EED)
    assert packet.extensions == [(1, b"0"), (3, b"\x0a\xbc\xde"), (5, b"\x02\x01")]
    assert packet.payload[:4] == bytes.fromhex("90809234") and len(packet.payload) == 120
    assert packet.serialize() == data


# --- RFC 8285 forms -------------------------------------------------------------------


def test_rfc8285_one_byte_example_with_padding_and_reserved_id():
    # Elements: id 1 len 1, two padding bytes, id 2 len 2, then id 15 ends parsing.
    elements = bytes([0x10, 0xAA, 0x00, 0x00, 0x21, 0xBB, 0xCC, 0xF0, 0x31, 0x01, 0x02, 0x00])
    data = bytes.fromhex("906000010000000200000003") + struct.pack(
        "!HH", 0xBEDE, 3) + elements + b"payload"
    packet = rtp.RtpPacket.parse(data)
    assert packet.extensions == [(1, b"\xaa"), (2, b"\xbb\xcc")]
    assert rtp.find_extension(data, 3) is None and packet.payload == b"payload"


def test_two_byte_form_round_trips_and_keeps_its_appbits():
    packet = rtp.RtpPacket(payload_type=100, sequence_number=1, extension_profile=0x1003,
                           extensions=[(1, b""), (20, b"x" * 17), (255, b"rid")], payload=b"p")
    data = packet.serialize()
    assert struct.unpack_from("!HH", data, 12) == (0x1003, 7)
    assert rtp.RtpPacket.parse(data) == packet
    assert rtp.find_extension(data, 255) == b"rid" and rtp.find_extension(data, 1) == b""
    assert aiortc_rtp.unpack_header_extensions(0x1000, data[16:44]) == packet.extensions


def test_serialize_picks_the_form():
    small = rtp.RtpPacket(extensions=[(14, b"a" * 16)])
    assert struct.unpack_from("!H", small.serialize(), 12)[0] == 0xBEDE
    for extensions in ([(15, b"a")], [(1, b"a" * 17)], [(2, b"")]):
        data = rtp.RtpPacket(extensions=extensions).serialize()
        assert struct.unpack_from("!H", data, 12)[0] == 0x1000
        assert rtp.RtpPacket.parse(data).extensions == extensions


def test_other_profile_is_kept_raw():
    packet = rtp.RtpPacket(extension_profile=0xABCD, extension_data=b"\x01\x02\x03\x04" * 2)
    back = rtp.RtpPacket.parse(packet.serialize())
    assert back == packet and back.extensions == []
    assert rtp.find_extension(packet.serialize(), 1) is None


@pytest.mark.parametrize("bad", [
    dict(payload_type=128), dict(sequence_number=65536), dict(ssrc=-1), dict(padding_size=256),
    dict(csrcs=[0] * 16), dict(extensions=[(0, b"x")]), dict(extensions=[(300, b"")]),
    dict(extension_profile=0xABCD, extension_data=b"abc"),
])
def test_serialize_rejects_out_of_range_fields(bad):
    with pytest.raises(ValueError):
        rtp.RtpPacket(**bad).serialize()


def test_repr_and_equality():
    packet = rtp.RtpPacket(payload_type=96, payload=b"x" * 1000)
    assert "payload=<1000 bytes>" in repr(packet) and "payload_type=96" in repr(packet)
    assert packet == rtp.RtpPacket(payload_type=96, payload=b"x" * 1000)
    assert packet != rtp.RtpPacket(payload_type=97, payload=b"x" * 1000)


# --- rewrite --------------------------------------------------------------------------


def test_rewrite_replaces_header_and_keeps_the_rest():
    data = aiortc_packet(4, (5, 6), **ALL_EXTENSIONS)
    out = rtp.rewrite(data, 0xCAFEBABE, 7, 8, 96)
    assert len(out) == len(data) and out[12:] == data[12:]
    packet, original = rtp.RtpPacket.parse(out), rtp.RtpPacket.parse(data)
    assert (packet.ssrc, packet.sequence_number, packet.timestamp, packet.payload_type) == (
        0xCAFEBABE, 7, 8, 96)
    assert packet.marker == 1 and packet.csrcs == [5, 6] and packet.padding_size == 4
    assert packet.extensions == original.extensions and packet.payload == original.payload


def test_rewrite_wraps_sequence_and_timestamp():
    out = rtp.rewrite(aiortc_packet(), 2**32 + 1, 65536 + 3, 2**32 + 9, 0)
    assert rtp.parse_header(out)[2:5] == (3, 9, 1)
    assert rtp.parse_header(rtp.rewrite(aiortc_packet(), 1, -1, -1, 0))[2:4] == (65535, 2**32 - 1)


def test_rewrite_maps_ids_blanks_unmapped_and_stamps_abs_send_time():
    data = aiortc_packet(**ALL_EXTENSIONS)
    ext_map = identity_map(i1=4, i3=9, i5=0, i7=7)  # mid -> 4, abs -> 9, audio dropped
    out = rtp.rewrite(data, 1, 2, 3, 96, ext_map, 9, 0xABCDEF)
    assert len(out) == len(data)
    assert rtp.RtpPacket.parse(out).extensions == [
        (4, b"video0"), (9, b"\xab\xcd\xef"), (TRANSPORT_CC, struct.pack("!H", 4242))]
    theirs = aiortc_rtp.unpack_header_extensions(0xBEDE, out[16:16 + 4 * struct.unpack_from("!H", out, 14)[0]])
    assert (9, b"\xab\xcd\xef") in theirs


def test_rewrite_two_byte_form_and_ids_that_one_byte_cannot_hold():
    two = rtp.RtpPacket(extension_profile=0x1000, extensions=[(1, b"abc"), (2, b"")]).serialize()
    out = rtp.rewrite(two, 1, 2, 3, 96, identity_map(i1=200, i2=0), 200, 0x010203)
    assert rtp.RtpPacket.parse(out).extensions == [(200, b"\x01\x02\x03")]
    one = aiortc_packet(mid="x", abs_send_time=5)
    out = rtp.rewrite(one, 1, 2, 3, 96, identity_map(i1=15))  # 15 is reserved in one-byte form
    assert rtp.RtpPacket.parse(out).extensions == [(ABS_SEND_TIME, b"\x00\x00\x05")]


def test_rewrite_abs_send_time_without_map_and_only_three_byte_elements():
    data = rtp.RtpPacket(extensions=[(3, b"\x00\x00\x00"), (4, b"\x00\x00"), (3, b"\x00")]).serialize()
    out = rtp.rewrite(data, 1, 2, 3, 96, None, 3, abs_send_time=0x1FFFFFF)
    assert rtp.RtpPacket.parse(out).extensions == [
        (3, b"\xff\xff\xff"), (4, b"\x00\x00"), (3, b"\x00")]


def test_rewrite_puts_transport_cc_in_the_abs_send_time_element():
    # what a transport-cc subscriber gets: the element's 3 bytes become its 2 and padding
    data = aiortc_packet(mid="video0", abs_send_time=0x123456)
    ext_map = identity_map(i3=2, i7=0)  # abs-send-time -> 2; transport-cc is ours to write
    out = rtp.rewrite(data, 1, 2, 3, 96, ext_map, 2, 0xABCDEF, TRANSPORT_CC, 65536 + 4242)
    assert len(out) == len(data)
    theirs = aiortc_rtp.RtpPacket.parse(out, aiortc_map()).extensions
    assert (theirs.transport_sequence_number, theirs.mid, theirs.abs_send_time) == (4242, "video0", None)
    two = rtp.RtpPacket(extension_profile=0x1000, extensions=[(3, b"abc"), (1, b"")]).serialize()
    out = rtp.rewrite(two, 1, 2, 3, 96, None, 3, 0, 200, 0x0102)
    assert rtp.RtpPacket.parse(out).extensions == [(200, b"\x01\x02"), (1, b"")]
    # no abs-send-time slot, or an id the one-byte form cannot hold: nothing written
    assert rtp.rewrite(data, 1, 2, 3, 96, None, 0, 0, TRANSPORT_CC, 7) == rtp.rewrite(data, 1, 2, 3, 96)
    out = rtp.rewrite(data, 1, 2, 3, 96, None, ABS_SEND_TIME, 0x010203, 15, 7)
    assert rtp.find_extension(out, ABS_SEND_TIME) == b"\x01\x02\x03"
    # a negative twcc_seq: abs-send-time as before
    assert rtp.rewrite(data, 1, 2, 3, 96, None, ABS_SEND_TIME, 5, TRANSPORT_CC, -1) == \
        rtp.rewrite(data, 1, 2, 3, 96, None, ABS_SEND_TIME, 5)
    with pytest.raises(ValueError, match="twcc_id"):
        rtp.rewrite(data, 1, 2, 3, 96, None, ABS_SEND_TIME, 5, 256, 1)


def test_rewrite_rejects_bad_arguments_and_packets():
    data = aiortc_packet(mid="0")
    with pytest.raises(ValueError):
        rtp.rewrite(data, 1, 2, 3, 128)
    with pytest.raises(ValueError):
        rtp.rewrite(data, 1, 2, 3, 96, b"\x00" * 255)
    with pytest.raises(MalformedPacket):
        rtp.rewrite(data[:11], 1, 2, 3, 96)
    broken = bytearray(rtp.RtpPacket(extensions=[(1, b"ab")]).serialize())
    broken[16] = 0x1F  # element claims 16 bytes, the block has 4
    assert rtp.rewrite(bytes(broken), 1, 2, 3, 96)  # extensions untouched: not walked
    with pytest.raises(MalformedPacket):
        rtp.rewrite(bytes(broken), 1, 2, 3, 96, identity_map())


@pytest.mark.parametrize("data", [
    b"", b"\x80", b"\x80" * 11, b"\x40" + bytes(11),  # short, version 1
    b"\x81" + bytes(11),  # CSRC missing
    b"\x90" + bytes(11) + b"\xbe\xde",  # extension header truncated
    b"\x90" + bytes(11) + b"\xbe\xde\x00\x02" + bytes(4),  # extension block truncated
    b"\xa0" + bytes(11),  # padding bit, no room for the count
    b"\xa0" + bytes(11) + b"\x00",  # padding count 0
    b"\xa0" + bytes(11) + b"ab\x04",  # padding longer than the payload
])
def test_malformed_packets(data):
    for call in (rtp.parse_header, rtp.RtpPacket.parse, lambda d: rtp.find_extension(d, 1),
                 lambda d: rtp.rewrite(d, 1, 2, 3, 4)):
        with pytest.raises(MalformedPacket):
            call(data)


# --- small helpers --------------------------------------------------------------------


def test_is_rtcp():
    assert rtp.is_rtcp(b"\x80\xc8") and rtp.is_rtcp(b"\x81\xdf\x00")
    assert not rtp.is_rtcp(b"\x80\xe0") and not rtp.is_rtcp(b"\x80\x60") and not rtp.is_rtcp(b"\x80")
    assert aiortc_rtp.is_rtcp(aiortc_rtp.RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=2).__bytes__())


def test_seq_diff_and_newer():
    assert rtp.seq_diff(0, 65535) == 1 and rtp.seq_diff(65535, 0) == -1
    assert rtp.seq_diff(5, 5) == 0 and rtp.seq_diff(32767, 0) == 32767
    assert rtp.seq_diff(32768, 0) == -32768
    assert rtp.seq_newer(2, 65530) and not rtp.seq_newer(65530, 2) and not rtp.seq_newer(9, 9)


def test_abs_send_time():
    assert rtp.abs_send_time(0.0) == 0 and rtp.abs_send_time(1.0) == 1 << 18
    assert rtp.abs_send_time(1.5) == 0x60000 and rtp.abs_send_time(64.0 + 0.25) == 1 << 16
    assert rtp.abs_send_time(63.999999) == 0xFFFFFF
    ntp = int(1234.5678 * 2**32)  # what aiortc stamps: NTP 32.32 >> 14, masked
    assert rtp.abs_send_time(1234.5678) == (ntp >> 14) & 0xFFFFFF
    with pytest.raises(ValueError):
        rtp.abs_send_time(float("nan"))


# --- properties -----------------------------------------------------------------------

one_byte = st.lists(st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), max_size=5)
two_byte = st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=40)), max_size=5)


@st.composite
def packet_fields(draw) -> dict:
    fields = dict(
        payload_type=draw(st.integers(0, 127)), marker=draw(st.integers(0, 1)),
        sequence_number=draw(st.integers(0, 0xFFFF)), timestamp=draw(st.integers(0, 2**32 - 1)),
        ssrc=draw(st.integers(0, 2**32 - 1)),
        csrcs=draw(st.lists(st.integers(0, 2**32 - 1), max_size=15)),
        payload=draw(st.binary(max_size=64)), padding_size=draw(st.integers(0, 255)),
    )
    form = draw(st.sampled_from(["none", "one", "two", "other"]))
    if form == "one":
        fields.update(extension_profile=0xBEDE, extensions=draw(one_byte))
    elif form == "two":
        fields.update(extension_profile=0x1000 | draw(st.integers(0, 15)), extensions=draw(two_byte))
    elif form == "other":
        profile = draw(st.integers(1, 0xFFFF).filter(lambda p: p != 0xBEDE and p >> 4 != 0x100))
        words = draw(st.binary(max_size=12))
        fields.update(extension_profile=profile, extension_data=words + bytes(-len(words) % 4))
    return fields


def valid_packets():
    return packet_fields().map(lambda fields: pure.RtpPacket(**fields).serialize())


def mutated(data: bytes, draw) -> bytes:
    """A valid packet cut short, or with a few bytes overwritten."""
    if draw(st.booleans()):
        return data[: draw(st.integers(0, len(data)))]
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def outcome(call, *args):
    """What a call gives, comparable between the compiled and the pure module."""
    try:
        result = call(*args)
    except MalformedPacket:
        return "MalformedPacket"
    except Exception as exc:  # noqa: BLE001 - any other exception is the failure
        return f"unexpected {type(exc).__name__}: {exc}"
    if dataclasses.is_dataclass(result):
        return type(result).__name__, dataclasses.astuple(result)
    return result


def calls(module, data: bytes, ext_map: bytes) -> list:
    return [
        outcome(module.parse_header, data),
        outcome(module.RtpPacket.parse, data),
        outcome(module.find_extension, data, 3),
        outcome(module.rewrite, data, 1, 2, 3, 96, ext_map, 9, 0x123456),
        outcome(module.rewrite, data, 1, 2, 3, 96, ext_map, 9, 0x123456, 5, 0xBEEF),
        outcome(module.rewrite, data, 1, 2, 3, 96, None, 3, 0x123456, 200, 70000),
        outcome(module.rewrite, data, 1, 2, 3, 96, None, 3, 0x123456, 14, 1),
        outcome(module.rewrite, data, 0xFFFFFFFF, 0, 0, 127),
    ]


@SETTINGS
@given(packet_fields())
def test_serialize_parse_round_trip(fields):
    packet = rtp.RtpPacket(**fields)
    data = packet.serialize()
    assert rtp.RtpPacket.parse(data) == packet
    assert rtp.RtpPacket.parse(data).serialize() == data
    header = rtp.parse_header(data)
    assert data[header[5]:header[6]] == fields["payload"]
    for ext_id, value in packet.extensions[:1]:
        assert rtp.find_extension(data, ext_id) == value


@SETTINGS
@given(st.data())
def test_hostile_bytes_give_a_result_or_malformed(data):
    raw = data.draw(st.one_of(st.binary(max_size=80), valid_packets().map(lambda d: mutated(d, data.draw))))
    ext_map = data.draw(st.binary(min_size=256, max_size=256))
    for result in calls(rtp, raw, ext_map):
        assert not (isinstance(result, str) and result.startswith("unexpected")), result
    rewritten = outcome(rtp.rewrite, raw, 1, 2, 3, 96, ext_map, 9, 7)
    if isinstance(rewritten, bytes):
        assert len(rewritten) == len(raw)


@pytest.mark.skipif(compiled is None, reason="sfu._rtp is not built")
@SETTINGS
@given(st.data())
def test_compiled_and_pure_agree(data):
    raw = data.draw(st.one_of(
        st.binary(max_size=80),
        st.binary(min_size=12, max_size=80).map(lambda d: bytes([0x80 | d[0] & 0x3F]) + d[1:]),
        valid_packets(),
        valid_packets().map(lambda d: mutated(d, data.draw)),
    ))
    ext_map = data.draw(st.binary(min_size=256, max_size=256))
    assert calls(compiled, raw, ext_map) == calls(pure, raw, ext_map)
    a, b = data.draw(st.integers(-70000, 70000)), data.draw(st.integers(-70000, 70000))
    assert compiled.seq_diff(a, b) == pure.seq_diff(a, b)
    seconds = data.draw(st.floats(-1e6, 1e6))
    assert compiled.abs_send_time(seconds) == pure.abs_send_time(seconds)


@pytest.mark.skipif(compiled is None, reason="sfu._rtp is not built")
@SETTINGS
@given(packet_fields())
def test_compiled_and_pure_serialize_alike(fields):
    assert compiled.RtpPacket(**fields).serialize() == pure.RtpPacket(**fields).serialize()
    assert repr(compiled.RtpPacket(**fields)) == repr(pure.RtpPacket(**fields))
