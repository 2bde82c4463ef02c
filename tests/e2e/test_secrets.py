"""API keys and secrets through a real node: several keys at once (rotation), the
longest token lifetime, and no secret in any line a node logs in its life."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from signalling.client import DockcastClient, ServerError
from signalling.tokens import mint_token

from .conftest import API_KEY, API_SECRET

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from redis_server import RedisServer  # noqa: E402

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


# ---- no secret in any log line ----------------------------------------------------------

REDIS_PASSWORD = "redis-pass-Q7x9w2"
HOOK_USER, HOOK_PASSWORD, HOOK_TOKEN = "hook-user-K3m8", "hook-pass-Z5n1", "hook-token-V2b6"
HOOK_SECRET = "whsec-inline-R4t8y1u3i5o7p9"
ROTATED_SECRET = "rotated-secret-" + "r" * 32


async def test_no_secret_in_any_log_line_of_a_nodes_life(node_factory, tmp_path, request):
    config = tmp_path / "node.toml"
    config.write_text(
        "[[plugins.webhooks.endpoints]]\n"
        f'url = "http://{HOOK_USER}:{HOOK_PASSWORD}@127.0.0.1:1/hook?token={HOOK_TOKEN}&x=1"\n'
        f'secret = "{HOOK_SECRET}"\n')  # port 1 on 127.0.0.1: closed, every attempt fails
    # a real Redis that asks for its password: the node uses it (cluster mode) and logs
    # about it, never the password
    redis = RedisServer(tmp_path / "redis", "--requirepass", REDIS_PASSWORD)
    redis.start()
    request.addfinalizer(redis.stop)
    node = node_factory.start(args=(
        "--config", str(config), "--redis", f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis.port}/0",
        "--api-keys", f"rotated:{ROTATED_SECRET}", "--log-level", "debug"))
    token = node.token("alice", grants=("publish", "subscribe", "message"))
    rotated = mint_token("rotated", ROTATED_SECRET, "bob", room="dock-1", grants=["message"])
    async with await DockcastClient.connect(node.url, token) as alice, \
            await DockcastClient.connect(node.url, rotated) as bob:
        await alice.join("dock-1")
        await bob.join("dock-1")
        assert (await bob.send("notes", {"text": "pallet 7 scanned"}))["type"] == "sent"
        await alice.next_event("message")
        with pytest.raises(ServerError):  # a refused token is not logged either
            await DockcastClient.connect(node.url, token + "x")
    # the webhook was tried (and failed) and said so in the log: its URL was on hand
    await _wait_for_log(node, "webhook")
    assert node.stop() == 0
    log = node.log_path.read_text()
    assert "redis" in log.lower() and "configuration" in log  # the lines about them exist
    for secret in (API_SECRET, ROTATED_SECRET, REDIS_PASSWORD, HOOK_USER, HOOK_PASSWORD,
                   HOOK_TOKEN, HOOK_SECRET):
        assert secret not in log, f"{secret[:12]}... is in the node's log:\n{log[-3000:]}"
    for jwt in (token, rotated):  # not even a piece of a token (a truncated frame dump)
        _, claims, signature = jwt.split(".")
        for part in (claims, signature):
            pieces = {part[i:i + 16] for i in range(len(part) - 15)}
            found = [p for p in pieces if p in log]
            assert not found, f"a piece of a token ({found[0]}) is in the node's log"


async def _wait_for_log(node, text: str, timeout: float = 60.0) -> None:
    import asyncio

    async with asyncio.timeout(timeout):
        while "attempt" not in node.log() or text not in node.log():
            await asyncio.sleep(0.1)
