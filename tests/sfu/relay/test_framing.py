"""The trunk's wire formats: datagrams (flow id + RTP/RTCP) and control frames, round
trips, and any bytes from a peer giving a message or a MalformedFrame."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.errors import MalformedPacket
from sfu.relay.errors import FrameTooLarge, MalformedFrame
from sfu.relay.framing import (
    MAX_CONTROL_FRAME,
    MAX_FLOW,
    VERSION,
    ControlMessage,
    ControlReader,
    Datagram,
    ErrorMessage,
    FlowClosed,
    Hello,
    Keyframe,
    Subscribe,
    Subscribed,
    TrackInfo,
    Unsubscribe,
    datagram_prefix,
    decode_varint,
    encode_control,
    encode_varint,
    split_datagram,
)
from sfu.rtcp import Pli, serialize_rtcp
from sfu.rtp import RtpPacket

TRACK = TrackInfo(track_id="TR_abc", participant_id="PA_cam", kind="video", codec="video/VP8",
                  clock_rate=90000, payload_type=96, ext_ids={"urn:ietf:params:rtp-hdrext:sdes:mid": 1},
                  parameters={"profile-id": 0, "x": "y"}, source="camera", name="dock 3", mid="0")
MESSAGES = [
    Hello("node-a"), Subscribe(4, "shop-1", "TR_abc"), Subscribed(4, TRACK),
    Subscribed(8, TrackInfo("TR_o", "PA_m", "audio", "audio/opus", 48000, 111, channels=2)),
    ErrorMessage(4, "not_found", "no such track"), ErrorMessage(None, "forbidden"),
    Unsubscribe(4), Keyframe(6), FlowClosed(4, "unpublished"),
]
RTP = RtpPacket(payload_type=96, sequence_number=7, timestamp=9, ssrc=1, payload=b"x" * 20).serialize()
RTCP = serialize_rtcp([Pli(sender_ssrc=1, media_ssrc=2)])


@pytest.mark.parametrize("value,size", [(0, 1), (63, 1), (64, 2), (16383, 2), (16384, 4),
                                        (2**30 - 1, 4), (2**30, 8), (2**62 - 1, 8)])
def test_varint_round_trip_at_each_size_boundary(value, size):
    data = encode_varint(value)
    assert len(data) == size
    assert decode_varint(data + b"rest") == (value, size)


def test_varint_out_of_range_and_cut_short():
    with pytest.raises(ValueError):
        encode_varint(2**62)
    with pytest.raises(MalformedFrame):
        decode_varint(encode_varint(70000)[:3])
    with pytest.raises(MalformedFrame):
        decode_varint(b"")


@pytest.mark.parametrize("flow", [0, 2, 4, 62, 64, 1000, MAX_FLOW])
@pytest.mark.parametrize("rtcp,packet", [(False, RTP), (True, RTCP)])
def test_datagram_round_trip(flow, rtcp, packet):
    datagram = Datagram(flow, rtcp, packet)
    data = datagram.serialize()
    assert data == datagram_prefix(flow, rtcp) + packet
    assert Datagram.parse(data) == datagram
    wire_flow, start = split_datagram(data)
    assert (wire_flow, data[start:]) == (flow | rtcp, packet)


def test_rtcp_rides_the_next_odd_flow_id():
    assert datagram_prefix(4, rtcp=True) == bytes([5])
    assert datagram_prefix(100) == encode_varint(100)


@pytest.mark.parametrize("flow", [1, 3, -2, MAX_FLOW + 2])
def test_flow_ids_are_even_and_in_range(flow):
    with pytest.raises(ValueError):
        datagram_prefix(flow)


@pytest.mark.parametrize("data", [b"", b"\x04", b"\x04" + RTP[:11], b"\x05\x80\xc8",
                                  b"\x04" + bytes([0x40]) + RTP[1:], b"\xc0\x00"])
def test_bad_datagrams_are_malformed(data):
    with pytest.raises(MalformedFrame):
        Datagram.parse(data)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.TYPE)
def test_control_messages_round_trip(message):
    assert ControlMessage.parse(message.serialize()) == message
    reader = ControlReader()
    assert reader.feed(encode_control(message)) == [message]


def test_the_hello_carries_this_version():
    assert msgpack.unpackb(Hello("a").serialize()) == {"type": "hello", "node_id": "a",
                                                        "version": VERSION}


def test_control_reader_takes_frames_split_anywhere():
    stream = b"".join(encode_control(m) for m in MESSAGES)
    for cut in (1, 2, 3, 7, 50):
        reader = ControlReader()
        got = []
        for i in range(0, len(stream), cut):
            got += reader.feed(stream[i:i + cut])
        assert got == MESSAGES


def test_a_frame_over_the_limit_is_refused_from_its_length():
    reader = ControlReader()
    with pytest.raises(FrameTooLarge) as caught:
        reader.feed(encode_varint(MAX_CONTROL_FRAME + 1))
    assert caught.value.code == "too_large"


@pytest.mark.parametrize("body", [
    b"\xc1",                                                   # not msgpack
    msgpack.packb([1, 2]),                                     # not a map
    msgpack.packb({"type": "launch"}),                         # unknown type
    msgpack.packb({"flow": 2}),                                # no type
    msgpack.packb({"type": "subscribe", "flow": 2, "room": "r"}),             # missing field
    msgpack.packb({"type": "subscribe", "flow": 3, "room": "r", "track_id": "t"}),  # odd flow
    msgpack.packb({"type": "subscribe", "flow": True, "room": "r", "track_id": "t"}),
    msgpack.packb({"type": "subscribe", "flow": 2, "room": "", "track_id": "t"}),
    msgpack.packb({"type": "subscribe", "flow": 2, "room": "r" * 300, "track_id": "t"}),
    msgpack.packb({"type": "hello", "node_id": "a", "version": 1.0}),
    msgpack.packb({"type": "subscribed", "flow": 2, "track": {**TRACK.to_map(), "kind": "data"}}),
    msgpack.packb({"type": "subscribed", "flow": 2, "track": {**TRACK.to_map(), "payload_type": 128}}),
    msgpack.packb({"type": "subscribed", "flow": 2, "track": {**TRACK.to_map(), "ext_ids": {"u": 0}}}),
    msgpack.packb({"type": "subscribed", "flow": 2, "track": "video"}),
])
def test_bad_control_frames_are_malformed(body):
    with pytest.raises(MalformedFrame) as caught:
        ControlMessage.parse(body)
    assert isinstance(caught.value, (ValueError, MalformedPacket))
    assert caught.value.code == "bad_request"


def test_unknown_fields_are_ignored():
    body = msgpack.packb({"type": "keyframe", "flow": 2, "layer": 1})
    assert ControlMessage.parse(body) == Keyframe(2)


# -- hypothesis ---------------------------------------------------------------------------

names = st.text(min_size=1, max_size=40)
flows = st.integers(0, MAX_FLOW // 2).map(lambda n: 2 * n)
tracks = st.builds(
    TrackInfo, track_id=names, participant_id=names, kind=st.sampled_from(["audio", "video"]),
    codec=names, clock_rate=st.integers(1, 10_000_000), payload_type=st.integers(0, 127),
    channels=st.none() | st.integers(1, 255),
    ext_ids=st.dictionaries(names, st.integers(1, 255), max_size=16),
    parameters=st.dictionaries(names, st.integers(-2**31, 2**31) | st.text(max_size=50), max_size=8),
    source=names, name=st.none() | st.text(max_size=50), mid=names)
messages = st.one_of(
    st.builds(Hello, names, st.integers(0, 2**31)),
    st.builds(Subscribe, flows, names, names), st.builds(Subscribed, flows, tracks),
    st.builds(ErrorMessage, st.none() | flows, names, st.text(max_size=100)),
    st.builds(Unsubscribe, flows), st.builds(Keyframe, flows),
    st.builds(FlowClosed, flows, st.text(max_size=100)))
msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20)
hostile_maps = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(ControlMessage._BY_TYPE)) | msgpack_values},
    optional={k: msgpack_values for k in ("flow", "room", "track_id", "node_id", "version",
                                          "code", "message", "reason", "track")})


@given(messages)
def test_any_message_round_trips(message):
    assert ControlMessage.parse(message.serialize()) == message


@given(st.lists(messages, max_size=5), st.integers(1, 64))
def test_any_stream_of_messages_round_trips_through_the_reader(batch, cut):
    stream = b"".join(encode_control(m) for m in batch)
    reader = ControlReader()
    got = []
    for i in range(0, len(stream), cut):
        got += reader.feed(stream[i:i + cut])
    assert got == batch


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_bytes_parse_to_a_message_or_malformed(body):
    try:
        message = ControlMessage.parse(body)
    except MalformedFrame:
        return
    assert isinstance(message, ControlMessage)


@settings(max_examples=300)
@given(hostile_maps)
def test_any_msgpack_map_parses_to_a_valid_message_or_malformed(data):
    try:
        message = ControlMessage.parse(msgpack.packb(data, use_bin_type=True))
    except MalformedFrame:
        return
    assert ControlMessage.parse(message.serialize()) == message  # what parsed is well-formed


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_any_bytes_fed_to_the_reader_give_messages_or_malformed(data):
    try:
        assert all(isinstance(m, ControlMessage) for m in ControlReader().feed(data))
    except MalformedFrame:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=100))
def test_any_bytes_parse_to_a_datagram_or_malformed(data):
    try:
        datagram = Datagram.parse(data)
    except MalformedFrame:
        return
    assert datagram.flow % 2 == 0 and Datagram.parse(datagram.serialize()) == datagram
