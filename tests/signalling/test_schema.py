from __future__ import annotations

import pathlib
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalling.errors import BadRequest
from signalling.schema import ANY, SPECS, ListOf, OneOf, Record, Request, Scalar, ValueType, validate

PROTOCOL_DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
# Fails every type but ANY: not a string, number, bool, map; an array of an array.
WRONG = [[]]


def sample(vtype: ValueType) -> Any:
    """A valid value of ``vtype``."""
    if isinstance(vtype, Scalar):
        if vtype.choices:
            return vtype.choices[0]
        return {str: "x", int: 1, bool: True, dict: {}, object: {"any": 1}}[vtype.pytypes[0]]
    if isinstance(vtype, ListOf):
        return [sample(vtype.item)]
    if isinstance(vtype, Record):
        return {f.name: sample(f.type) for f in vtype.fields if f.required}
    if isinstance(vtype, OneOf):
        return sample(vtype.options[0])
    raise AssertionError(vtype)


def minimal(msg_type: str, **extra: Any) -> dict[str, Any]:
    spec = SPECS[msg_type]
    msg = {"type": msg_type, "id": 1}
    msg.update({f.name: sample(f.type) for f in spec.fields if f.required})
    msg.update(extra)
    return msg


def complete(msg_type: str) -> dict[str, Any]:
    msg = {"type": msg_type, "id": "req-1"}
    msg.update({f.name: sample(f.type) for f in SPECS[msg_type].fields})
    return msg


@pytest.mark.parametrize("msg_type", sorted(SPECS))
def test_minimal_and_complete_messages_validate(msg_type):
    for msg in (minimal(msg_type), complete(msg_type)):
        request = validate(msg)
        assert request.type == msg_type
        assert request.id == msg["id"]
        assert dict(request.fields) == {k: v for k, v in msg.items() if k not in ("type", "id")}


# Every typed field (``send.payload`` takes any value).
FIELDS = [(t, f.name) for t, s in sorted(SPECS.items()) for f in s.fields if f.type is not ANY]


@pytest.mark.parametrize("msg_type, name", FIELDS)
def test_an_ill_typed_field_is_named(msg_type, name):
    with pytest.raises(BadRequest, match=f"{re.escape(msg_type)}: field '{name}") as info:
        validate(minimal(msg_type, **{name: WRONG}))
    assert info.value.request_id == 1


REQUIRED = [(t, f.name) for t, s in sorted(SPECS.items()) for f in s.fields if f.required]


@pytest.mark.parametrize("msg_type, name", REQUIRED)
def test_a_missing_required_field_is_named(msg_type, name):
    msg = minimal(msg_type)
    del msg[name]
    with pytest.raises(BadRequest, match=f"missing field '{name}'"):
        validate(msg)


def test_nested_fields_are_named_with_their_path():
    msg = minimal("publish", tracks=[{"mid": "0", "kind": "audio", "source": "camera"}, {"mid": "1", "kind": "smell", "source": "camera"}])
    with pytest.raises(BadRequest, match=r"field 'tracks\[1\]\.kind' must be one of 'audio', 'video'"):
        validate(msg)
    with pytest.raises(BadRequest, match=r"missing field 'candidate\.candidate'"):
        validate(minimal("trickle", candidate={"sdpMid": "0"}))
    with pytest.raises(BadRequest, match=r"'resume\.last_seq' must be at least 0"):
        validate(minimal("hello", resume={"session_id": "s", "last_seq": -1}))


def test_unknown_type_is_bad_request():
    with pytest.raises(BadRequest, match="unknown message type 'room.explode'"):
        validate({"type": "room.explode", "id": 4})


@pytest.mark.parametrize("bad_id", [True, 1.5, [1], {"a": 1}])
def test_id_must_be_int_or_string(bad_id):
    with pytest.raises(BadRequest, match="field 'id'"):
        validate({"type": "ping", "id": bad_id})


def test_id_is_optional_and_null_means_absent():
    assert validate({"type": "ping"}).id is None
    assert validate({"type": "ping", "id": None}).id is None


def test_extra_fields_are_kept_for_newer_clients():
    request = validate(minimal("join", future_field={"x": 1}))
    assert request["future_field"] == {"x": 1}


def test_null_optional_field_counts_as_absent():
    request = validate(minimal("join", name=None))
    assert request.get("name", "anon") == "anon"
    with pytest.raises(BadRequest, match="field 'room' must be a non-empty string, got null"):
        validate(minimal("join", room=None))


def test_booleans_are_not_numbers_and_numbers_not_booleans():
    with pytest.raises(BadRequest, match="'seq' must be a non-negative integer, got a boolean"):
        validate(minimal("ack", seq=True))
    with pytest.raises(BadRequest, match="'record' must be a boolean, got a number"):
        validate(minimal("room.create", record=1))


def test_empty_names_are_refused():
    with pytest.raises(BadRequest, match="'room' must not be empty"):
        validate(minimal("join", room=""))


def test_request_is_read_only():
    request = validate(minimal("join"))
    with pytest.raises(TypeError):
        request.fields["room"] = "other"  # type: ignore[index]
    with pytest.raises(AttributeError):
        request.type = "leave"  # type: ignore[misc]
    assert isinstance(request, Request)


def test_grants_and_rooms_per_type():
    assert SPECS["publish"].grants == {"publish"} and SPECS["publish"].in_room
    assert SPECS["subscribe"].grants == {"subscribe"}
    assert SPECS["send"].grants == {"message"}
    assert SPECS["recording.start"].grants == {"record", "admin"}
    assert not SPECS["join"].grants and not SPECS["join"].in_room
    assert SPECS["trickle"].reply is None and SPECS["ack"].reply is None
    admin_types = [t for t in SPECS if t.split(".")[0] in ("room", "participant", "shipment", "inspection", "audit", "events")]
    assert admin_types and all(SPECS[t].grants == {"admin"} for t in admin_types)


def test_every_client_message_of_the_protocol_has_a_spec():
    text = PROTOCOL_DOC.read_text()
    sent = set()
    for line in text.splitlines():
        # The first column of the "client sends" tables: `type {fields}`.
        match = re.match(r"\| `([a-z.]+) \{", line)
        if match:
            sent.add(match.group(1))
        sent.update(re.findall(r"/ `([a-z.]+) \{", line))
    assert {"hello", "join", "trickle", "recording.stop", "events.subscribe"} <= sent
    assert sent == set(SPECS)


# ---- fuzzing: nothing but BadRequest -----------------------------------------------------

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)
field_names = st.sampled_from(sorted({f.name for s in SPECS.values() for f in s.fields} | {"id", "x"}))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(SPECS) + ["nope", ""]), st.dictionaries(field_names, values, max_size=6))
def test_fuzz_validate_random_fields(msg_type, fields):
    msg = {**fields, "type": msg_type}
    try:
        request = validate(msg)
    except BadRequest as exc:
        assert exc.code == "bad_request" and exc.message
        return
    assert request.type == msg_type


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(SPECS)), st.data())
def test_fuzz_one_field_replaced(msg_type, data):
    msg = complete(msg_type)
    names = [k for k in msg if k != "type"]
    name = data.draw(st.sampled_from(names))
    msg[name] = data.draw(values)
    try:
        validate(msg)
    except BadRequest as exc:
        assert name in exc.message or "id" == name
