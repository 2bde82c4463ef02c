"""Fixtures of the media-plane tests: peers on loopback, built from WebRtcTransport."""

from __future__ import annotations

import pytest

from sfu import ice


@pytest.fixture(autouse=True, scope="session")
def loopback_ice():
    # the node's documented ICE policy, applied to the in-process peers of these tests
    ice.use_host_addresses(["127.0.0.1"])
    yield
    ice.use_host_addresses(None)
