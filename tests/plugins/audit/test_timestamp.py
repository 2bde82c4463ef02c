"""plugins.audit.timestamp: RFC 3161 tokens from a real authority (``openssl ts`` on
loopback, `local_tsa`), and every way it can fail named by its URL, never its secrets."""

# ruff: noqa: F811 - the local authority's fixtures are imported from local_tsa

from __future__ import annotations

import base64
import hashlib
import logging
import re
import socket
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.audit import (
    Checkpoint,
    TimestampAuthority,
    TimestampError,
    TimestampUnavailable,
    check_timestamp,
    load_tsa_certificates,
)
from plugins.audit.timestamp import sorted_certificates, stamp_checkpoint

from .conftest import T0
from .local_tsa import LocalTSA, local_tsa, make_authority, tsa_authority  # noqa: F401 - fixtures

MESSAGE = b"dockcast-audit-checkpoint/v1\ninsp-1\n9\n" + b"ab" * 32 + b"\n1700000008.5\n"


def test_a_stamp_is_a_token_over_the_message_from_the_pinned_authority(local_tsa, tsa_authority):
    tsa = TimestampAuthority(local_tsa.url, ca_certs=tsa_authority.ca_pem)
    token = tsa.stamp(MESSAGE)
    info = check_timestamp(token, MESSAGE, load_tsa_certificates(tsa_authority.ca_pem))
    assert info.pinned and info.signer == "CN=Test TSA (issued by CN=Test TSA Root CA)"
    assert info.gen_time.utcoffset().total_seconds() == 0 and info.nonce is not None
    # the query, as openssl (an independent reader) sees it: SHA-256 of the message,
    # a nonce, the certificate asked for; sent as RFC 3161 section 3.4 says
    path, headers = local_tsa.last_request
    assert path == "/tsa" and headers["Content-Type"] == "application/timestamp-query"
    query = subprocess.run(["openssl", "ts", "-query", "-in",
                            str(tsa_authority.directory / "query-1.tsq"), "-text"],
                           capture_output=True, text=True, check=True).stdout
    dump = "".join(re.findall(r"^ +[0-9a-f]{4} - (.{47})", query, re.MULTILINE))
    assert bytes.fromhex(dump.replace("-", " ")) == hashlib.sha256(MESSAGE).digest()
    assert "Hash Algorithm: sha256" in query and "Certificate required: yes" in query
    assert re.search(r"^Nonce: 0x[0-9A-F]+$", query, re.MULTILINE)
    # and the token is openssl's own: `openssl ts -verify` accepts it for this message
    (tsa_authority.directory / "token.der").write_bytes(token)
    (tsa_authority.directory / "message").write_bytes(MESSAGE)
    (tsa_authority.directory / "ca.pem").write_bytes(tsa_authority.ca_pem)
    verified = subprocess.run(["openssl", "ts", "-verify", "-token_in", "-in",
                               str(tsa_authority.directory / "token.der"), "-data",
                               str(tsa_authority.directory / "message"), "-CAfile",
                               str(tsa_authority.directory / "ca.pem")],
                              capture_output=True, text=True, check=False)
    assert verified.returncode == 0 and "Verification: OK" in verified.stdout, verified.stderr


def test_a_token_from_another_authority_than_ca_certs_is_refused(local_tsa, tmp_path):
    other = make_authority(tmp_path / "other", name="Other TSA")
    tsa = TimestampAuthority(local_tsa.url, ca_certs=other.ca_pem)
    with pytest.raises(TimestampError, match="does not verify against the pinned authority") as err:
        tsa.stamp(MESSAGE)
    assert err.value.url == local_tsa.url and err.value.code == "unavailable"


@pytest.mark.parametrize("mode, why", [
    ("http-503", "HTTP 503"),
    ("garbage", "the reply is not an RFC 3161 response"),
    ("rejection", r"the request was refused \(status REJECTION: no\)"),
])
def test_an_authority_that_answers_wrongly_is_a_timestamp_error_naming_it(local_tsa, mode, why):
    local_tsa.mode = mode
    with pytest.raises(TimestampError, match=f"^time-stamping authority {local_tsa.url}: {why}"):
        TimestampAuthority(local_tsa.url).stamp(MESSAGE)
    assert local_tsa.queries == 1


def test_a_replayed_reply_is_refused(local_tsa):
    tsa = TimestampAuthority(local_tsa.url)
    tsa.stamp(b"first message")
    local_tsa.mode = "replay"  # the first reply again, to another query
    with pytest.raises(TimestampError, match="its token does not hold: it time-stamps another message"):
        tsa.stamp(MESSAGE)


def test_an_authority_that_is_down_is_a_timestamp_error(tsa_authority):
    server = LocalTSA(tsa_authority)
    server.stop()  # the port is closed: connection refused
    with pytest.raises(TimestampError, match=f"^time-stamping authority {server.url}: unreachable"):
        TimestampAuthority(server.url, timeout_s=5).stamp(MESSAGE)


def test_an_authority_that_never_answers_times_out(tsa_authority):
    with socket.socket() as listener:  # accepts connections (the backlog) and never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with pytest.raises(TimestampError, match="unreachable.*timed out"):
            TimestampAuthority(url, timeout_s=0.5).stamp(MESSAGE)


def test_credentials_in_the_url_are_sent_and_never_shown(local_tsa):
    secret_url = local_tsa.url.replace("http://", "http://alice:s3cr%40t@") + "?key=k3y"
    tsa = TimestampAuthority(secret_url)
    assert tsa.url == local_tsa.url + "?..." and "s3cr" not in repr(tsa)
    tsa.stamp(MESSAGE)
    path, headers = local_tsa.last_request
    assert path == "/tsa?key=k3y"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"alice:s3cr@t").decode()
    local_tsa.mode = "http-503"
    with pytest.raises(TimestampError) as err:
        tsa.stamp(MESSAGE)
    assert "s3cr" not in str(err.value) and "k3y" not in str(err.value) and "alice" not in str(err.value)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://tsa.example/", "http://", "tsa.example"])
def test_only_http_urls_are_taken(url):
    with pytest.raises(ValueError, match="http:// or https://"):
        TimestampAuthority(url)


def test_without_rfc3161_client_the_authority_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rfc3161_client", None)  # import fails, as when absent
    with pytest.raises(TimestampUnavailable, match="pip install rfc3161-client"):
        TimestampAuthority("http://127.0.0.1:9/")


def _checkpoint() -> Checkpoint:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Checkpoint.sign("insp-1", 9, bytes(32), T0, Ed25519PrivateKey.generate())


def test_stamp_checkpoint_adds_the_token_of_the_signed_message(local_tsa):
    cp = _checkpoint()
    stamped, error = stamp_checkpoint(cp, TimestampAuthority(local_tsa.url), "here")
    assert error is None and stamped.tst is not None
    assert stamped == Checkpoint(cp.session_id, cp.size, cp.root, cp.ts, cp.signature, cp.key, stamped.tst)
    check_timestamp(stamped.tst, cp.signed_message())


def test_stamp_checkpoint_keeps_the_checkpoint_when_the_authority_fails(local_tsa, caplog):
    local_tsa.mode = "http-503"
    cp = _checkpoint()
    with caplog.at_level(logging.WARNING, logger="plugins.audit.timestamp"):
        same, error = stamp_checkpoint(cp, TimestampAuthority(local_tsa.url), "the log")
    assert same is cp and isinstance(error, TimestampError)
    assert [r.getMessage() for r in caplog.records] == [
        ("audit log the log: checkpoint of 9 entries written without a time-stamp: "
         f"time-stamping authority {local_tsa.url}: HTTP 503 Service Unavailable")]


def test_stamp_checkpoint_survives_a_broken_client(caplog):
    class Broken:  # a bug in a client: not an error it knows how to name
        url = "http://tsa.example/"

        def stamp(self, message: bytes) -> bytes:
            raise KeyError("bug")

    cp = _checkpoint()
    same, error = stamp_checkpoint(cp, Broken(), "the log")
    assert same is cp and isinstance(error, KeyError)
    assert "time-stamping authority http://tsa.example/ failed unexpectedly" in caplog.text


def test_a_reply_with_the_chain_is_read_in_either_certificate_order(tmp_path):
    """openssl ts with certs= writes the TSA's certificate, then the CA's: one of the two
    orders is not DER's, and rfc3161-client refuses that one as it came."""
    import rfc3161_client

    authority = make_authority(tmp_path / "chain", chain=True)
    with LocalTSA(authority) as server:
        token = TimestampAuthority(server.url, ca_certs=authority.ca_pem).stamp(MESSAGE)
        reply = server.reply(  # a raw reply, for the same query the client sent
            (authority.directory / "query-1.tsq").read_bytes())
    trusted = load_tsa_certificates(authority.ca_pem)
    assert len(rfc3161_client.decode_timestamp_response(sorted_certificates(reply))
               .signed_data.certificates) == 2
    check_timestamp(token, MESSAGE, trusted)
    # both orders of the two certificates: exactly one parses as it is; sorted, both do
    ca_der, tsa_der = (x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
                       for pem in (authority.ca_pem, authority.tsa_pem))
    first, second = reply.index(tsa_der), reply.index(ca_der)
    assert first + len(tsa_der) == second  # TSA's, then CA's, side by side
    swapped = reply[:first] + ca_der + tsa_der + reply[second + len(ca_der):]
    parsed = []
    for order in (reply, swapped):
        try:
            rfc3161_client.decode_timestamp_response(order)
            parsed.append(True)
        except ValueError as exc:
            assert "InvalidSetOrdering" in str(exc)
            parsed.append(False)
        assert sorted_certificates(order) == sorted_certificates(reply)
        response = rfc3161_client.decode_timestamp_response(sorted_certificates(order))
        check_timestamp(response.time_stamp_token(), MESSAGE, trusted)
    assert sorted(parsed) == [False, True]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_sorting_certificates_never_fails_on_any_bytes(data):
    assert isinstance(sorted_certificates(data), bytes)
