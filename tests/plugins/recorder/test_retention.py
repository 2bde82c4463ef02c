"""plugins.recorder.retention: which recordings expire, and deleting one for good.

Recordings are real (the `RecordingWriter` on real VP8/Opus RTP); the object store is
moto's S3 server on a loopback port.
"""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from plugins.recorder import Manifest, RecordingNotFound
from plugins.recorder.retention import (
    Deleted,
    RecordingInProgress,
    delete_recording,
    expired,
)
from plugins.recorder.storage import InvalidName, LocalStore, S3Store, StorageError

from .media import T0
from .stores import ACCESS_KEY, SECRET_KEY, bucket, record, s3_endpoint

__all__ = ["bucket", "s3_endpoint"]  # fixtures, imported for pytest

DAY = 86400.0
NOW = T0 + 30 * DAY


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def s3(endpoint, bucket) -> S3Store:
    return S3Store(endpoint, bucket, "recordings", ACCESS_KEY, SECRET_KEY, sleep=lambda s: None)


def test_expired_picks_exactly_the_old_stopped_recordings(tmp_path):
    record(tmp_path, "old-b", T0 + 2 * DAY, T0 + 2 * DAY + 60)
    record(tmp_path, "old-a", T0, T0 + 60)
    record(tmp_path, "recent", NOW - DAY, NOW - DAY + 60)
    record(tmp_path, "on-the-edge", NOW - 7 * DAY - 60, NOW - 7 * DAY)  # exactly max_age_s old
    record(tmp_path, "held", T0, T0 + 60)
    record(tmp_path, "still-recording", T0, None)  # never stopped: never expires
    crashed, _ = record(tmp_path, "crashed", T0 + DAY, None)
    Manifest.recover(crashed)  # interrupted, closed at its last packet: may expire
    assert Manifest.read(crashed).state == "interrupted"
    (tmp_path / "no-manifest").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "recording.json").write_text("{not json")
    (tmp_path / "a-file").write_text("x")
    moved, _ = record(tmp_path, "copied-from", T0, T0 + 60)
    shutil.copytree(moved, tmp_path / "copied-to")  # its manifest names another id
    shutil.rmtree(moved)
    (tmp_path / "link-to-old").symlink_to(tmp_path / "old-a")  # not a recording of its own

    found = expired(tmp_path, NOW, 7 * DAY, keep={"held"})
    assert found == ["old-a", "crashed", "old-b"]  # oldest first
    assert expired(tmp_path, NOW, 7 * DAY - 1, keep={"held"}) == [*found, "on-the-edge"]
    assert expired(tmp_path, NOW, 0) == []  # 0: no age limit
    assert expired(tmp_path / "not-made-yet", NOW, DAY) == []


def test_delete_removes_everything_and_says_what(tmp_path, s3_endpoint, bucket):
    recordings = tmp_path / "recordings"
    directory, closed = record(recordings, "rec-1", T0, T0 + 60)
    sibling, _ = record(recordings, "rec-10", T0, T0 + 60)
    store = s3(s3_endpoint, bucket)
    for c in closed:
        store.upload("rec-1", directory / c.file, sha256=c.sha256)
    store.upload_manifest("rec-1", directory / "recording.json")
    on_disk = {p.name: p.stat().st_size for p in directory.iterdir()}
    assert mode(directory) == 0o700
    assert {p.name: mode(p) for p in directory.iterdir()} == dict.fromkeys(on_disk, 0o600)

    deleted = delete_recording(recordings, "rec-1", store)

    assert isinstance(deleted, Deleted) and deleted.recording_id == "rec-1"
    assert sorted(deleted.files) == sorted(on_disk) and deleted.files[-1] == "recording.json"
    assert deleted.bytes == sum(on_disk.values())
    assert sorted(deleted.objects) == sorted(f"recordings/rec-1/{f}" for f in on_disk)
    assert not directory.exists() and store.list("rec-1") == []
    assert Manifest.read(sibling).recording_id == "rec-10"  # its neighbour untouched
    with pytest.raises(RecordingNotFound, match="rec-1"):
        delete_recording(recordings, "rec-1", store)


def test_a_deletion_cut_short_is_finished_by_the_next_call(tmp_path, s3_endpoint, bucket):
    directory, closed = record(tmp_path, "rec-1", T0, T0 + 60)
    store = s3(s3_endpoint, bucket)
    for c in closed:
        store.upload("rec-1", directory / c.file)
    # a crash after the store and two local files went: the manifest is still there
    store.delete("rec-1")
    (directory / closed[0].file).unlink()
    (directory / closed[1].file).unlink()
    deleted = delete_recording(tmp_path, "rec-1", store)
    assert deleted.objects == [] and len(deleted.files) == len(closed) - 2 + 1
    assert not directory.exists()

    # only the stored copy was left (keep_local = false, local files already gone)
    directory, closed = record(tmp_path, "rec-2", T0, T0 + 60)
    for c in closed:
        store.upload("rec-2", directory / c.file)
    shutil.rmtree(directory)
    assert len(delete_recording(tmp_path, "rec-2", store).objects) == len(closed)
    assert store.list("rec-2") == []


def test_a_store_that_fails_leaves_the_recording_to_delete_again(tmp_path):
    directory, _ = record(tmp_path, "rec-1", T0, T0 + 60)
    store = S3Store("http://127.0.0.1:9", "dockcast", access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                    max_attempts=1, sleep=lambda s: None)  # port 9: nothing listens
    with pytest.raises(StorageError, match="127.0.0.1:9"):
        delete_recording(tmp_path, "rec-1", store)
    assert Manifest.read(directory).recording_id == "rec-1"
    assert len(delete_recording(tmp_path, "rec-1", LocalStore()).files) > 1


def test_a_recording_still_being_written_is_refused_unless_forced(tmp_path):
    directory, _ = record(tmp_path, "rec-1", T0, None)
    with pytest.raises(RecordingInProgress, match="rec-1") as refused:
        delete_recording(tmp_path, "rec-1", LocalStore())
    assert refused.value.code == "conflict" and directory.exists()
    assert delete_recording(tmp_path, "rec-1", LocalStore(), force=True).files
    assert not directory.exists()


def test_links_are_removed_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("evidence elsewhere")
    recordings = tmp_path / "recordings"
    directory, _ = record(recordings, "rec-1", T0, T0 + 60)
    (directory / "link-to-dir").symlink_to(outside)
    (directory / "link-to-file").symlink_to(outside / "keep.txt")
    (directory / "sub").mkdir()
    (directory / "sub" / "x.bin").write_bytes(b"12345")
    deleted = delete_recording(recordings, "rec-1", LocalStore())
    assert {"link-to-dir", "link-to-file", "sub/x.bin"} <= set(deleted.files)
    assert not directory.exists()
    assert (outside / "keep.txt").read_text() == "evidence elsewhere"


@pytest.mark.parametrize("rid", ["..", "../outside", "", ".", "a/b"])
def test_ids_outside_the_recordings_dir_are_refused(tmp_path, rid):
    (tmp_path / "outside").mkdir()
    recordings = tmp_path / "recordings"
    record(recordings, "rec-1", T0, T0 + 60)
    with pytest.raises(InvalidName):
        delete_recording(recordings, rid, LocalStore())
    assert (tmp_path / "outside").is_dir() and (recordings / "rec-1" / "recording.json").exists()


def test_nothing_anywhere_is_recording_not_found(tmp_path):
    with pytest.raises(RecordingNotFound, match="rec-404") as missing:
        delete_recording(tmp_path, "rec-404", LocalStore())
    assert missing.value.code == "not_found"
