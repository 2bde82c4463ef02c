"""API keys and secrets through a real node: several keys at once (rotation), the
longest token lifetime, and no secret in any line a node logs in its life."""

from __future__ import annotations

import pytest

from signalling.client import DockcastClient, ServerError
from signalling.tokens import mint_token

from .conftest import API_KEY, API_SECRET

pytestmark = [pytest.mark.timeout(120)]

OLD_SECRET = "old-secret-" + "o" * 32
NEW_SECRET = "new-secret-" + "n" * 32


async def _welcomed(url: str, token: str) -> dict:
    client = await DockcastClient.connect(url, token)
    try:
        return client.welcome
    finally:
        await client.close()


async def test_several_api_keys_at_once_for_rotation(node_factory):
    node = node_factory.start(args=("--api-keys", f"old:{OLD_SECRET},new:{NEW_SECRET}"))
    for key, secret in (("old", OLD_SECRET), ("new", NEW_SECRET), (API_KEY, API_SECRET)):
        token = mint_token(key, secret, f"user-{key}", room="dock-1")
        assert (await _welcomed(node.url, token))["identity"] == f"user-{key}"
    with pytest.raises(ServerError) as info:  # the iss picks the secret: old's secret is not new's
        await _welcomed(node.url, mint_token("new", OLD_SECRET, "eve", room="dock-1"))
    assert info.value.code == "unauthorized"


async def test_a_token_living_longer_than_max_token_ttl_is_refused(node_factory):
    node = node_factory.start(env={"DOCKCAST_MAX_TOKEN_TTL_S": "600"})
    assert await _welcomed(node.url, node.token("alice", ttl=600))
    with pytest.raises(ServerError) as info:
        await _welcomed(node.url, node.token("alice", ttl=601))
    assert info.value.code == "unauthorized" and "lifetime" in info.value.message
