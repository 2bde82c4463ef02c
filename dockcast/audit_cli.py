"""``dockcast audit``: verify a session's audit log offline, print the node's public key.

- ``dockcast audit verify PATH --public-key KEY [--recordings DIR] [--allow-uncovered-tail]``:
  the standalone verifier (`plugins.audit.verify`) under the ``dockcast`` command; exit
  0 everything verifies, 1 something differs (named on stderr), 2 usage or unreadable
  input (PROTOCOL.md, "Recording and audit details").
- ``dockcast audit public-key [--data-dir D]``: the base64 text of the node's Ed25519
  audit public key (the key is made at first use, as the node would).

Both load only the standard library and ``cryptography``: no media or network stack.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["add_parser", "run", "main"]

_DESCRIPTION = ("Check an inspection session's audit log offline: every entry's leaf and "
                "every checkpoint's root and signature, and every recording segment's SHA-256. "
                "Exit 0: everything verifies; 1: something differs (the first difference is "
                "named on stderr); 2: usage or unreadable input.")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``audit`` (with ``verify`` and ``public-key``) to the ``dockcast`` subcommands."""
    from plugins.audit.verify import add_arguments

    audit = sub.add_parser("audit", help="verify audit logs offline, print the audit public key",
                           description="Audit log tools (docs/audit.md).")
    commands = audit.add_subparsers(dest="audit_command", metavar="{verify,public-key}",
                                    required=True)
    verify = commands.add_parser("verify", help="verify a session's audit log and segments offline",
                                 description=_DESCRIPTION)
    add_arguments(verify)
    key = commands.add_parser("public-key", help="print the node's Ed25519 audit public key",
                              description="Print the node's audit public key: base64 of the 32 "
                              "raw bytes (made at first use, like the node does).")
    key.add_argument("--data-dir", help="the node's data directory (default: DOCKCAST_DATA_DIR, "
                                         "else ./data)")


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``audit`` command; returns the exit status."""
    if args.audit_command == "verify":
        from plugins.audit.verify import run as run_verify

        return run_verify(args, prog="dockcast audit verify")
    from plugins.audit.keys import KeyFileError, load_or_create_signing_key, public_key_text

    data_dir = args.data_dir or os.environ.get("DOCKCAST_DATA_DIR") or "./data"
    try:
        print(public_key_text(load_or_create_signing_key(data_dir)))
    except (KeyFileError, OSError) as exc:
        print(f"dockcast audit public-key: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """``dockcast audit ...`` on its own (tests, and ``python -m dockcast.audit_cli``)."""
    parser = argparse.ArgumentParser(prog="dockcast")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
