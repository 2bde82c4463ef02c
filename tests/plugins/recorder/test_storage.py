"""plugins.recorder.storage: closed segments to an S3 endpoint and back.

The endpoint is real: moto's S3 server on a free port of 127.0.0.1, spoken to by the
same boto3 client code a node points at MinIO or AWS. The segments are real too: VP8
and Opus RTP written by the `RecordingWriter`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.recorder import Manifest
from plugins.recorder.storage import (
    IntegrityError,
    InvalidName,
    LocalStore,
    ObjectNotFound,
    S3Store,
    StorageConfigError,
    StorageError,
    check_name,
    fetch_missing,
    store_from_options,
)

from .media import T0
from .stores import (
    ACCESS_KEY,
    SECRET_KEY,
    bucket,
    record,
    s3_client,
    s3_endpoint,
    start_moto,
)

__all__ = ["bucket", "s3_endpoint"]  # fixtures, imported for pytest


def make_store(endpoint, bucket, **options) -> S3Store:
    options.setdefault("sleep", lambda s: None)
    return S3Store(endpoint, bucket, "node-1/recordings", ACCESS_KEY, SECRET_KEY, **options)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_segments_go_up_and_come_back_byte_identical_with_their_modes(tmp_path, s3_endpoint, bucket):
    directory, closed = record(tmp_path, "rec-1", T0, T0 + 10)
    store = make_store(s3_endpoint, bucket)
    originals = {c.file: (directory / c.file).read_bytes() for c in closed}
    for c in closed:
        key = store.upload("rec-1", directory / c.file, sha256=c.sha256)
        assert key == f"node-1/recordings/rec-1/{c.file}"
        assert (directory / c.file).exists()  # keep_local: true by default
    store.upload_manifest("rec-1", directory / "recording.json")

    listed = store.list("rec-1")
    assert [o.file for o in listed] == sorted([*originals, "recording.json"])
    assert {o.file: o.size for o in listed if o.file in originals} == {c.file: c.size for c in closed}

    for c in closed:
        (directory / c.file).unlink()
    assert sorted(fetch_missing(directory, store)) == sorted(originals)
    for name, data in originals.items():
        assert (directory / name).read_bytes() == data
        assert mode(directory / name) == 0o600  # as the writer made them
    assert not list(directory.glob("*.part"))
    assert fetch_missing(directory, store) == []  # nothing missing any more


def test_fetch_into_a_new_directory_makes_it_0700(tmp_path, s3_endpoint, bucket):
    directory, closed = record(tmp_path, "rec-1", T0, T0 + 10)
    store = make_store(s3_endpoint, bucket)
    store.upload("rec-1", directory / closed[0].file)
    path = store.fetch("rec-1", closed[0].file, tmp_path / "elsewhere", sha256=closed[0].sha256)
    assert path.read_bytes() == (directory / closed[0].file).read_bytes()
    assert mode(tmp_path / "elsewhere") == 0o700 and mode(path) == 0o600


def test_an_upload_sends_content_md5_and_sha256_and_the_store_keeps_the_checksum(
        tmp_path, s3_endpoint, bucket):
    directory, closed = record(tmp_path, "rec-1", T0, T0 + 10)
    store = make_store(s3_endpoint, bucket)
    sent = []
    store._client.meta.events.register("before-send.s3.PutObject",
                                       lambda request, **kw: sent.append(dict(request.headers)))
    path = directory / closed[0].file
    data = path.read_bytes()
    key = store.upload("rec-1", path)
    [headers] = sent
    assert headers["Content-MD5"].decode() == base64.b64encode(hashlib.md5(data).digest()).decode()
    sha_b64 = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert headers["x-amz-checksum-sha256"].decode() == sha_b64
    head = s3_client(s3_endpoint).head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == sha_b64 and head["Metadata"]["sha256"] == closed[0].sha256


def test_fetch_refuses_a_sha256_that_differs_and_keeps_nothing(tmp_path, s3_endpoint, bucket):
    directory, closed = record(tmp_path, "rec-1", T0, T0 + 10)
    store = make_store(s3_endpoint, bucket)
    store.upload("rec-1", directory / closed[0].file)
    dest = tmp_path / "fetched"
    with pytest.raises(IntegrityError, match="SHA-256 .* is not the expected 0{64}"):
        store.fetch("rec-1", closed[0].file, dest, sha256="0" * 64)
    assert list(dest.iterdir()) == []


def test_fetch_refuses_an_object_changed_in_the_store(tmp_path, s3_endpoint, bucket):
    directory, closed = record(tmp_path, "rec-1", T0, T0 + 10)
    store = make_store(s3_endpoint, bucket)
    key = store.upload("rec-1", directory / closed[0].file)
    tampered = bytearray((directory / closed[0].file).read_bytes())
    tampered[-1] ^= 1
    s3_client(s3_endpoint).put_object(Bucket=bucket, Key=key, Body=bytes(tampered))
    (directory / closed[0].file).unlink()
    with pytest.raises(IntegrityError, match=re.escape(closed[0].file)):
        fetch_missing(directory, store)
    assert not (directory / closed[0].file).exists()


def test_fetch_of_a_missing_object_is_object_not_found(tmp_path, s3_endpoint, bucket):
    store = make_store(s3_endpoint, bucket)
    with pytest.raises(ObjectNotFound, match="rec-9/nothing.mjr"):
        store.fetch("rec-9", "nothing.mjr", tmp_path, sha256="0" * 64)


def test_keep_local_false_removes_the_file_only_after_a_verified_upload(tmp_path, s3_endpoint, bucket):
    directory, closed = record(tmp_path, "rec-1", T0, T0 + 10)
    store = make_store(s3_endpoint, bucket, keep_local=False)
    first, second, third = (directory / c.file for c in closed[:3])

    # the file changed since the writer hashed it: not uploaded, not removed
    with pytest.raises(IntegrityError, match="changed since it was closed"):
        store.upload("rec-1", first, sha256="ab" * 32)
    assert first.exists() and store.list("rec-1") == []

    # someone replaced the object between the upload and its verification
    other = s3_client(s3_endpoint)

    def replace(**kw):
        other.put_object(Bucket=bucket, Key=f"node-1/recordings/rec-1/{second.name}", Body=b"x")

    store._client.meta.events.register("after-call.s3.PutObject", replace)
    with pytest.raises(IntegrityError, match="not what was uploaded.*local file kept"):
        store.upload("rec-1", second, sha256=closed[1].sha256)
    assert second.exists()
    store._client.meta.events.unregister("after-call.s3.PutObject", replace)

    data = third.read_bytes()
    store.upload("rec-1", third, sha256=closed[2].sha256)
    assert not third.exists()
    assert store.fetch("rec-1", third.name, directory, sha256=closed[2].sha256).read_bytes() == data


def test_delete_removes_every_object_of_one_recording_only(tmp_path, s3_endpoint, bucket):
    store = make_store(s3_endpoint, bucket)
    for rid in ("rec-1", "rec-10"):  # one id a prefix of the other
        directory, closed = record(tmp_path, rid, T0, T0 + 10)
        for c in closed:
            store.upload(rid, directory / c.file)
        store.upload_manifest(rid, directory / "recording.json")
    kept = store.list("rec-10")
    deleted = store.delete("rec-1")
    assert len(deleted) == 7 and all(k.startswith("node-1/recordings/rec-1/") for k in deleted)
    assert store.list("rec-1") == []
    assert store.list("rec-10") == kept and len(kept) == 7
    assert store.delete("rec-1") == []  # again: nothing left, no error


def test_an_unreachable_store_names_the_endpoint_never_the_secret(tmp_path, caplog, bucket):
    server, endpoint = start_moto()
    port = endpoint.rsplit(":", 1)[1]
    s3_client(endpoint).create_bucket(Bucket=bucket)
    directory, closed = record(tmp_path, "rec-1", T0, T0 + 10)
    path = directory / closed[0].file
    slept = []
    store = make_store(endpoint, bucket, keep_local=False, max_attempts=3, sleep=slept.append)
    server.stop()
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(StorageError) as failure:
            store.upload("rec-1", path, sha256=closed[0].sha256)
        message = str(failure.value)
        assert f"http://127.0.0.1:{port}" in message and bucket in message
        assert "3 attempts" in message and closed[0].file in message
        assert failure.value.code == "unavailable"
        assert len(slept) == 2 and slept[1] > slept[0]  # backoff between the attempts
        assert path.exists()  # never removed without a verified upload
        everything = message + repr(store) + caplog.text + repr(failure.value.__dict__)
        assert SECRET_KEY not in everything
        assert "retrying" in caplog.text
    finally:
        server, _ = start_moto(int(port))  # the same endpoint comes back
    try:
        assert store.upload("rec-1", path, sha256=closed[0].sha256).endswith(closed[0].file)
        assert not path.exists()
    finally:
        server.stop()


def test_a_transient_failure_is_retried_until_the_store_is_back(tmp_path, bucket):
    server, endpoint = start_moto()
    port = int(endpoint.rsplit(":", 1)[1])
    s3_client(endpoint).create_bucket(Bucket=bucket)
    directory, closed = record(tmp_path, "rec-1", T0, T0 + 10)
    servers = [server]
    server.stop()

    def backoff(seconds):  # the store comes back during the first wait
        if len(servers) == 1:
            servers.append(start_moto(port)[0])

    store = make_store(endpoint, bucket, max_attempts=3, sleep=backoff)
    try:
        key = store.upload("rec-1", directory / closed[0].file)
        assert [o.key for o in store.list("rec-1")] == [key] and len(servers) == 2
    finally:
        servers[-1].stop()


def test_a_refusal_is_not_retried(tmp_path, s3_endpoint):
    directory, closed = record(tmp_path, "rec-1", T0, T0 + 10)
    slept = []
    store = make_store(s3_endpoint, "no-such-bucket", sleep=slept.append)
    with pytest.raises(StorageError, match="NoSuchBucket") as failure:
        store.upload("rec-1", directory / closed[0].file)
    assert "not retried" in str(failure.value) and slept == []
    with pytest.raises(StorageError, match="no-such-bucket"):
        store.check()


def test_check_passes_on_a_bucket_that_exists(s3_endpoint, bucket):
    make_store(s3_endpoint, bucket).check()


def test_the_local_store_keeps_files_where_they_are(tmp_path):
    directory, closed = record(tmp_path, "rec-1", T0, T0 + 10)
    store = LocalStore()
    path = directory / closed[0].file
    assert store.upload("rec-1", path, sha256=closed[0].sha256) == str(path) and path.exists()
    with pytest.raises(IntegrityError):
        store.upload("rec-1", path, sha256="0" * 64)
    assert store.list("rec-1") == [] and store.delete("rec-1") == [] and store.keep_local
    with pytest.raises(ObjectNotFound, match="no object store"):
        store.fetch("rec-1", closed[0].file, directory, sha256=closed[0].sha256)


@pytest.mark.parametrize("rid", ["", ".", "..", "../rec-1", "a/b", "a\\b", ".hidden", "x\0y", "a\nb"])
def test_names_that_are_not_one_plain_part_are_refused(tmp_path, s3_endpoint, bucket, rid):
    store = make_store(s3_endpoint, bucket)
    with pytest.raises(InvalidName):
        store.list(rid)
    with pytest.raises(InvalidName):
        store.fetch("rec-1", rid, tmp_path, sha256="0" * 64)
    assert InvalidName("x").code == "bad_request"


@given(st.text(max_size=40))
def test_a_checked_name_stays_one_part_under_its_parent(name):
    try:
        checked = check_name(name)
    except InvalidName:
        return
    base = "/recordings"
    assert os.path.dirname(os.path.normpath(os.path.join(base, checked))) == base
    assert checked not in ("", ".", "..")


# -- options -------------------------------------------------------------------------

def test_no_s3_table_is_the_local_store():
    assert isinstance(store_from_options({}), LocalStore)
    assert isinstance(store_from_options({"recordings_dir": "/x"}), LocalStore)


def test_an_s3_table_builds_the_store_a_user_points_at_minio(tmp_path, s3_endpoint, bucket):
    store = store_from_options({"s3": {
        "endpoint_url": s3_endpoint, "bucket": bucket, "prefix": "/dock/", "access_key": ACCESS_KEY,
        "secret_env": "DC_TEST_S3_SECRET", "region": "eu-central-1", "keep_local": False}},
        environ={"DC_TEST_S3_SECRET": SECRET_KEY})
    assert isinstance(store, S3Store) and not store.keep_local
    assert (store.bucket, store.prefix, store.region) == (bucket, "dock/", "eu-central-1")
    assert store.secrets() == [SECRET_KEY] and SECRET_KEY not in repr(store)
    directory, closed = record(tmp_path, "rec-1", T0, T0 + 10)
    assert store.upload("rec-1", directory / closed[0].file) == f"dock/rec-1/{closed[0].file}"


KEYS = {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY}


@pytest.mark.parametrize("table, message", [
    ({"endpoint_url": "http://127.0.0.1:9", **KEYS}, "bucket is required"),
    ({"bucket": "b1", "secret": SECRET_KEY}, "unknown options \\['secret'\\]"),
    ({"bucket": "b1", "access_key": ACCESS_KEY}, "access_key and secret_key together"),
    ({"bucket": "b1", "secret_env": "DC_TEST_UNSET"}, "DC_TEST_UNSET .* is not set"),
    ({"bucket": "b1", "secret_env": "DC_TEST_UNSET", **KEYS}, "secret_key or secret_env"),
    ({"bucket": "b1", "endpoint_url": "ftp://127.0.0.1/", **KEYS}, "http:// or https://"),
    ({"bucket": "b1", "endpoint_url": f"http://u:{SECRET_KEY}@127.0.0.1/"}, "no credentials"),
    ({"bucket": "b1", "keep_local": "no", **KEYS}, "keep_local must be true or false"),
    ({"bucket": "b1", "prefix": "a/../b", **KEYS}, "prefix part '..'"),
    ({"bucket": "b1", "max_attempts": 0, **KEYS}, "max_attempts 0 must be at least 1"),
    ({"bucket": "b1", "max_attempts": 2.5, **KEYS}, "max_attempts must be an integer"),
    ({"bucket": "b1", "addressing_style": "dns", **KEYS}, "addressing_style 'dns'"),
    ({"bucket": "b1", "timeout_s": "30", **KEYS}, "timeout_s must be a number"),
    ({"bucket": "b1", "timeout_s": -1, **KEYS}, "timeout_s -1 positive"),
    ({"bucket": 7, **KEYS}, "bucket must be a string"),
])
def test_bad_options_are_named_and_the_secret_is_not(table, message):
    with pytest.raises(StorageConfigError, match=message) as failure:
        store_from_options({"s3": table}, environ={})
    assert SECRET_KEY not in str(failure.value)


def test_the_manifest_goes_up_as_json(tmp_path, s3_endpoint, bucket):
    directory, _ = record(tmp_path, "rec-1", T0, T0 + 10)
    key = make_store(s3_endpoint, bucket).upload_manifest("rec-1", directory / "recording.json")
    got = s3_client(s3_endpoint).get_object(Bucket=bucket, Key=key)
    assert got["ContentType"] == "application/json"
    assert Manifest.parse(json.loads(got["Body"].read())).recording_id == "rec-1"
