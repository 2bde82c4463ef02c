"""Fixtures of the plugin tests: a PluginContext that records what plugins send.

Requests go through the real schema (``signalling.schema.validate``) and connections
carry real ``Grants``, so a handler sees what it will see in the node.
"""

from __future__ import annotations

import pytest

from plugin_support import ADMIN, Conn, RecordingContext  # noqa: F401 - ADMIN, Conn for the tests
from signalling.tokens import Grants


@pytest.fixture
def ctx(tmp_path) -> RecordingContext:
    return RecordingContext(tmp_path / "data")


@pytest.fixture
def member() -> Conn:
    """A connection whose token has every grant but admin."""
    return Conn("alice", Grants(publish=True, subscribe=True, message=True, record=True))
