from __future__ import annotations

import base64
import json

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalling.codec import JSON, MSGPACK, Codec, codec_for
from signalling.errors import BadRequest, TooLarge

JSON_CODEC = Codec(JSON)
MSGPACK_CODEC = Codec(MSGPACK)


@pytest.mark.parametrize("codec", [JSON_CODEC, MSGPACK_CODEC], ids=["json", "msgpack"])
def test_round_trip(codec):
    msg = {"type": "send", "id": 1, "topic": "t", "payload": {"a": [1, 2.5, None, True, "é"]}}
    frame = codec.encode(msg)
    assert isinstance(frame, bytes if codec.binary else str)
    assert codec.decode(frame) == msg


def test_msgpack_carries_binary_payloads():
    msg = {"type": "send", "payload": b"\x00\xff"}
    assert MSGPACK_CODEC.decode(MSGPACK_CODEC.encode(msg))["payload"] == b"\x00\xff"


def test_json_encodes_binary_as_base64():
    frame = JSON_CODEC.encode({"type": "message", "payload": b"\x00\xff"})
    assert json.loads(frame)["payload"] == base64.b64encode(b"\x00\xff").decode()


def test_no_subprotocol_is_json_and_unknown_ones_are_refused():
    assert codec_for(None).subprotocol == JSON
    assert codec_for(MSGPACK).binary
    with pytest.raises(ValueError):
        codec_for("dockcast.v2.xml")


BAD_JSON_FRAMES = [
    ("not json", "undecodable"),
    ("[1, 2]", "must be a map"),
    ('"type"', "must be a map"),
    ("{}", "missing field 'type'"),
    ('{"type": 3}', "'type' must be a string"),
    ('{"type": "ping"} {}', "undecodable"),
    ('{"type": "send", "payload": NaN}', "undecodable"),
    ('{"type": "send", "payload": Infinity}', "undecodable"),
    ('{"type": "send", "payload": "\\ud800"}', "undecodable"),
    ('{"type": "send", "payload": 1e999}', "finite"),
    ('{"type": "send", "payload": 18446744073709551616}', "64 bits"),
    ('{"type": "send", "payload": -9223372036854775809}', "64 bits"),
    ("[" * 100000, "undecodable"),
    ('{"type": "x", "p": ' + "[" * 40 + "]" * 40 + "}", "nested deeper"),
]


@pytest.mark.parametrize("frame, text", BAD_JSON_FRAMES)
def test_bad_json_frames(frame, text):
    with pytest.raises(BadRequest, match=text):
        JSON_CODEC.decode(frame)


def _nested(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


BAD_MSGPACK_FRAMES = [
    (b"\xc1", "undecodable"),  # never used
    (b"\x81\xa1a", "undecodable"),  # truncated
    (msgpack.packb([1]), "must be a map"),
    (msgpack.packb({"type": "ping"}) + b"\x00", "undecodable"),  # extra data
    (msgpack.packb({1: "x", "type": "ping"}), "undecodable"),  # int key
    (msgpack.packb({b"k": 1, "type": "ping"}), "keys must be strings"),
    (msgpack.packb({"type": "ping", "x": msgpack.ExtType(5, b"ab")}), "undecodable"),
    (msgpack.packb({"type": b"ping"}), "'type' must be a string"),
    (msgpack.packb({"type": "x", "v": float("nan")}), "finite"),
    (b"\x91" * 5000, "undecodable"),
    (b"\x81\xa4type\xa2\xff\xfe", "undecodable"),  # bad UTF-8
    (msgpack.packb({"type": "x", "p": _nested(40)}), "nested"),
]


@pytest.mark.parametrize("frame, text", BAD_MSGPACK_FRAMES)
def test_bad_msgpack_frames(frame, text):
    with pytest.raises(BadRequest, match=text):
        MSGPACK_CODEC.decode(frame)


def test_a_declared_length_beyond_the_frame_is_refused_before_allocating():
    # A str32 header announcing 4 GiB of text, with no text.
    with pytest.raises(BadRequest):
        MSGPACK_CODEC.decode(b"\x81\xa4type\xdb\xff\xff\xff\xff")


def test_wrong_frame_kind_for_the_subprotocol():
    with pytest.raises(BadRequest, match="text frames"):
        JSON_CODEC.decode(b'{"type": "ping"}')
    with pytest.raises(BadRequest, match="binary frames"):
        MSGPACK_CODEC.decode('{"type": "ping"}')


def test_error_keeps_a_valid_id_for_the_reply():
    with pytest.raises(BadRequest) as info:
        JSON_CODEC.decode('{"id": 12, "type": null}')
    assert info.value.request_id == 12
    with pytest.raises(BadRequest) as info:
        JSON_CODEC.decode('{"id": [12]}')
    assert info.value.request_id is None


def test_size_is_checked_before_decoding():
    small = Codec(JSON, max_frame_bytes=64)
    with pytest.raises(TooLarge, match="over the limit of 64"):
        small.decode("garbage " * 20)
    with pytest.raises(TooLarge):
        Codec(MSGPACK, max_frame_bytes=64).decode(b"\xc1" * 65)


def test_text_size_counts_utf8_bytes():
    small = Codec(JSON, max_frame_bytes=64)
    frame = json.dumps({"type": "x", "p": "é" * 30}, ensure_ascii=False)  # 47 chars, 77 bytes
    assert len(frame) <= 64
    with pytest.raises(TooLarge):
        small.decode(frame)


def test_encoded_size():
    assert JSON_CODEC.encoded_size("é") == 4  # '"é"'
    assert MSGPACK_CODEC.encoded_size(b"abc") == 5


# ---- fuzzing: nothing but BadRequest or TooLarge ---------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | st.binary(max_size=10),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5) | st.integers() | st.binary(max_size=3), children, max_size=4),
    max_leaves=30,
)


def _decode_or_refuse(codec: Codec, frame) -> None:
    try:
        msg = codec.decode(frame)
    except (BadRequest, TooLarge):
        return
    assert isinstance(msg, dict) and isinstance(msg["type"], str)
    # Whatever decodes re-encodes in both codecs (events carry payloads across them).
    JSON_CODEC.encode(msg)
    MSGPACK_CODEC.encode(msg)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_fuzz_random_frames(frame):
    for codec in (MSGPACK_CODEC, JSON_CODEC, Codec(MSGPACK, max_frame_bytes=50), Codec(JSON, max_frame_bytes=50)):
        _decode_or_refuse(codec, frame)


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from(["ping", 1, None]))
def test_fuzz_structured_values(value, msg_type):
    doc = {"type": msg_type, "v": value} if msg_type is not None else value
    try:
        packed = msgpack.packb(doc, use_bin_type=True)
    except OverflowError:  # an int beyond 64 bits: JSON can still carry it
        packed = b""
    _decode_or_refuse(MSGPACK_CODEC, packed)
    try:
        text = json.dumps(doc, default=repr)
    except (TypeError, ValueError):
        return
    _decode_or_refuse(JSON_CODEC, text)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=199))
def test_fuzz_corrupted_valid_frames(noise, at):
    frame = bytearray(MSGPACK_CODEC.encode({"type": "send", "id": 1, "payload": {"k": [1, "x", b"y"]}}))
    at %= len(frame)
    frame[at : at + len(noise)] = noise
    _decode_or_refuse(MSGPACK_CODEC, bytes(frame))
