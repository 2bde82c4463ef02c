"""Helpers of the storage and retention tests: real recordings written by the
`RecordingWriter` from real VP8/Opus RTP, and a real S3 endpoint on loopback
(``moto``'s server, started on a free port of 127.0.0.1, never another address)."""

from __future__ import annotations

import itertools
import pathlib

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from plugins.recorder import RecordingWriter, SegmentClosed

from .media import AUDIO, AUDIO_INFO, VIDEO, VIDEO_INFO, opus_packets, vp8_packets

ACCESS_KEY = "AKIADOCKCASTTEST"
SECRET_KEY = "s3-secret-never-logged-0123456789"
_buckets = itertools.count(1)


def record(recordings_dir: pathlib.Path, recording_id: str, started_at: float,
           stopped_at: float | None = None, seconds: int = 3) -> tuple[pathlib.Path, list[SegmentClosed]]:
    """A recording of ``seconds`` of video (30 fps, a keyframe each second) and audio,
    rolled every second: about ``seconds`` segments per track. ``stopped_at`` None
    leaves it recording (the writer is not stopped, its manifest says ``recording``)."""
    closed: list[SegmentClosed] = []
    writer = RecordingWriter(recordings_dir / recording_id, recording_id, started_at=started_at,
                             segment_seconds=1.0, max_segment_seconds=2.0,
                             on_segment_closed=closed.append, manifest_fields={"room": "dock-7"})
    video = writer.track(VIDEO, VIDEO_INFO)
    for p in vp8_packets(30 * seconds, keyframes=tuple(range(30, 30 * seconds, 30))):
        video.rtp(p.data, started_at + p.frame / 30, p.keyframe)
    audio = writer.track(AUDIO, AUDIO_INFO)
    for p in opus_packets(50 * seconds):
        audio.rtp(p.data, started_at + p.frame / 50, False)
    writer.drain_once()
    if stopped_at is not None:
        writer.stop(at=stopped_at)
    return writer.directory, closed


def s3_client(endpoint: str):
    """A plain boto3 client of the test endpoint: the tests' own view of the store."""
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))


def start_moto(port: int = 0) -> tuple[ThreadedMotoServer, str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def s3_endpoint():
    """The URL of an S3 endpoint (moto) on a free loopback port."""
    server, url = start_moto()
    yield url
    server.stop()


@pytest.fixture
def bucket(s3_endpoint):
    """A new empty bucket on the endpoint (moto keeps one state per process)."""
    name = f"dockcast-test-{next(_buckets)}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name
