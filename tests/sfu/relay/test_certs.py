"""The node's trunk certificate: made once in its directory (0600 files), the same
fingerprint afterwards, and fingerprints compared in any of their written forms."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from sfu.relay.certs import (
    CERT_FILE,
    KEY_FILE,
    TrunkCertificate,
    fingerprint,
    load_or_create,
    normalize_fingerprint,
    same_fingerprint,
)


def test_made_at_first_use_with_private_modes(tmp_path):
    folder = tmp_path / "node" / "trunk"
    made = load_or_create(folder, "node-a")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for name in (KEY_FILE, CERT_FILE):
        assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
    der = made.certificate.public_bytes(serialization.Encoding.DER)
    assert made.fingerprint == fingerprint(made.certificate) == hashlib.sha256(der).hexdigest()
    assert made.certificate.subject.rfc4514_string() == "CN=node-a"


def test_read_back_with_the_same_fingerprint(tmp_path):
    first = load_or_create(tmp_path)
    again = load_or_create(tmp_path)
    assert again.fingerprint == first.fingerprint
    assert again.private_key.private_numbers() == first.private_key.private_numbers()


def test_a_missing_certificate_is_made_again_from_the_kept_key(tmp_path):
    first = load_or_create(tmp_path)
    (tmp_path / CERT_FILE).unlink()
    again = load_or_create(tmp_path)
    assert again.certificate.public_key() == first.private_key.public_key()


def test_a_key_others_can_read_is_refused(tmp_path):
    load_or_create(tmp_path)
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(PermissionError, match=KEY_FILE):
        load_or_create(tmp_path)


def test_a_certificate_of_another_key_is_refused(tmp_path):
    load_or_create(tmp_path / "a")
    load_or_create(tmp_path / "b")
    os.replace(tmp_path / "b" / CERT_FILE, tmp_path / "a" / CERT_FILE)
    with pytest.raises(ValueError, match="is not the certificate of"):
        load_or_create(tmp_path / "a")


def test_fingerprints_compare_in_any_written_form():
    value = TrunkCertificate.generate().fingerprint
    colons = ":".join(value[i:i + 2] for i in range(0, 64, 2)).upper()
    assert normalize_fingerprint(colons) == value
    assert normalize_fingerprint(f"sha-256 {colons}") == value
    assert same_fingerprint(value, f"SHA-256 {colons}")
    assert not same_fingerprint(value, TrunkCertificate.generate().fingerprint)
    assert not same_fingerprint(value, "nonsense")
    with pytest.raises(ValueError):
        normalize_fingerprint(value[:-1] + "g")
