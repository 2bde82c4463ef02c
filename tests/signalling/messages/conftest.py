"""``kind`` runs a test once per backend; ``log`` is a fresh log of that kind."""

from __future__ import annotations

import pytest

from . import support
from .support import KINDS, make_log


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    if request.param == "redis":
        support.redis_url = request.getfixturevalue("redis_server").url
    return request.param


@pytest.fixture
async def log(kind, tmp_path):
    room_log = make_log(kind, tmp_path)
    yield room_log
    await room_log.close()
