"""plugins.audit.keys: the node's signing key file and the public key text."""

from __future__ import annotations

import base64
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from plugins.audit.keys import (
    InvalidPublicKey,
    KeyFileError,
    key_path,
    load_or_create_signing_key,
    parse_public_key,
    public_key_text,
)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_key_is_made_once_private_and_reloaded(tmp_path):
    key = load_or_create_signing_key(tmp_path)
    path = key_path(tmp_path)
    assert path == tmp_path / "keys" / "audit-ed25519.pem"
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8, unencrypted
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    again = load_or_create_signing_key(tmp_path)
    assert public_key_text(again) == public_key_text(key)


def test_public_key_text_is_base64_of_the_raw_32_bytes(tmp_path):
    key = load_or_create_signing_key(tmp_path)
    text = public_key_text(key)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64decode(text, validate=True) == raw and len(text) == 44 and text.endswith("=")
    assert public_key_text(key.public_key()) == text
    assert parse_public_key(text).public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw) == raw
    assert parse_public_key(f"  {text}\n")  # pasted with whitespace around it


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_may_read_is_refused(tmp_path, mode):
    load_or_create_signing_key(tmp_path)
    os.chmod(key_path(tmp_path), mode)
    with pytest.raises(KeyFileError, match=f"mode {mode:04o}.*chmod 600"):
        load_or_create_signing_key(tmp_path)


def test_a_keys_directory_others_may_enter_is_refused(tmp_path):
    (tmp_path / "keys").mkdir(mode=0o755)
    os.chmod(tmp_path / "keys", 0o755)
    with pytest.raises(KeyFileError, match="keys has mode 0755"):
        load_or_create_signing_key(tmp_path)
    assert not key_path(tmp_path).exists()  # nothing written into it


def test_a_key_file_of_another_kind_is_refused(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    path = key_path(tmp_path)
    path.parent.mkdir(mode=0o700)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        load_or_create_signing_key(tmp_path)
    path.write_bytes(b"garbage")
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        load_or_create_signing_key(tmp_path)


@pytest.mark.parametrize("text, match", [
    ("not base64!", "not base64"),
    ("AAAA", "decodes to 3 bytes"),
    (base64.b64encode(bytes(33)).decode(), "decodes to 33 bytes"),
    ("", "decodes to 0 bytes"),
    (None, "base64 text, not NoneType"),
])
def test_bad_public_key_texts_are_refused_clearly(text, match):
    with pytest.raises(InvalidPublicKey, match=match) as info:
        parse_public_key(text)
    assert isinstance(info.value, ValueError)


def test_a_fresh_key_signs_what_its_public_text_verifies(tmp_path):
    key = load_or_create_signing_key(tmp_path)
    assert isinstance(key, Ed25519PrivateKey)
    parse_public_key(public_key_text(key)).verify(key.sign(b"m"), b"m")  # raises if wrong
