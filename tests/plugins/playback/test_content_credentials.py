"""C2PA manifests on MP4 exports, read back by the C2PA SDK's own reader: our assertion,
the validation codes (self-issued certificate: ``signingCredential.untrusted`` only;
trusted once the node's CA is a trust anchor), the media untouched, one changed byte a
hash mismatch; the node's credentials (modes, certificate profile, renewal) and a
deployment's (refused by name when they cannot sign)."""

from __future__ import annotations

import datetime
import json
import os
import stat
import struct

import av
import c2pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from plugins.audit import Checkpoint
from plugins.playback import (
    ASSERTION_LABEL,
    ContentCredentialsError,
    UnsupportedContainer,
    export_recording,
    export_signed_mp4,
    load_credentials,
    node_credentials,
)
from plugins.playback.content_credentials import CA_FILE, SIGNING_FILE, last_checkpoint

from . import evidence

TOOL = {"name": "dockcast export", "version": "test"}
YEAR = 365 * 86400


def boxes(data: bytes) -> dict[bytes, bytes]:
    """An MP4's top-level boxes by type (the last of each type)."""
    out, offset = {}, 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        out[kind] = data[offset:offset + size]
        offset += size
    return out


def read(path, trust: bytes | None = None) -> tuple[str, dict, list[str]]:
    """The C2PA reader's verdict: validation state, active manifest, failure codes."""
    context = c2pa.Context.from_dict({"trust": {"trust_anchors": trust.decode()}}) if trust else None
    with open(path, "rb") as f:
        reader = c2pa.Reader("video/mp4", f, context=context) if context else c2pa.Reader("video/mp4", f)
        results = reader.get_validation_results()["activeManifest"]
        return (reader.get_validation_state(), reader.get_active_manifest(),
                [c["code"] for c in results.get("failure", [])])


@pytest.fixture(scope="module")
def h264(tmp_path_factory) -> evidence.Evidence:
    return evidence.make(tmp_path_factory.mktemp("data"), "H264")


@pytest.fixture(scope="module")
def signed(h264, tmp_path_factory):
    """The H.264 recording exported to MP4 and signed with the node's credentials."""
    out = tmp_path_factory.mktemp("out") / "REC_1.mp4"
    unsigned = out.with_name("unsigned.mp4")
    export_recording(h264.recording, unsigned)
    result, manifest = export_signed_mp4(h264.recording, out, node_credentials(h264.data),
                                         audit_root=h264.data / "audit", tool=TOOL)
    return out, unsigned, result, manifest


def test_the_manifest_reads_back_with_our_assertion_and_the_last_checkpoint(h264, signed):
    out, _, result, returned = signed
    state, manifest, failures = read(out)
    ours = next(a["data"] for a in manifest["assertions"] if a["label"] == ASSERTION_LABEL)
    last = json.loads((h264.audit / "checkpoints.jsonl").read_bytes().splitlines()[-1])
    assert ours == {"recording_id": "REC_1", "session_id": "SE_1", "room": "dock-7",
                    "shipment_id": None, "checkpoint": last, "export_tool": TOOL}
    assert last["key"] == h264.public_key and last["size"] == 6
    assert manifest["claim_generator_info"][0]["name"] == "dockcast export"
    assert manifest["signature_info"]["common_name"] == "Dockcast node C2PA signer"
    assert returned["label"] == manifest["label"]
    # Self-issued: the signature, the hashes and the assertions hold; only the trust
    # in the certificate is missing, and the SDK still calls the manifest Valid.
    assert state == "Valid"
    assert failures == ["signingCredential.untrusted"]
    assert result.path == out and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(p.name for p in out.parent.iterdir()) == ["REC_1.mp4", "unsigned.mp4"]


def test_with_the_node_ca_as_trust_anchor_the_manifest_is_trusted(h264, signed):
    state, _, failures = read(signed[0], trust=(h264.data / CA_FILE).read_bytes())
    assert (state, failures) == ("Trusted", [])


def test_the_media_is_untouched_and_still_plays(signed):
    out, unsigned, _, _ = signed
    before, after = boxes(unsigned.read_bytes()), boxes(out.read_bytes())
    assert after[b"mdat"] == before[b"mdat"]  # the samples, byte for byte
    assert b"uuid" in after and b"uuid" not in before  # the manifest's box
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 60


def test_one_byte_changed_in_the_media_data_is_a_hash_mismatch(signed, tmp_path):
    data = bytearray(signed[0].read_bytes())
    data[data.index(b"mdat") + 500] ^= 0x01
    (tmp_path / "changed.mp4").write_bytes(bytes(data))
    state, _, failures = read(tmp_path / "changed.mp4")
    assert state == "Invalid"
    assert "assertion.bmffHash.mismatch" in failures


def test_no_audit_log_signs_without_a_checkpoint(h264, tmp_path):
    _, manifest = export_signed_mp4(h264.recording, tmp_path / "x.mp4", node_credentials(tmp_path),
                                    audit_root=tmp_path / "audit", tool=TOOL)
    ours = next(a["data"] for a in manifest["assertions"] if a["label"] == ASSERTION_LABEL)
    assert ours["session_id"] == "SE_1" and ours["checkpoint"] is None


def test_a_failed_export_leaves_nothing(tmp_path):
    recording = evidence.record(tmp_path, "VP8")  # VP8 does not go into MP4
    (tmp_path / "out").mkdir()
    with pytest.raises(UnsupportedContainer, match="cannot hold video/VP8"):
        export_signed_mp4(recording, tmp_path / "out" / "x.mp4", node_credentials(tmp_path),
                          audit_root=None, tool=TOOL)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_certificate_the_sdk_refuses_leaves_nothing(h264, tmp_path):
    """A bare certificate signed by its own key (no key usage, no chain) passes our checks; the
    SDK refuses it when signing, and nothing is left."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert, key_file = _chain(tmp_path, key, ca_key=key)
    (tmp_path / "out").mkdir()
    with pytest.raises(ContentCredentialsError,
                       match=r"C2PA signing of x.mp4 with .*chain.pem.* failed: .*certificate is invalid"):
        export_signed_mp4(h264.recording, tmp_path / "out" / "x.mp4", load_credentials(cert, key_file),
                          audit_root=None, tool=TOOL)
    assert list((tmp_path / "out").iterdir()) == []


# --- the node's credentials -------------------------------------------------------------

def test_node_credentials_are_made_once_private_and_fit_c2pa(tmp_path):
    first = node_credentials(tmp_path)
    assert node_credentials(tmp_path) == first
    keys = tmp_path / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for name in (SIGNING_FILE.name, CA_FILE.name):
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600
    assert sorted(p.name for p in keys.iterdir()) == [CA_FILE.name, SIGNING_FILE.name]
    pem = (tmp_path / SIGNING_FILE).read_bytes()
    assert pem.count(b"PRIVATE KEY-----\n") == 2  # one key (BEGIN and END): the CA's is not kept
    leaf, ca = x509.load_pem_x509_certificates(first.chain_pem)
    assert ca.public_bytes(serialization.Encoding.PEM) == (tmp_path / CA_FILE).read_bytes()
    assert leaf.issuer == ca.subject != leaf.subject
    leaf.verify_directly_issued_by(ca)
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in leaf.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert first.alg == "es256"


def test_an_expired_node_certificate_is_replaced(tmp_path):
    first = node_credentials(tmp_path)
    later = node_credentials(tmp_path, now=first.certificate.not_valid_after_utc.timestamp() + 1)
    assert later.certificate.serial_number != first.certificate.serial_number
    assert later.certificate.not_valid_after_utc > first.certificate.not_valid_after_utc
    assert (tmp_path / CA_FILE).read_bytes() in later.chain_pem


@pytest.mark.parametrize("target", ["keys", "keys/" + SIGNING_FILE.name])
def test_credentials_others_may_read_are_refused(tmp_path, target):
    node_credentials(tmp_path)
    os.chmod(tmp_path / target, 0o755 if target == "keys" else 0o644)
    with pytest.raises(ContentCredentialsError, match=r"has mode 06?44|has mode 0755"):
        node_credentials(tmp_path)


# --- a deployment's credentials ---------------------------------------------------------

def _chain(tmp_path, key, *, days: float = 30, start_days: float = -1, ca_key=None):
    ca_key = ca_key or ec.generate_private_key(ec.SECP384R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Warehouse LA signer")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Warehouse LA CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=start_days))
            .not_valid_after(now + datetime.timedelta(days=days)).sign(ca_key, hashes.SHA384()))
    cert_path, key_path = tmp_path / "chain.pem", tmp_path / "signer.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_a_deployments_credentials_load_with_their_algorithm(tmp_path):
    cert, key = _chain(tmp_path, ec.generate_private_key(ec.SECP384R1()))
    credentials = load_credentials(cert, key)
    assert credentials.alg == "es384"
    assert credentials.certificate.subject.rfc4514_string() == "CN=Warehouse LA signer"
    assert str(cert) in credentials.source


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: (_chain(p, ec.generate_private_key(ec.SECP256R1()))[0],
                _chain(p / "other", ec.generate_private_key(ec.SECP256R1()))[1]),
     "the private key is not the first certificate's"),
    (lambda p: _chain(p, ec.generate_private_key(ec.SECP256R1()), days=-1, start_days=-30),
     "is not valid now"),
    (lambda p: _chain(p, rsa.generate_private_key(65537, 1024)), "cannot sign C2PA manifests"),
    (lambda p: (p / "missing.pem", p / "missing.key"), "missing.pem: cannot read"),
    (lambda p: ((p / "junk.pem").write_bytes(b"junk") and p / "junk.pem", p / "junk.pem"),
     "not a PEM certificate chain"),
])
def test_a_deployments_credentials_that_cannot_sign_are_refused_by_name(tmp_path, make, message):
    (tmp_path / "other").mkdir()
    cert, key = make(tmp_path)
    with pytest.raises(ContentCredentialsError, match=message):
        load_credentials(cert, key)


def test_last_checkpoint_skips_a_torn_line_and_none_without_a_file(h264, tmp_path):
    assert last_checkpoint(tmp_path) is None
    lines = (h264.audit / "checkpoints.jsonl").read_bytes()
    (tmp_path / "checkpoints.jsonl").write_bytes(lines + b'{"size": 9, "ro')
    assert last_checkpoint(tmp_path) == json.loads(lines.splitlines()[-1])
    (tmp_path / "checkpoints.jsonl").write_bytes(lines.splitlines()[0] + b"\n")
    assert last_checkpoint(tmp_path)["size"] == json.loads(lines.splitlines()[0])["size"]


_VALID = Checkpoint.sign("SE_1", 3, bytes(32), 1_700_000_000.0, Ed25519PrivateKey.generate()).to_json()
_VALID_LINE = json.dumps(_VALID).encode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.binary(max_size=60),
                          st.sampled_from([b"{}", b"[]", b"null", b'{"size":1}', _VALID_LINE,
                                           _VALID_LINE[:-3]])), max_size=6))
def test_last_checkpoint_of_any_file_is_its_last_whole_checkpoint_or_none(tmp_path, lines):
    data = b"\n".join(lines)
    (tmp_path / "checkpoints.jsonl").write_bytes(data)
    complete = data.split(b"\n")[:-1]  # what follows the last newline is a torn write
    expected = _VALID if _VALID_LINE in complete else None
    assert last_checkpoint(tmp_path) == expected
