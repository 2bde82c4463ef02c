"""plugins.audit.log: appending, checkpoints, proofs, reopening after a stop or a crash."""

from __future__ import annotations

import json
import logging
import os
import random
import stat

import pytest

from plugins.audit import (
    AuditLog,
    AuditLogError,
    Checkpoint,
    InvalidEntry,
    TimestampAuthority,
    TimestampError,
    check_timestamp,
    leaf_hash,
    load_tsa_certificates,
    public_key_text,
    root_of,
    verify_consistency,
    verify_inclusion,
    verify_path,
)

from .conftest import T0, make_session
from .local_tsa import LocalTSA, local_tsa, tsa_authority  # noqa: F401 - fixtures


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _lines(path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def test_create_writes_session_started_in_private_files(data_dir, signer):
    log = AuditLog.create(data_dir / "audit", "insp-1", signer, T0, room="dock-7", shipment_id=None)
    assert log.size == 1 and log.session_id == "insp-1" and not log.closed
    assert _mode(log.directory) == 0o700
    assert _mode(log.directory / "entries.jsonl") == 0o600 == _mode(log.directory / "checkpoints.jsonl")
    assert _lines(log.directory / "entries.jsonl") == [
        b'{"i":0,"room":"dock-7","session_id":"insp-1","shipment_id":null,"ts":1700000000.0,'
        b'"type":"session_started"}']
    entry = log.append("participant_joined", {"participant_id": "p1", "identity": "李雷"}, T0 + 1.5)
    assert entry.index == 1 and entry.leaf_hash == leaf_hash(entry.data)
    assert entry.as_dict() == {"i": 1, "ts": T0 + 1.5, "type": "participant_joined",
                               "participant_id": "p1", "identity": "李雷"}
    assert "李雷".encode() in entry.data  # UTF-8, not \\u escapes: the canonical form
    assert [e.data for e in log.entries()] == _lines(log.directory / "entries.jsonl")
    log.release()


def test_a_session_is_created_once(data_dir, signer):
    AuditLog.create(data_dir / "audit", "insp-1", signer, T0).release()
    with pytest.raises(AuditLogError, match="already has an audit log"):
        AuditLog.create(data_dir / "audit", "insp-1", signer, T0)


@pytest.mark.parametrize("session_id", ["", "../x", "a/b", ".hidden", "a b", "x" * 129, 7])
def test_bad_session_ids_are_refused(data_dir, signer, session_id):
    with pytest.raises(InvalidEntry, match="session id"):
        AuditLog.create(data_dir / "audit", session_id, signer, T0)


@pytest.mark.parametrize("type_, fields, match", [
    ("message", {"payload": object()}, "not JSON"),
    ("message", {"x": float("nan")}, "not JSON"),
    ("message", {"x": {1, 2}}, "not JSON"),
    ("message", {"x": "\udc80"}, "not JSON"),  # a lone surrogate cannot be UTF-8
    ("message", {"i": 5}, r"\['i'\] are the log's own fields"),
    ("message", {"ts": 1, "type": "x"}, r"\['ts', 'type'\]"),
    ("message", {1: "x"}, "string keys"),
    ("message", ["x"], "mapping"),
    ("", {}, "non-empty string"),
    (None, {}, "non-empty string"),
    ("session_closed", {}, "written by the log itself"),
    ("session_started", {}, "written by the log itself"),
    ("segment", {"recording_id": "r"}, "segment entry needs"),
])
def test_append_refuses_fields_it_cannot_sign(data_dir, signer, type_, fields, match):
    log = AuditLog.create(data_dir / "audit", "insp-1", signer, T0)
    with pytest.raises(InvalidEntry, match=match) as info:
        log.append(type_, fields, T0)
    assert isinstance(info.value, ValueError)
    assert log.size == 1 and len(_lines(log.directory / "entries.jsonl")) == 1  # nothing written
    log.release()


@pytest.mark.parametrize("now", [float("nan"), float("inf"), "now", True])
def test_append_refuses_a_bad_time(data_dir, signer, now):
    log = AuditLog.create(data_dir / "audit", "insp-1", signer, T0)
    with pytest.raises(InvalidEntry, match="now must be"):
        log.append("message", {}, now)
    log.release()


def test_checkpoints_sign_the_root_and_are_written_once(data_dir, signer):
    log = AuditLog.create(data_dir / "audit", "insp-1", signer, T0)
    first = log.checkpoint(T0 + 1)
    assert log.checkpoint(T0 + 2) is first  # nothing added: no new checkpoint
    log.append("message", {"seq": 1}, T0 + 3)
    second = log.checkpoint(T0 + 4)
    assert (first.size, second.size) == (1, 2)
    assert second.root == log.root() == root_of(e.leaf_hash for e in log.entries())
    assert second.verify(signer.public_key()) and second.ts == T0 + 4
    on_disk = [Checkpoint.parse(json.loads(line)) for line in _lines(log.directory / "checkpoints.jsonl")]
    assert on_disk == log.checkpoints() == [first, second]
    log.release()


def test_proofs_bind_every_entry_to_every_checkpoint(session, signer):
    log = AuditLog.open(session.path, signer, T0 + 20)  # a closed session: read-only
    cps = log.checkpoints()
    assert [cp.size for cp in cps] == [4, 9, 11]
    for cp in cps:
        for entry in log.entries(0, cp.size):
            proof = log.inclusion_proof(entry.index, cp.size)
            assert verify_inclusion(entry.leaf_hash, entry.index, cp.size, proof, cp.root)
    for old, new in zip(cps, cps[1:]):
        proof = log.consistency_proof(old.size, new.size)
        assert verify_consistency(old.size, new.size, old.root, new.root, proof)
    assert [e.index for e in log.entries(3, 6)] == [3, 4, 5]
    with pytest.raises(IndexError):
        log.entries(5, 12)


def test_close_ends_the_session_and_a_reopen_keeps_it_closed(session, signer):
    lines = _lines(session.entries)
    assert json.loads(lines[-1]) == {"i": 10, "ts": T0 + 10, "type": "session_closed"}
    log = AuditLog.open(session.path, signer, T0 + 20)
    assert log.closed and log.size == 11 and log.recovery.was_closed
    assert not log.recovery.lost_anything and log.recovery.uncovered_entries == 0
    assert _lines(session.entries) == lines  # nothing appended to a closed session
    with pytest.raises(AuditLogError, match="closed"):
        log.append("message", {}, T0 + 21)
    assert log.close(T0 + 22) == log.checkpoints()[-1]  # closing again changes nothing


def test_reopen_after_a_stop_records_it_and_goes_on(data_dir, signer):
    session = make_session(data_dir, signer, close=False)
    log = AuditLog.open(session.path, signer, T0 + 20)
    assert not log.closed and log.size == 11
    assert log.recovery.uncovered_entries == 1 and not log.recovery.lost_anything
    assert log.entries(10)[0].as_dict() == {"i": 10, "ts": T0 + 20, "type": "session_recovered",
                                            "entries_lost_tail": 0}
    assert log.checkpoints()[-1].size == 11  # what survived is covered at once
    log.append("participant_joined", {"participant_id": "p2", "identity": "seller"}, T0 + 21)
    log.close(T0 + 22)
    assert verify_path(session.path, session.public_key).ok


def test_a_released_log_refuses_appends(data_dir, signer):
    log = AuditLog.create(data_dir / "audit", "insp-1", signer, T0)
    log.release()
    with pytest.raises(AuditLogError, match="released"):
        log.append("message", {}, T0)
    assert [e.index for e in log.entries()] == [0]  # still readable


def _crash_at(session, cut: int, entries: bytes, checkpoints: bytes) -> None:
    session.entries.write_bytes(entries[:cut])
    session.checkpoints.write_bytes(checkpoints)


def test_a_crash_anywhere_after_the_last_checkpoint_is_recovered(data_dir, signer):
    session = make_session(data_dir, signer, close=False)
    entries, checkpoints = session.entries.read_bytes(), session.checkpoints.read_bytes()
    covered_end = sum(len(line) + 1 for line in _lines(session.entries)[:9])  # checkpoint 2: 9 entries
    cuts = sorted(random.Random(10).sample(range(covered_end, len(entries) + 1), 12)
                  + [covered_end, covered_end + 1, len(entries) - 1, len(entries)])
    for cut in cuts:
        _crash_at(session, cut, entries, checkpoints)
        survivors = entries[:cut].split(b"\n")[:-1]
        torn = len(entries[:cut]) - sum(len(line) + 1 for line in survivors)
        log = AuditLog.open(session.path, signer, T0 + 30)
        assert log.recovery.torn_entry_bytes == torn, cut
        assert log.recovery.uncovered_entries == len(survivors) - 9
        assert [e.data for e in log.entries(0, len(survivors))] == survivors
        assert log.root(len(survivors)) == root_of(leaf_hash(line) for line in survivors)
        recovered = log.entries(len(survivors))[0].as_dict()
        assert recovered["type"] == "session_recovered"
        assert recovered["entries_lost_tail"] == (1 if torn else 0)
        assert log.checkpoints()[-1].size == log.size == len(survivors) + 1
        log.release()
        report = verify_path(session.path, session.public_key)
        assert report.ok and report.covered == len(survivors) + 1, (cut, report.difference)


def test_a_torn_checkpoint_line_is_dropped_and_replaced(data_dir, signer):
    session = make_session(data_dir, signer, close=False)
    checkpoints = session.checkpoints.read_bytes()
    session.checkpoints.write_bytes(checkpoints[:-20])  # the second checkpoint's line, torn
    log = AuditLog.open(session.path, signer, T0 + 30)
    assert log.recovery.torn_checkpoint_bytes > 0
    assert [cp.size for cp in log.checkpoints()] == [4, 11]
    log.release()
    assert verify_path(session.path, session.public_key).ok


def test_a_log_that_lost_signed_entries_is_not_reopened(session, signer):
    lines = _lines(session.entries)
    session.entries.write_bytes(b"".join(line + b"\n" for line in lines[:8]))  # checkpoint 2 covers 9
    with pytest.raises(AuditLogError, match="checkpoint 2 .size 9. does not match the 8 entries"):
        AuditLog.open(session.path, signer, T0 + 30)


def test_a_changed_entry_is_not_reopened(session, signer):
    data = session.entries.read_bytes()
    session.entries.write_bytes(data.replace(b'"chat"', b'"chit"'))
    with pytest.raises(AuditLogError, match="checkpoint 1 .size 4. does not match"):
        AuditLog.open(session.path, signer, T0 + 30)
    session.entries.write_bytes(data.replace(b'"i":3', b'"i":4'))
    with pytest.raises(AuditLogError, match="entry 3: its index i is 4"):
        AuditLog.open(session.path, signer, T0 + 30)


def test_open_without_a_log_says_so(tmp_path, signer):
    with pytest.raises(AuditLogError, match="cannot read the audit log"):
        AuditLog.open(tmp_path, signer, T0)


def test_reopening_with_another_key_warns_and_the_verifier_names_the_checkpoint(data_dir, signer, caplog):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    session = make_session(data_dir, signer, close=False)
    with caplog.at_level("WARNING", logger="plugins.audit.log"):
        AuditLog.open(session.path, Ed25519PrivateKey.generate(), T0 + 30).close(T0 + 31)
    assert "was signed with another key" in caplog.text
    report = verify_path(session.path, session.public_key)
    assert str(report.difference).startswith("checkpoint 3: signed by another key")


# --- RFC 3161 time-stamps on checkpoints (plugins.audit.timestamp) --------------------

def test_checkpoints_carry_the_authority_s_token_when_one_is_given(
        data_dir, signer, local_tsa, tsa_authority):  # noqa: F811 - imported fixtures
    tsa = TimestampAuthority(local_tsa.url, ca_certs=tsa_authority.ca_pem)
    log = AuditLog.create(data_dir / "audit", "insp-1", signer, T0, room="dock-7")
    log.append("participant_joined", {"participant_id": "p1", "identity": "la"}, T0 + 1)
    cp = log.checkpoint(T0 + 2, tsa)
    assert cp.tst is not None and log.timestamp_error is None
    assert log.checkpoint(T0 + 3, tsa) is cp and local_tsa.queries == 1  # nothing new: no stamp
    log.append("participant_left", {"participant_id": "p1", "identity": "la"}, T0 + 4)
    assert log.checkpoint(T0 + 5).tst is None  # no authority given: none asked
    last = log.close(T0 + 6, tsa)
    trusted = load_tsa_certificates(tsa_authority.ca_pem)
    for c in (cp, last):
        check_timestamp(c.tst, c.signed_message(), trusted)
    on_disk = [Checkpoint.parse(json.loads(line)) for line in _lines(log.directory / "checkpoints.jsonl")]
    assert on_disk == log.checkpoints() and [c.tst is not None for c in on_disk] == [True, False, True]
    report = verify_path(log.directory, public_key_text(signer), tsa_cert=tsa_authority.ca_pem)
    assert report.ok and report.timestamps == 2, report.difference


def test_an_authority_that_is_down_does_not_cost_the_checkpoint(
        data_dir, signer, tsa_authority, caplog):  # noqa: F811 - an imported fixture
    server = LocalTSA(tsa_authority)
    server.stop()  # down: the port refuses connections
    tsa = TimestampAuthority(server.url.replace("http://", "http://user:pw@"), timeout_s=5)
    log = AuditLog.create(data_dir / "audit", "insp-1", signer, T0)
    log.append("participant_joined", {"participant_id": "p1", "identity": "la"}, T0 + 1)
    with caplog.at_level(logging.WARNING, logger="plugins.audit"):
        cp = log.checkpoint(T0 + 2, tsa)
    assert cp.tst is None and cp.size == 2 and log.checkpoints() == [cp]
    assert isinstance(log.timestamp_error, TimestampError)
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage().startswith(
        f"audit log {log.directory}: checkpoint of 2 entries written without a time-stamp: "
        f"time-stamping authority {server.url}: unreachable")
    assert "pw" not in warning.getMessage().replace(str(log.directory), "")
    log.release()
    reopened = AuditLog.open(log.directory, signer, T0 + 3, tsa)  # the reopen's checkpoint too
    assert reopened.checkpoints()[-1].tst is None and reopened.size == 3
    assert verify_path(log.directory, public_key_text(signer)).ok
