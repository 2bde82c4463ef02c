"""plugins.audit.checkpoint: signing, verifying and the file/wire form."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from plugins.audit.checkpoint import Checkpoint, InvalidCheckpoint
from plugins.audit.keys import public_key_text

KEY = Ed25519PrivateKey.generate()
ROOT = hashlib.sha256(b"root").digest()


def test_sign_verify_parse_round_trip():
    cp = Checkpoint.sign("s-1", 12, ROOT, 1700000000.25, KEY)
    assert cp.key == public_key_text(KEY) and cp.ts == 1700000000.25 and cp.tst is None
    assert cp.verify(KEY.public_key()) and cp.verify(public_key_text(KEY))
    wire = cp.to_json()
    assert wire == {"session_id": "s-1", "size": 12, "root": ROOT.hex(), "ts": 1700000000.25,
                    "signature": base64.b64encode(cp.signature).decode(), "key": cp.key}
    again = Checkpoint.parse(json.loads(json.dumps(wire)))
    assert again == cp and isinstance(again, Checkpoint) and again.verify(KEY.public_key())
    with_tst = replace(cp, tst=b"\x30\x03\x02\x01\x00")
    assert Checkpoint.parse(with_tst.to_json()) == with_tst


def test_the_signed_message_is_exactly_the_documented_bytes():
    cp = Checkpoint.sign("s-1", 12, ROOT, 1700000000, KEY)  # an int time is signed as a float
    expected = b"dockcast-audit-checkpoint/v1\n" + f"s-1\n12\n{ROOT.hex()}\n1700000000.0\n".encode()
    assert cp.signed_message() == expected
    KEY.public_key().verify(cp.signature, expected)  # raises if the signature covers other bytes


@pytest.mark.parametrize("change", [
    {"session_id": "s-2"}, {"size": 13}, {"root": hashlib.sha256(b"other").digest()},
    {"ts": 1700000000.5}, {"signature": bytes(64)},
])
def test_any_changed_field_fails_verification(change):
    cp = Checkpoint.sign("s-1", 12, ROOT, 1700000000.25, KEY)
    assert not replace(cp, **change).verify(KEY.public_key())


def test_another_key_does_not_verify():
    cp = Checkpoint.sign("s-1", 12, ROOT, 1.0, KEY)
    assert not cp.verify(Ed25519PrivateKey.generate().public_key())


@pytest.mark.parametrize("change, match", [
    ({"size": -1}, "size"), ({"size": True}, "size"), ({"size": "12"}, "size"),
    ({"root": "AB" * 32}, "root"), ({"root": "ab" * 31}, "root"),
    ({"ts": "now"}, "ts"), ({"ts": float("nan")}, "ts"),
    ({"signature": "@@"}, "signature"), ({"signature": base64.b64encode(bytes(63)).decode()}, "signature"),
    ({"key": "AAAA"}, "key"), ({"session_id": ""}, "session_id"), ({"session_id": "a\nb"}, "session_id"),
    ({"tst": 5}, "tst"), ({"extra": 1}, "unknown fields"),
])
def test_malformed_fields_are_named(change, match):
    wire = {**Checkpoint.sign("s-1", 12, ROOT, 1.0, KEY).to_json(), **change}
    with pytest.raises(InvalidCheckpoint, match=match):
        Checkpoint.parse(wire)


def test_sign_refuses_what_it_could_not_parse_back():
    with pytest.raises(InvalidCheckpoint):
        Checkpoint.sign("a\nb", 1, ROOT, 1.0, KEY)
    with pytest.raises(InvalidCheckpoint):
        Checkpoint.sign("s", 1, b"short", 1.0, KEY)
    with pytest.raises(InvalidCheckpoint):
        Checkpoint.sign("s", 1, ROOT, float("inf"), KEY)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                     max_leaves=8)
_fields = st.sampled_from(["session_id", "size", "root", "ts", "signature", "key", "tst", "x"])


@given(st.dictionaries(_fields, _json) | _json)
def test_parse_takes_any_json_and_only_raises_invalid_checkpoint(obj):
    try:
        cp = Checkpoint.parse(obj)
    except InvalidCheckpoint:
        return
    assert Checkpoint.parse(cp.to_json()) == cp


@given(st.sampled_from(["session_id", "size", "root", "ts", "signature", "key"]), _json)
def test_parse_of_a_real_checkpoint_with_one_field_replaced(name, value):
    wire = Checkpoint.sign("s-1", 12, ROOT, 1.0, KEY).to_json()
    wire[name] = value
    try:
        cp = Checkpoint.parse(wire)
    except InvalidCheckpoint:
        return
    # whatever parses either is the original or no longer verifies
    assert cp.verify(KEY.public_key()) == (cp == Checkpoint.sign("s-1", 12, ROOT, 1.0, KEY))


def test_the_documented_example_message_is_what_the_test_session_signs(session):
    """docs/audit.md shows the signed message of this session's checkpoint 2, byte for byte."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "audit.md").read_text()
    example = doc.split("```\ndockcast-audit-checkpoint/v1\n", 1)[1].split("```", 1)[0]
    cp = Checkpoint.parse(json.loads(session.checkpoints.read_bytes().split(b"\n")[1]))
    assert cp.signed_message() == b"dockcast-audit-checkpoint/v1\n" + example.encode()
    assert cp.verify(session.public_key)
