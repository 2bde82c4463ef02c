"""Fixtures of the relay tests: node certificates, a trunk between node A and node B
(`trunks.open_nodes`), the same through a lossy UDP relay."""

from __future__ import annotations

import pytest
from trunks import LossyRelay, close_nodes, open_nodes

from sfu.relay import TrunkCertificate, TrunkSettings


@pytest.fixture(scope="session")
def certs() -> dict[str, TrunkCertificate]:
    """One certificate per node: A and B pin each other, C is known to nobody."""
    return {name: TrunkCertificate.generate(f"node-{name}") for name in "ABC"}


@pytest.fixture
def trunk_settings() -> TrunkSettings:
    return TrunkSettings()


@pytest.fixture
async def nodes(certs, free_port, trunk_settings):
    pair = await open_nodes(certs, free_port, trunk_settings)
    yield pair
    await close_nodes(pair)


@pytest.fixture
async def relayed(certs, free_port, trunk_settings):
    """`nodes` with B's packets going through a `LossyRelay` (``relayed.relay``)."""
    relay = LossyRelay()
    pair = await open_nodes(certs, free_port, trunk_settings, relay)
    yield pair
    relay.close()
    await close_nodes(pair)
