"""Fixtures of the audit tests: a node key in a data directory, and a small real session.

``session`` is what the node leaves on disk after an inspection: the data-dir layout
``<data>/audit/<session_id>/`` with three checkpoints, and two recording segment files in
``<data>/recordings/<recording_id>/`` whose SHA-256 and size are in ``segment`` entries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from plugins.audit import AuditLog, load_or_create_signing_key, public_key_text

T0 = 1_700_000_000.0


@dataclass
class Session:
    data_dir: Path
    path: Path  # the session's audit directory
    key: Ed25519PrivateKey
    public_key: str
    segments: list[Path]

    @property
    def entries(self) -> Path:
        return self.path / "entries.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints.jsonl"


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def signer(data_dir) -> Ed25519PrivateKey:
    return load_or_create_signing_key(data_dir)


def write_segment(data_dir: Path, recording_id: str, name: str, content: bytes) -> tuple[Path, dict]:
    path = data_dir / "recordings" / recording_id / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path, {"recording_id": recording_id, "track": "video-1", "file": name,
                  "sha256": hashlib.sha256(content).hexdigest(), "size": len(content), "packets": 3}


def make_session(data_dir: Path, key: Ed25519PrivateKey, session_id: str = "insp-1",
                 close: bool = True) -> Session:
    """A session of 11 entries (10 when not closed): checkpoints at 4, 9 and 11 (the close)."""
    log = AuditLog.create(data_dir / "audit", session_id, key, T0, room="dock-7", shipment_id="SH-1")
    log.append("participant_joined", {"participant_id": "p1", "identity": "warehouse-la"}, T0 + 1)
    log.append("recording_started", {"recording_id": "rec-1"}, T0 + 2)
    log.append("message", {"seq": 1, "from": "p1", "topic": "chat",
                           "sha256": hashlib.sha256(b'{"text":"\xe5\xa5\xbd"}').hexdigest()}, T0 + 3)
    log.checkpoint(T0 + 3.5)
    seg1, fields1 = write_segment(data_dir, "rec-1", "video-1-0001.mjr", b"MJR00002" + bytes(range(200)))
    log.append("segment", fields1, T0 + 4)
    log.append("shipment_event", {"shipment_id": "SH-1", "status": "return_received",
                                  "detail": "box dented, 退货", "severity": "warning"}, T0 + 5)
    seg2, fields2 = write_segment(data_dir, "rec-1", "video-1-0002.mjr", b"MJR00002" + bytes(300))
    log.append("segment", fields2, T0 + 6)
    log.append("recording_stopped", {"recording_id": "rec-1"}, T0 + 7)
    log.append("verdict", {"verdict": "partial", "refund": 12.5, "note": "scratch", "by": "seller"}, T0 + 8)
    log.checkpoint(T0 + 8.5)
    log.append("participant_left", {"participant_id": "p1", "identity": "warehouse-la"}, T0 + 9)
    if close:
        log.close(T0 + 10)
    else:
        log.release()
    return Session(data_dir, log.directory, key, public_key_text(key), [seg1, seg2])


@pytest.fixture
def session(data_dir, signer) -> Session:
    return make_session(data_dir, signer)
