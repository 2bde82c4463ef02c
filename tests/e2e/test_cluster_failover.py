"""Clients of a node that dies move to another node of the cluster by themselves and
lose no room message (issue 12, point 4).

Real processes: a redis-server and two ``dockcast serve --redis`` nodes. A member on node
A reads a room while a member on node B sends to it; node A is SIGKILLed mid-run. The
Python client comes back through ``welcome.nodes`` with ``hello.resume``; the JS client
(under Node) does it by itself. Each sees every seq once, in order.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from signalling.client import DockcastClient, SessionClosed

from .cluster_nodes import start_nodes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from redis_server import RedisServer  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
COUNT = 300


@pytest.fixture
def two_nodes(tmp_path, node_factory):
    with RedisServer(tmp_path / "redis") as redis:
        nodes = start_nodes(node_factory, redis.url, "ab")
        yield nodes
        for proc in nodes.values():
            proc.stop()


async def _send_all(sender: DockcastClient, count: int, pace: float = 0.01) -> list[int]:
    seqs = []
    for i in range(count):
        seqs.append((await sender.send("status", {"i": i}, msg_id=f"m-{i}"))["seq"])
        await asyncio.sleep(pace)
    return seqs


async def test_a_python_client_of_a_dead_node_resumes_on_another_with_nothing_lost(two_nodes):
    a, b = two_nodes["a"], two_nodes["b"]
    sender = await DockcastClient.connect(b.url, b.token("wms"))
    await sender.join("dock-1")
    token = a.token("seller")
    reader = await DockcastClient.connect(a.url, token)
    # node A knows B once its directory watch polled (twice a second): then it names it
    for _ in range(40):
        if reader.alternate_urls:
            break
        await reader.close()
        await asyncio.sleep(0.25)
        reader = await DockcastClient.connect(a.url, token)
    assert reader.alternate_urls == [b.url]
    await reader.join("dock-1")
    seqs: list[int] = []
    sending = asyncio.ensure_future(_send_all(sender, COUNT))
    try:
        while len(seqs) < COUNT // 3:
            seqs.append((await reader.next_event("message", timeout=10))["seq"])
        a.kill()  # mid-run; the reader's socket dies with it
        with pytest.raises(SessionClosed):
            while True:  # what was already on its way before the kill still counts
                seqs.append((await reader.next_event("message", timeout=10))["seq"])
        resumed = await DockcastClient.connect([reader.url, *reader.alternate_urls], token,
                                               resume={"session_id": reader.session_id,
                                                       "last_seq": seqs[-1]})
        assert resumed.url == b.url
        await resumed.join("dock-1")
        while len(seqs) < COUNT:
            seqs.append((await resumed.next_event("message", timeout=10))["seq"])
        assert await sending == list(range(1, COUNT + 1))
        assert seqs == list(range(1, COUNT + 1))  # every seq once, in order
        await resumed.close()
    finally:
        sending.cancel()
        await sender.close()
        await reader.close()


def test_the_js_client_of_a_dead_node_moves_to_another_by_itself(two_nodes, tmp_path):
    a, b = two_nodes["a"], two_nodes["b"]
    node = shutil.which("node")
    assert node is not None, "node is not installed: `make test` installs it"
    script = tmp_path / "failover.mjs"
    script.write_text(f"""
import {{ DockcastClient }} from "{ROOT}/signalling/web/dockcast.js";
const [url, token] = process.argv.slice(2);
let client;
for (let i = 0; i < 40; i++) {{  // node A knows B once its directory watch polled
  client = new DockcastClient(url, token, {{ reconnect: {{ initialDelayMs: 50, maxDelayMs: 400 }} }});
  await client.connect();
  if (client.alternates.length) break;
  client.close();
  await new Promise((r) => setTimeout(r, 250));
}}
const seqs = [];
client.on("message", (m) => seqs.push(m.seq));
client.on("moved", (ev) => console.log(`moved ${{ev.from}} ${{ev.url}}`));
await client.join("dock-1");
console.log("joined");
const deadline = Date.now() + 60000;
while (seqs.length < {COUNT} && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
console.log(`seqs ${{JSON.stringify(seqs)}}`);
console.log(`url ${{client.url}}`);
client.close();
process.exit(0);
""")
    proc = subprocess.Popen([node, "--experimental-websocket", "--no-warnings", str(script), a.url,
                             a.token("seller")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    async def run() -> list[int]:
        sender = await DockcastClient.connect(b.url, b.token("wms"))
        await sender.join("dock-1")
        try:
            line = await asyncio.to_thread(proc.stdout.readline)
            assert line.strip() == "joined", line + proc.stderr.read()
            sending = asyncio.ensure_future(_send_all(sender, COUNT, pace=0.02))
            await asyncio.sleep(COUNT * 0.02 / 3)
            a.kill()
            return await sending
        finally:
            await sender.close()

    sent = asyncio.run(run())
    out, err = proc.communicate(timeout=90)
    assert sent == list(range(1, COUNT + 1))
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert lines.get("moved") == f"{a.url} {b.url}", out + err
    assert lines["url"] == b.url
    import json

    assert json.loads(lines["seqs"]) == list(range(1, COUNT + 1)), out + err
