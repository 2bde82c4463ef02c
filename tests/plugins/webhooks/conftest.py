"""A real HTTP receiver for every webhook test that asks for one."""

from __future__ import annotations

import pytest

from .support import Receiver


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()
