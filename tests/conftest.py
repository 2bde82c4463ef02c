"""Suite-wide fixtures: uvloop as the event loop, the twin marker, free ports."""

from __future__ import annotations

import pathlib
import socket

import pytest
import uvloop
from hypothesis import settings

TWIN_DIRS = ("tests/sfu/",)

# no per-example deadline: property tests check what a parser returns, not how fast
# (timings belong to the benchmark harness); on a loaded CI machine hypothesis's 200 ms
# default failed a directory-entry round trip that passes alone
settings.register_profile("dockcast", deadline=None)
settings.load_profile("dockcast")


@pytest.fixture(scope="session")
def event_loop_policy():
    return uvloop.EventLoopPolicy()


def pytest_collection_modifyitems(config, items):
    root = pathlib.Path(config.rootpath)
    for item in items:
        rel = pathlib.Path(item.fspath).relative_to(root).as_posix()
        if rel.startswith(TWIN_DIRS):
            item.add_marker(pytest.mark.twin)


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A redis-server of this session (``tests/redis_server.py``: free port, AOF with
    ``appendfsync always``, no eviction). Tests share it: each uses a key prefix of its own
    (``redis_server.unique_prefix``) rather than flushing what another test wrote."""
    from redis_server import RedisServer

    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server
