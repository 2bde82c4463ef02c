"""dockcast.audit_cli: ``dockcast audit verify`` and ``dockcast audit public-key``."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dockcast import audit_cli
from plugins.audit import AuditLog, load_or_create_signing_key, public_key_text

REPO = Path(__file__).resolve().parents[2]


def _session(data_dir: Path) -> tuple[Path, str]:
    key = load_or_create_signing_key(data_dir)
    log = AuditLog.create(data_dir / "audit", "insp-1", key, 1.0, room="dock-7", shipment_id=None)
    log.append("verdict", {"verdict": "resellable", "refund": None, "note": "", "by": "qa"}, 2.0)
    log.close(3.0)
    return log.directory, public_key_text(key)


def test_public_key_prints_the_node_key_and_makes_it_at_first_use(tmp_path, capsys, monkeypatch):
    assert audit_cli.main(["audit", "public-key", "--data-dir", str(tmp_path / "d")]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == public_key_text(load_or_create_signing_key(tmp_path / "d"))
    monkeypatch.setenv("DOCKCAST_DATA_DIR", str(tmp_path / "d"))
    assert audit_cli.main(["audit", "public-key"]) == 0
    assert capsys.readouterr().out.strip() == printed


def test_public_key_refuses_a_key_file_others_can_read(tmp_path, capsys):
    load_or_create_signing_key(tmp_path)
    (tmp_path / "keys" / "audit-ed25519.pem").chmod(0o644)
    assert audit_cli.main(["audit", "public-key", "--data-dir", str(tmp_path)]) == 2
    assert "mode 0644" in capsys.readouterr().err


def test_verify_exit_statuses(tmp_path, capsys):
    path, key = _session(tmp_path / "data")
    assert audit_cli.main(["audit", "verify", str(path), "--public-key", key]) == 0
    assert capsys.readouterr().out.startswith("verified: 3 entries, 3 covered by 1 signed checkpoints")
    entries = path / "entries.jsonl"
    entries.write_bytes(entries.read_bytes().replace(b"resellable", b"resellablE"))
    assert audit_cli.main(["audit", "verify", str(path), "--public-key", key]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dockcast audit verify: entries 0-2: the Merkle root of the first 3 entries")
    assert audit_cli.main(["audit", "verify", str(tmp_path / "none"), "--public-key", key]) == 2
    assert audit_cli.main(["audit", "verify", str(path), "--public-key", "x"]) == 2
    with pytest.raises(SystemExit) as usage:
        audit_cli.main(["audit", "verify", str(path)])
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as usage:
        audit_cli.main(["audit"])
    assert usage.value.code == 2


def test_every_option_has_a_help_text():
    parser = argparse.ArgumentParser()
    audit_cli.add_parser(parser.add_subparsers())
    audit = parser._subparsers._group_actions[0].choices["audit"]
    commands = audit._subparsers._group_actions[0].choices
    assert set(commands) == {"verify", "public-key"}
    for name, command in commands.items():
        for action in command._actions:
            if action.dest != "help":
                assert action.help, f"dockcast audit {name} {action.dest} has no help"


def test_the_audit_commands_load_no_media_or_network_stack(tmp_path):
    path, key = _session(tmp_path / "data")
    code = textwrap.dedent("""
        import sys
        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("aiortc", "aioice", "av", "msgpack", "jwt", "websockets",
                                          "numpy", "signalling", "sfu", "uvloop"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Blocker())
        from dockcast import audit_cli
        sys.exit(audit_cli.main(sys.argv[1:]))
    """)
    run = subprocess.run([sys.executable, "-c", code, "audit", "verify", str(path), "--public-key", key],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    run = subprocess.run([sys.executable, "-c", code, "audit", "public-key", "--data-dir",
                          str(tmp_path / "data")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == key, run.stderr
