"""The node's Ed25519 audit key: made at first use, kept readable by its owner only.

The private key lives in ``<data-dir>/keys/audit-ed25519.pem`` (PKCS8 PEM, unencrypted,
mode 0600, in a directory of mode 0700). Its public half is published as text: standard
base64, with padding, of the 32 raw bytes; that is what ``dockcast audit public-key``
prints, what every checkpoint's ``key`` field holds, and what ``audit verify`` takes.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .verify import AuditError, InvalidPublicKey, parse_public_key

__all__ = [
    "KEY_FILE",
    "write_private",
    "KeyFileError",
    "InvalidPublicKey",
    "key_path",
    "load_or_create_signing_key",
    "public_key_text",
    "parse_public_key",
]

#: Where the key lives, relative to the data directory.
KEY_FILE = Path("keys") / "audit-ed25519.pem"


class KeyFileError(AuditError):
    """The key file (or its directory) cannot be used: wider permissions than its owner's,
    not a regular file, unreadable, or not an Ed25519 key. The message names the path."""


def key_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / KEY_FILE


def load_or_create_signing_key(data_dir: str | os.PathLike) -> Ed25519PrivateKey:
    """The node's signing key, made (and written, mode 0600) if there is none yet.

    A key file or ``keys/`` directory that the group or others may read or write is
    refused with `KeyFileError`, never silently used or fixed: a leaked key would let
    anyone sign a forged log.
    """
    path = key_path(data_dir)
    _private_dir(path.parent)
    if not path.exists():
        _create(path)
    return _load(path)


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Base64 (standard, padded) of the 32 raw public key bytes."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def _refuse_wide(path: Path, st: os.stat_result, mode: int) -> None:
    if st.st_mode & 0o077:
        actual = stat.S_IMODE(st.st_mode)
        raise KeyFileError(f"{path} has mode {actual:04o}; the audit signing key must be "
                           f"private to its owner (chmod {mode:o} {path})")


def _private_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = directory.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise KeyFileError(f"{directory} is not a directory")
    _refuse_wide(directory, st, 0o700)


def _create(path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    write_private(path, pem)


def write_private(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` (a key) whole under a temporary name, mode 0600, then put it in
    place: a crash never leaves half a key. ``replace=False``: of two processes making
    one at once, the first one's stays (the file is linked, never overwritten)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _load(path: Path) -> Ed25519PrivateKey:
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{path} is not a regular file")
        _refuse_wide(path, st, 0o600)
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the audit signing key ({exc})") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key
