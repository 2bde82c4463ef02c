"""Where closed segments also go: the recordings directory only, or an S3-compatible store.

A busy node writes hundreds of gigabytes of segments a day, so closed segments (and the
manifest) can be copied to an object store: AWS S3, MinIO, Ceph, anything that speaks
the S3 API. `LocalStore` keeps everything in the recordings directory and does nothing;
`S3Store` uploads with boto3. Its calls block (network I/O): the caller runs them in a
thread (``asyncio.to_thread``), never on the event loop or the writer's thread.

Objects are ``<prefix><recording_id>/<file>``. An upload sends ``Content-MD5`` and
``x-amz-checksum-sha256`` so the store refuses bytes that were changed on the way, then
reads the object's size and checksum back (HEAD); only then is it verified, and only
then does ``keep_local=False`` remove the local file. A fetch streams the object to a
temporary file (mode 0600), checks its SHA-256 against the manifest's, and renames it
into place. Transient failures (no connection, time-outs, 5xx, throttling) are retried
with exponential backoff; other refusals are not. Errors name the endpoint, the bucket
and the key, never the secret. ``docs/storage.md`` is the user's guide.

    signalling.errors.SignallingError
    └── StorageError                        unavailable  the store failed or refused (after retries)
        ├── StorageConfigError (also ValueError)  internal  ``[s3]`` options missing or invalid
        ├── InvalidName (also ValueError)   bad_request  a recording id or file name that is not one plain path part
        ├── ObjectNotFound                  not_found    no such object in the store
        └── IntegrityError                  internal     bytes that differ from the SHA-256 or size they must have
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import pathlib
import random
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from signalling.errors import FixedCodeError

from .manifest import Manifest, hash_file

__all__ = [
    "SegmentStore",
    "LocalStore",
    "S3Store",
    "StoredObject",
    "store_from_options",
    "fetch_missing",
    "check_name",
    "StorageError",
    "StorageConfigError",
    "InvalidName",
    "ObjectNotFound",
    "IntegrityError",
    "S3_OPTIONS",
]

logger = logging.getLogger(__name__)

#: The options of the ``[plugins.inspection.s3]`` table.
S3_OPTIONS = frozenset({"endpoint_url", "bucket", "prefix", "access_key", "secret_key",
                        "secret_env", "region", "keep_local", "addressing_style",
                        "max_attempts", "timeout_s"})
# S3 error codes worth another attempt (besides any 5xx status)
_TRANSIENT_CODES = frozenset({"SlowDown", "RequestTimeout", "Throttling", "ThrottlingException",
                              "RequestThrottled", "InternalError", "ServiceUnavailable"})
_CHUNK = 1 << 20
_OPTION_TYPES = {"keep_local": bool, "max_attempts": int, "timeout_s": (int, float)}
_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer",
               (int, float): "a number"}


class StorageError(FixedCodeError):
    """The object store failed or refused; the message names the endpoint, bucket and key."""

    code = "unavailable"


class StorageConfigError(StorageError, ValueError):
    """The ``[s3]`` options are missing or invalid; the message names the option."""

    code = "internal"


class InvalidName(StorageError, ValueError):
    """A recording id or file name that is not one plain path part (``/``, ``..``, ...)."""

    code = "bad_request"


class ObjectNotFound(StorageError):
    """The store holds no such object."""

    code = "not_found"


class IntegrityError(StorageError):
    """Bytes that differ from the SHA-256 (or size) they must have: a file changed since
    the writer hashed it, an object changed in the store, a download gone wrong."""

    code = "internal"


def check_name(name: str, what: str = "recording id") -> str:
    """``name`` if it is one plain path part (a recording id, a segment file name): not
    empty, no ``/``, ``\\`` or NUL, not ``.`` or ``..``, no leading ``.``, at most 200
    characters. Else `InvalidName`. Recording ids come from the wire: this keeps them
    inside the recordings directory and inside their own key prefix."""
    if (not isinstance(name, str) or not name or len(name) > 200 or name.startswith(".")
            or any(c in name for c in "/\\\0") or not name.isprintable()):
        raise InvalidName(f"{what} {name!r} is not a plain file name")
    return name


@dataclass(frozen=True)
class StoredObject:
    """One object of a recording in the store: its file name, full key and size."""

    file: str
    key: str
    size: int


class SegmentStore:
    """Where closed segments also go. Every method blocks: call it from a thread.

    ``keep_local`` says whether local files stay after an upload (always true for
    `LocalStore`)."""

    keep_local: bool = True

    def upload(self, recording_id: str, path: pathlib.Path, *, sha256: str | None = None) -> str:
        """Store a closed segment file; returns where it is (a key or the local path).
        ``sha256`` (the writer's, hex) is checked first: a file that changed since is
        refused with `IntegrityError` and left alone."""
        raise NotImplementedError

    def upload_manifest(self, recording_id: str, path: pathlib.Path) -> str:
        """Store ``recording.json`` (always kept locally too: retention reads it)."""
        raise NotImplementedError

    def fetch(self, recording_id: str, file: str, dest: pathlib.Path, *, sha256: str) -> pathlib.Path:
        """Download ``file`` into directory ``dest`` (mode 0600) if its SHA-256 is
        ``sha256``; returns its path. `IntegrityError` leaves nothing behind."""
        raise NotImplementedError

    def delete(self, recording_id: str) -> list[str]:
        """Delete every stored object of the recording; returns their keys (none: [])."""
        raise NotImplementedError

    def list(self, recording_id: str) -> list[StoredObject]:
        """The recording's objects, by file name."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise `StorageError` unless the store is reachable and usable."""

    def secrets(self) -> list[str]:
        """Secret values this store holds, for the node's log redaction."""
        return []


class LocalStore(SegmentStore):
    """Files stay in the recordings directory; nothing is copied anywhere."""

    def upload(self, recording_id: str, path: pathlib.Path, *, sha256: str | None = None) -> str:
        check_name(recording_id)
        if sha256 is not None and hash_file(path)[0] != sha256.lower():
            raise IntegrityError(f"{path}: SHA-256 {hash_file(path)[0]} is not the writer's {sha256}")
        return str(path)

    def upload_manifest(self, recording_id: str, path: pathlib.Path) -> str:
        check_name(recording_id)
        return str(path)

    def fetch(self, recording_id: str, file: str, dest: pathlib.Path, *, sha256: str) -> pathlib.Path:
        raise ObjectNotFound(f"{recording_id}/{check_name(file, 'file')}: recordings are kept "
                             "only in the recordings directory (no object store configured)")

    def delete(self, recording_id: str) -> list[str]:
        check_name(recording_id)
        return []

    def list(self, recording_id: str) -> list[StoredObject]:
        check_name(recording_id)
        return []

    def __repr__(self) -> str:
        return "LocalStore()"


class S3Store(SegmentStore):
    """An S3-compatible object store (AWS S3, MinIO, ...), through boto3.

    ``endpoint_url`` None means AWS itself; ``access_key``/``secret_key`` None means
    boto3's own credential chain (``AWS_*`` variables, instance roles). Path-style
    addressing by default (what MinIO needs; AWS takes it too). Transient failures are
    tried ``max_attempts`` times in all, waiting ``backoff_s``, then twice as long...
    (at most 30 s, with some jitter) through ``sleep``.
    """

    def __init__(self, endpoint_url: str | None, bucket: str, prefix: str = "",
                 access_key: str | None = None, secret_key: str | None = None,
                 region: str = "us-east-1", keep_local: bool = True, *,
                 addressing_style: str = "path", max_attempts: int = 5,
                 backoff_s: float = 0.5, timeout_s: float = 30.0,
                 sleep: Callable[[float], Any] = time.sleep) -> None:
        import boto3  # only a node with an object store needs it
        from botocore.config import Config

        if not isinstance(bucket, str) or not bucket:
            raise StorageConfigError("s3: bucket must be a non-empty string")
        if (access_key is None) != (secret_key is None):
            raise StorageConfigError("s3: give access_key and secret_key together, or neither "
                                     "(then boto3's own credentials are used)")
        url = urllib.parse.urlsplit(endpoint_url or "https://aws")
        if url.scheme not in ("http", "https") or not url.hostname or url.username or url.query:
            raise StorageConfigError("s3: endpoint_url must be an http:// or https:// URL with "
                                     "a host, and no credentials or query (those go in "
                                     "access_key and secret_key)")
        if addressing_style not in ("path", "virtual", "auto"):
            raise StorageConfigError(f"s3: addressing_style {addressing_style!r} is not path, "
                                     "virtual or auto")
        if not isinstance(max_attempts, int) or max_attempts < 1 or not timeout_s > 0:
            raise StorageConfigError(f"s3: max_attempts {max_attempts!r} must be at least 1 and "
                                     f"timeout_s {timeout_s!r} positive")
        self.endpoint_url = endpoint_url
        self.endpoint = endpoint_url.rstrip("/") if endpoint_url else f"AWS S3 ({region})"
        self.bucket = bucket
        self.prefix = _normal_prefix(prefix)
        self.region = region
        self.keep_local = bool(keep_local)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self._secret = secret_key
        self._sleep = sleep
        config = Config(
            s3={"addressing_style": addressing_style},
            retries={"total_max_attempts": 1},  # ours below: one policy, logged, testable
            connect_timeout=timeout_s, read_timeout=timeout_s,
            # the checksums are computed here and sent as headers; no aws-chunked
            # trailers, which some S3-compatible stores do not take
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, region_name=region,
                aws_access_key_id=access_key, aws_secret_access_key=secret_key, config=config)
        except ValueError as exc:  # botocore: an invalid endpoint URL or region
            raise StorageConfigError(f"s3: {self._clean(str(exc))}") from None

    def __repr__(self) -> str:
        return f"S3Store(endpoint={self.endpoint!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    def secrets(self) -> list[str]:
        return [self._secret] if self._secret else []

    def key(self, recording_id: str, file: str) -> str:
        """The object key of a recording's file."""
        return f"{self.prefix}{check_name(recording_id)}/{check_name(file, 'file')}"

    # -- the operations ------------------------------------------------------------

    def check(self) -> None:
        self._call("head_bucket", f"bucket {self.bucket}", Bucket=self.bucket)

    def upload(self, recording_id: str, path: pathlib.Path, *, sha256: str | None = None) -> str:
        path = pathlib.Path(path)
        key = self._put(recording_id, path, sha256, "application/octet-stream")
        if not self.keep_local:
            # the store has verified bytes; only now may the local copy go
            path.unlink()
            _fsync_dir(path.parent)
        return key

    def upload_manifest(self, recording_id: str, path: pathlib.Path) -> str:
        return self._put(recording_id, pathlib.Path(path), None, "application/json")

    def fetch(self, recording_id: str, file: str, dest: pathlib.Path, *, sha256: str) -> pathlib.Path:
        key = self.key(recording_id, file)
        dest = pathlib.Path(dest)
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        part = dest / (file + ".part")

        def download() -> str:
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            digest = hashlib.sha256()
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.fchmod(fd, 0o600)
                for chunk in body.iter_chunks(_CHUNK):
                    digest.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                os.fsync(fd)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            finally:
                os.close(fd)
                body.close()
            return digest.hexdigest()

        actual = self._retry(f"get {key}", download)
        if actual != sha256.lower():
            part.unlink()
            raise IntegrityError(f"{self._where(key)}: SHA-256 {actual} is not the expected "
                                 f"{sha256}: the stored object differs; nothing kept")
        os.replace(part, dest / file)
        _fsync_dir(dest)
        return dest / file

    def delete(self, recording_id: str) -> list[str]:
        keys = [o.key for o in self.list(recording_id)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1000 at most
            batch = keys[start:start + 1000]
            reply = self._call("delete_objects", f"{recording_id}/ ({len(batch)} objects)",
                               Bucket=self.bucket,
                               Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            if errors := reply.get("Errors"):
                raise StorageError(f"{self._where(errors[0].get('Key', '?'))}: delete refused "
                                   f"({errors[0].get('Code')}: {errors[0].get('Message')}), "
                                   f"{len(errors)} of {len(batch)} objects not deleted")
        return keys

    def list(self, recording_id: str) -> list[StoredObject]:
        folder = f"{self.prefix}{check_name(recording_id)}/"
        found, more = [], {}
        while True:
            reply = self._call("list_objects_v2", folder, Bucket=self.bucket, Prefix=folder, **more)
            found.extend(StoredObject(item["Key"][len(folder):], item["Key"], item["Size"])
                         for item in reply.get("Contents", []))
            if not reply.get("IsTruncated"):
                return sorted(found, key=lambda o: o.file)
            more = {"ContinuationToken": reply["NextContinuationToken"]}

    # -- inside --------------------------------------------------------------------

    def _put(self, recording_id: str, path: pathlib.Path, sha256: str | None, content_type: str) -> str:
        key = self.key(recording_id, path.name)
        md5, sha, size = _digests(path)
        if sha256 is not None and sha.hex() != sha256.lower():
            raise IntegrityError(f"{path}: SHA-256 {sha.hex()} is not the writer's {sha256}: "
                                 "the file changed since it was closed; not uploaded")
        sha_b64 = base64.b64encode(sha).decode()

        def put() -> None:
            with open(path, "rb") as body:
                self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentLength=size,
                    ContentType=content_type, ContentMD5=base64.b64encode(md5).decode(),
                    ChecksumAlgorithm="SHA256", ChecksumSHA256=sha_b64,
                    Metadata={"sha256": sha.hex()})

        self._retry(f"put {key}", put)
        # read back: the store checked the bytes it received; this checks it kept them
        head = self._call("head_object", key, Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        stored = (head.get("ContentLength"), head.get("Metadata", {}).get("sha256"))
        if stored != (size, sha.hex()) or head.get("ChecksumSHA256") not in (None, sha_b64):
            raise IntegrityError(f"{self._where(key)}: the stored object is not what was uploaded "
                                 f"(size {stored[0]} for {size}, sha256 {stored[1]} for "
                                 f"{sha.hex()}); local file kept")
        return key

    def _call(self, operation: str, what: str, **params: Any) -> Any:
        return self._retry(f"{operation} {what}", lambda: getattr(self._client, operation)(**params))

    def _retry(self, what: str, call: Callable[[], Any]) -> Any:
        """``call()``, tried again after a backoff while it fails transiently; then, or
        on any other error, a `StorageError` naming ``what`` and the endpoint."""
        from botocore.exceptions import BotoCoreError, ClientError

        delay = self.backoff_s
        for n in range(1, self.max_attempts + 1):
            try:
                return call()
            except (BotoCoreError, ClientError) as exc:
                message, transient = self._clean(str(exc)), _transient(exc)
                if isinstance(exc, ClientError) and _error_code(exc) in ("NoSuchKey", "NotFound", "404"):
                    raise ObjectNotFound(f"S3 {what} at {self.endpoint} bucket {self.bucket}: "
                                         "no such object") from None
                if not transient or n == self.max_attempts:
                    tries = f"{n} attempt{'s' if n > 1 else ''}{'' if transient else ', not retried'}"
                    raise StorageError(f"S3 {what} at {self.endpoint} bucket {self.bucket} "
                                       f"failed ({tries}): {message}") from None
                logger.warning("S3 %s at %s failed (attempt %d of %d), retrying in %.1f s: %s",
                               what, self.endpoint, n, self.max_attempts, delay, message)
                self._sleep(delay * random.uniform(0.8, 1.0))  # jitter: many nodes, one store
                delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    def _where(self, key: str) -> str:
        return f"s3 {self.endpoint} bucket {self.bucket} key {key}"

    def _clean(self, text: str) -> str:
        # botocore's messages never carry the secret; this is the belt to its braces
        return text.replace(self._secret, "<redacted>") if self._secret else text


def _error_code(exc: Any) -> str | None:
    return exc.response.get("Error", {}).get("Code")


def _transient(exc: Exception) -> bool:
    """Worth another attempt: no connection, a time-out, a 5xx, throttling."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or status == 429 or _error_code(exc) in _TRANSIENT_CODES
    return isinstance(exc, (ConnectionError, HTTPClientError))


def store_from_options(options: Mapping[str, Any], environ: Mapping[str, str] | None = None,
                       **overrides: Any) -> SegmentStore:
    """The store the plugin options ask for: `S3Store` from their ``s3`` table
    (``[plugins.inspection.s3]``), else `LocalStore`. The table's keys are `S3_OPTIONS`;
    ``secret_env`` names an environment variable holding the secret key. ``overrides``
    go to `S3Store` as they are (tests: ``sleep``, ``backoff_s``)."""
    table = options.get("s3") if isinstance(options, Mapping) else None
    if table is None:
        return LocalStore()
    if not isinstance(table, Mapping):
        raise StorageConfigError("s3 must be a table of options")
    unknown = set(table) - S3_OPTIONS
    if unknown:
        raise StorageConfigError(f"s3: unknown options {sorted(unknown)}; known: {sorted(S3_OPTIONS)}")
    values = dict(table)
    if "secret_env" in values:
        name = values.pop("secret_env")
        if "secret_key" in values:
            raise StorageConfigError("s3: give secret_key or secret_env, not both")
        environ = os.environ if environ is None else environ
        if name not in environ:
            raise StorageConfigError(f"s3: environment variable {name} (secret_env) is not set")
        values["secret_key"] = environ[name]
    if "bucket" not in values:
        raise StorageConfigError("s3: bucket is required")
    for name, value in values.items():
        kind = _OPTION_TYPES.get(name, str)
        if not isinstance(value, kind) or (kind is bool) != isinstance(value, bool):
            raise StorageConfigError(f"s3: {name} must be {_TYPE_NAMES[kind]}")
    return S3Store(values.pop("endpoint_url", None), values.pop("bucket"), **values, **overrides)


def fetch_missing(directory: pathlib.Path, store: SegmentStore) -> list[str]:
    """Bring back every closed segment of the recording in ``directory`` that is not
    there (``keep_local = false``), each checked against the manifest's SHA-256: what
    an export, a playback or ``audit verify`` needs first. Returns the files fetched."""
    directory = pathlib.Path(directory)
    manifest = Manifest.read(directory)
    fetched = []
    for track in manifest.tracks:
        for segment in track.segments:
            if segment.sha256 is not None and not (directory / segment.file).exists():
                store.fetch(manifest.recording_id, segment.file, directory, sha256=segment.sha256)
                fetched.append(segment.file)
    return fetched


def _digests(path: pathlib.Path) -> tuple[bytes, bytes, int]:
    md5, sha, size = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    return md5.digest(), sha.digest(), size


def _normal_prefix(prefix: str) -> str:
    parts = [p for p in prefix.split("/") if p]
    for part in parts:
        try:
            check_name(part, "prefix part")
        except InvalidName as exc:
            raise StorageConfigError(f"s3: {exc}") from None
    return "".join(p + "/" for p in parts)


def _fsync_dir(directory: pathlib.Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
