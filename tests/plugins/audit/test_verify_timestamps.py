"""plugins.audit.verify on time-stamped checkpoints: ``check_timestamp`` and ``--tsa-cert``.

A real authority (``openssl ts`` on loopback, `local_tsa`) stamps checkpoints 3-5 of
`stamped_session`; the verifier must accept them with the authority pinned, report their
times, find any changed byte of a token or a token moved to another checkpoint, and still
run as a lone file without ``rfc3161-client`` on logs that carry no token.
"""

# ruff: noqa: F811 - the local authority's fixtures are imported from local_tsa

from __future__ import annotations

import base64
import io
import json
import warnings
from argparse import Namespace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugins.audit import (
    Checkpoint,
    InvalidTimestamp,
    InvalidTsaCertificate,
    TimestampAuthority,
    check_timestamp,
    load_tsa_certificates,
    verify_path,
)
from plugins.audit.verify import canonical_json, run

from .local_tsa import local_tsa, make_authority, stamped_session, tsa_authority  # noqa: F401 - fixtures
from .test_verify import _run, _standalone

MESSAGE = b"dockcast-audit-checkpoint/v1\ninsp-1\n9\n" + b"cd" * 32 + b"\n1700000008.5\n"


@pytest.fixture
def token(local_tsa) -> bytes:
    return TimestampAuthority(local_tsa.url).stamp(MESSAGE)


@pytest.fixture
def ca_file(tsa_authority, tmp_path) -> Path:
    path = tmp_path / "tsa-ca.pem"
    path.write_bytes(tsa_authority.ca_pem)
    return path


def _verify(session, *extra: str) -> tuple[int, str, str]:
    args = Namespace(path=str(session.path), public_key=session.public_key, recordings=None,
                     allow_uncovered_tail=False, tsa_cert=None)
    for flag, value in zip(extra[::2], extra[1::2]):
        setattr(args, flag.lstrip("-").replace("-", "_"), value)
    out, err = io.StringIO(), io.StringIO()
    return run(args, out=out, err=err), out.getvalue(), err.getvalue()


def _edit_checkpoints(session, edit) -> None:
    objs = [json.loads(line) for line in session.checkpoints.read_bytes().split(b"\n")[:-1]]
    edit(objs)
    session.checkpoints.write_bytes(b"".join(canonical_json(o) + b"\n" for o in objs))


# --- check_timestamp: one token -------------------------------------------------------

def test_a_token_holds_for_its_message_and_no_other(token, tsa_authority):
    trusted = load_tsa_certificates(tsa_authority.ca_pem)
    assert check_timestamp(token, MESSAGE, trusted).pinned
    assert not check_timestamp(token, MESSAGE).pinned  # not pinned: the signature is not checked
    for pinned in (trusted, None):
        with pytest.raises(InvalidTimestamp, match="it time-stamps another message"):
            check_timestamp(token, MESSAGE + b"x", pinned)


def test_flipping_any_bit_of_a_token_is_found_when_the_authority_is_pinned(token, tsa_authority):
    trusted = load_tsa_certificates(tsa_authority.ca_pem)
    with warnings.catch_warnings():  # cryptography warns on certificates with a changed serial
        warnings.simplefilter("ignore")
        for pos in range(len(token)):
            for bit in (0x01, 0x80):
                changed = token[:pos] + bytes([token[pos] ^ bit]) + token[pos + 1:]
                with pytest.raises(InvalidTimestamp):
                    check_timestamp(changed, MESSAGE, trusted)
                    pytest.fail(f"byte {pos} ^ {bit:#x} of the token went unnoticed")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_changed_token_is_invalid_and_nothing_else(token, tsa_authority, data):
    """Untrusted bytes: replaced, cut, extended or random, a token is InvalidTimestamp,
    never another exception (and never accepted)."""
    trusted = load_tsa_certificates(tsa_authority.ca_pem)
    pos = data.draw(st.integers(0, len(token) - 1))
    changed = data.draw(st.one_of(
        st.integers(0, 255).filter(lambda b: b != token[pos]).map(
            lambda b: token[:pos] + bytes([b]) + token[pos + 1:]),
        st.just(token[:pos]),
        st.binary(min_size=1, max_size=8).map(lambda extra: token + extra),
        st.binary(max_size=2000),
    ))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InvalidTimestamp):
            check_timestamp(changed, MESSAGE, trusted)


def test_a_token_of_another_authority_is_refused_when_pinned(token, tmp_path):
    other = load_tsa_certificates(make_authority(tmp_path / "other", name="Other TSA").ca_pem)
    with pytest.raises(InvalidTimestamp, match="does not verify against the pinned authority"):
        check_timestamp(token, MESSAGE, other)


@pytest.mark.parametrize("pem, match", [
    (b"", "not PEM X.509 certificates"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not PEM X.509"),
])
def test_tsa_certificates_must_be_pem(pem, match):
    with pytest.raises(InvalidTsaCertificate, match=match):
        load_tsa_certificates(pem)


def test_the_authority_certificate_alone_is_not_a_pin(tsa_authority):
    with pytest.raises(InvalidTsaCertificate, match="no self-signed"):
        load_tsa_certificates(tsa_authority.tsa_pem)
    # with its root, it is (the intermediates and the authority's own certificate may follow)
    assert len(load_tsa_certificates(tsa_authority.tsa_pem + tsa_authority.ca_pem)) == 2


# --- the verifier on a session ------------------------------------------------------

def test_a_stamped_session_verifies_with_the_pinned_authority(stamped_session, ca_file):
    status, out, err = _verify(stamped_session, "--tsa-cert", str(ca_file))
    assert status == 0, err
    lines = out.splitlines()
    assert lines[-1] == ("verified: 13 entries, 13 covered by 5 signed checkpoints, 2 segment "
                         "files re-hashed, 3 time-stamp tokens checked")
    assert lines[0].startswith("note: checkpoint 1 carries no time-stamp token")
    assert lines[1].startswith("note: checkpoint 2 carries no time-stamp token")
    for line, number in zip(lines[2:5], (3, 4, 5)):
        assert line.startswith(f"note: checkpoint {number}: time-stamped at 20")
        assert line.endswith("by CN=Test TSA (issued by CN=Test TSA Root CA); its signature "
                             "verifies against --tsa-cert")


def test_without_a_pin_the_times_are_reported_as_the_tokens_claims(stamped_session):
    status, out, err = _verify(stamped_session)
    assert status == 0, err
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert len(notes) == 3 and all("the authority was not pinned (no --tsa-cert)" in n for n in notes)


def test_a_changed_byte_in_a_tst_is_exit_1_naming_the_checkpoint(stamped_session, ca_file):
    original = stamped_session.checkpoints.read_bytes()
    tst = base64.b64decode(json.loads(original.split(b"\n")[3])["tst"])
    for pos in (0, len(tst) // 3, len(tst) // 2, len(tst) - 1):  # structure, content, signature
        def flip(objs, pos=pos):
            objs[3]["tst"] = base64.b64encode(tst[:pos] + bytes([tst[pos] ^ 0x04]) + tst[pos + 1:]).decode()
        _edit_checkpoints(stamped_session, flip)
        status, _, err = _verify(stamped_session, "--tsa-cert", str(ca_file))
        assert status == 1, pos
        assert err.splitlines()[-1].startswith("verify.py: checkpoint 4: its time-stamp token: "), err
        stamped_session.checkpoints.write_bytes(original)


def test_a_tst_moved_to_another_checkpoint_is_exit_1_even_unpinned(stamped_session, ca_file):
    def move(objs):
        objs[1]["tst"] = objs[3]["tst"]
    _edit_checkpoints(stamped_session, move)
    for extra in ((), ("--tsa-cert", str(ca_file))):
        status, _, err = _verify(stamped_session, *extra)
        assert status == 1
        assert err.splitlines()[-1].startswith(
            "verify.py: checkpoint 2: its time-stamp token: it time-stamps another message")


def test_a_session_stamped_by_another_authority_is_exit_1(stamped_session, tmp_path):
    other = tmp_path / "other.pem"
    other.write_bytes(make_authority(tmp_path / "other", name="Other TSA").ca_pem)
    status, _, err = _verify(stamped_session, "--tsa-cert", str(other))
    assert status == 1 and "checkpoint 3: its time-stamp token: its signature does not verify " \
        "against the pinned authority" in err


@pytest.mark.parametrize("content, why", [
    (None, "cannot read it"),
    (b"not a certificate", "not PEM X.509 certificates"),
])
def test_a_bad_tsa_cert_is_exit_2(stamped_session, tmp_path, content, why):
    path = tmp_path / "tsa.pem"
    if content is not None:
        path.write_bytes(content)
    status, _, err = _verify(stamped_session, "--tsa-cert", str(path))
    assert status == 2 and err.startswith(f"verify.py: --tsa-cert {path}: {why}")


def test_the_tst_is_outside_the_signature_and_a_removed_one_is_noted(stamped_session, ca_file):
    def strip(objs):
        del objs[2]["tst"]
    _edit_checkpoints(stamped_session, strip)
    status, out, _ = _verify(stamped_session, "--tsa-cert", str(ca_file))
    assert status == 0 and "note: checkpoint 3 carries no time-stamp token" in out
    assert verify_path(stamped_session.path, stamped_session.public_key).timestamps == 2
    assert Checkpoint.parse(json.loads(stamped_session.checkpoints.read_bytes().split(b"\n")[2])).tst is None


# --- the lone file, with and without rfc3161-client ---------------------------------

LONE = ("import runpy; sys.argv = ['verify.py'] + sys.argv[1:]; "
        "runpy.run_path('verify.py', run_name='__main__')")


def test_the_lone_file_checks_tokens_when_rfc3161_client_is_there(stamped_session, ca_file, tmp_path):
    copy = _standalone(tmp_path)
    done = _run(LONE, str(stamped_session.path), "--public-key", stamped_session.public_key,
                "--tsa-cert", str(ca_file), cwd=copy.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith("3 time-stamp tokens checked")


def test_the_lone_file_without_rfc3161_client(stamped_session, tmp_path):
    copy = _standalone(tmp_path)
    code = ("class NoTSA:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'rfc3161_client':\n"
            "            raise ImportError('blocked in this test: ' + name)\n"
            "sys.meta_path.insert(0, NoTSA())\n" + LONE)
    args = (str(stamped_session.path), "--public-key", stamped_session.public_key)
    # the stamped log: exit 2, saying what to install
    done = _run(code, *args, cwd=copy.parent)
    assert done.returncode == 2
    assert done.stderr.strip() == ("verify.py: checking RFC 3161 time-stamp tokens needs the "
                                   "rfc3161-client package: pip install rfc3161-client")
    # the same log without its tokens: verified with the standard library and cryptography
    _edit_checkpoints(stamped_session, lambda objs: [o.pop("tst", None) for o in objs])
    done = _run(code, *args, cwd=copy.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("verified: 13 entries, 13 covered by 5 signed checkpoints, "
                                   "2 segment files re-hashed")
