"""Two nodes, one Redis: a room that spans both (issue 12).

Real processes: a redis-server on a free port (AOF always), two ``dockcast serve
--redis`` nodes in two regions with their trunk ports. A publisher on node A, subscribers
on node B: B's subscribers decode A's video over the trunk; room messages sent on one
node reach members on the other; a client of A asking for B's region is redirected.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis_server import RedisServer

from signalling.client import DockcastClient

from .cluster_nodes import ClusterScript, start_nodes
from .peer import Participant
from .waiting import wait_until as _wait

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def cluster(tmp_path, node_factory):
    with RedisServer(tmp_path / "redis") as redis:
        nodes = start_nodes(node_factory, redis.url, "ab")
        yield nodes
        for proc in nodes.values():
            proc.stop()


async def test_a_room_spans_two_nodes(cluster):
    a, b = cluster["a"], cluster["b"]
    pub = Participant(a.url, a.token("warehouse-cam"))
    await pub.connect()
    await pub.join()
    viewers = []
    try:
        published = await pub.publish()
        track_ids = sorted(t["track_id"] for t in published["tracks"])
        for i in range(2):
            viewer = Participant(b.url, b.token(f"seller-{i}"))
            await viewer.connect()
            joined = await viewer.join()
            for _ in range(20):  # A writes its tracks into the directory just after `published`
                if sorted(t["track_id"] for t in joined["tracks"]) == track_ids:
                    break
                await viewer.request("leave")
                await asyncio.sleep(0.1)
                joined = await viewer.join()
            # the room's tracks, wherever they were published
            assert sorted(t["track_id"] for t in joined["tracks"]) == track_ids
            await viewer.request("subscribe", track_ids=track_ids)
            viewers.append(viewer)
        for viewer in viewers:
            assert await _wait(lambda v=viewer: v.video() and v.video()[0].frames > 20)
            assert viewer.first_video_packet_keyframe is True
            assert await _wait(lambda v=viewer: v.audio() and v.audio()[0].frames > 20)
        # one copy of each track crosses, however many subscribe on B: two flows, and
        # about as many datagrams out of A as its publisher sent (plus sender reports)
        metrics_a, metrics_b = a.metrics(), b.metrics()
        assert metrics_a['dockcast_trunk_flows{peer="node-b"}'] == 2
        assert metrics_b['dockcast_trunk_flows{peer="node-a"}'] == 2
        received = metrics_a["dockcast_packets_received_total"]
        sent = metrics_a['dockcast_trunk_datagrams_out_total{peer="node-b"}']
        assert 0 < sent <= received * 1.1, (sent, received)
        # and B forwards each to both of its subscribers
        assert metrics_b["dockcast_packets_forwarded_total"] > 1.5 * sent * 0.8
        # a subscriber on B two seconds later starts at a keyframe (cached on B, or
        # asked of A's publisher when the cached one is too old)
        await asyncio.sleep(2)
        late_viewer = Participant(b.url, b.token("seller-late"))
        await late_viewer.connect()
        await late_viewer.join()
        await late_viewer.request("subscribe", track_ids=track_ids)
        viewers.append(late_viewer)
        assert await _wait(lambda: late_viewer.video() and late_viewer.video()[0].frames > 5)
        assert late_viewer.first_video_packet_keyframe is True
        # a PLI from a subscriber on B reaches A's publisher across the trunk (once the
        # one-a-second limit on keyframe requests is past)
        assert await _wait(lambda: time.monotonic() - max(pub.keyframe_requests, default=0) > 1.2,
                           timeout=30, step=0.1)
        asked_before = len(pub.keyframe_requests)
        assert await viewers[0].send_pli() == 1
        assert await _wait(lambda: len(pub.keyframe_requests) > asked_before, timeout=10)
        # a publication after they joined reaches them as an event from the other node
        late = Participant(a.url, a.token("dock-cam-2"))
        await late.connect()
        await late.join()
        await late.publish(audio=False)
        event = await viewers[0].next_event("track_published")
        assert event["track"]["participant_id"] != published["tracks"][0].get("participant_id")
        await late.close()
    finally:
        for p in (*viewers, pub):
            await p.close()


async def test_room_messages_cross_nodes_in_order(cluster):
    a, b = cluster["a"], cluster["b"]
    here = await DockcastClient.connect(a.url, a.token("wms-a"))
    there = await DockcastClient.connect(b.url, b.token("seller-b"))
    try:
        await here.join("dock-1")
        await there.join("dock-1")
        seqs = [(await here.send("status", {"i": i}))["seq"] for i in range(5)]
        seqs += [(await there.send("status", {"i": i}))["seq"] for i in range(5, 10)]
        assert seqs == list(range(1, 11))  # one gap-free log for the room, whichever node
        for client in (here, there):
            got = []
            while len(got) < 10:
                got.append((await client.next_event("message", timeout=10))["seq"])
            assert got == seqs
    finally:
        await here.close()
        await there.close()


async def test_a_client_asking_for_another_region_is_sent_there(cluster):
    a, b = cluster["a"], cluster["b"]
    # node A learns of node B from the directory within a poll (half a second)
    deadline = time.monotonic() + 10
    while True:
        client = await DockcastClient.connect(a.url, a.token("seller"), region="asia",
                                              follow_redirect=False)
        redirect = client.welcome.get("redirect")
        await client.close()
        if redirect is not None or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert redirect == b.url
    client = await DockcastClient.connect(a.url, a.token("seller"), region="asia")
    try:
        assert client.url == b.url and client.welcome["region"] == "asia"
    finally:
        await client.close()


def test_make_cluster_starts_redis_and_three_nodes(tmp_path):
    with ClusterScript(tmp_path / "cluster") as cluster:
        pass
    assert cluster.healthy == {0, 1, 2}, cluster.out
    assert cluster.returncode == 0, cluster.out
    assert [line.split(":", 1)[0] for line in cluster.node_lines()] == [
        "node-us-west", "node-asia", "node-eu"]


def test_the_js_client_follows_a_redirect(cluster, tmp_path):
    import shutil
    import subprocess

    a, b = cluster["a"], cluster["b"]
    node = shutil.which("node")
    assert node is not None, "node is not installed: `make test` installs it"
    root = Path(__file__).resolve().parents[2]
    script = tmp_path / "redirect.mjs"
    script.write_text(f"""
import {{ DockcastClient }} from "{root}/signalling/web/dockcast.js";
const [url, token] = process.argv.slice(2);
for (let i = 0; i < 50; i++) {{  // node A learns of B within a directory poll
  const client = new DockcastClient(url, token, {{ region: "asia", reconnect: false }});
  await client.connect();
  const where = client.url;
  client.close();
  if (where !== url) {{ console.log(where); process.exit(0); }}
  await new Promise((r) => setTimeout(r, 200));
}}
console.log("stayed"); process.exit(1);
""")
    done = subprocess.run([node, "--experimental-websocket", "--no-warnings", str(script), a.url,
                           a.token("seller")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == b.url, done.stdout + done.stderr


async def test_a_publisher_whose_node_dies_comes_back_on_another_with_no_renegotiation(cluster):
    a, b = cluster["a"], cluster["b"]
    pub = Participant(a.url, a.token("warehouse-cam"))
    await pub.connect()
    await pub.join()
    viewer = Participant(b.url, b.token("seller"))
    try:
        published = await pub.publish(audio=False)
        await viewer.connect()
        await viewer.join()
        await viewer.request("subscribe", track_ids=[published["tracks"][0]["track_id"]])
        assert await _wait(lambda: viewer.video() and viewer.video()[0].frames > 20)
        offers = len([e for e in viewer.all_events if e["type"] == "offer"])
        killed_at = time.monotonic()
        a.kill()  # node A dies with the publisher's connection
        await pub.close(abrupt=True)
        # the warehouse phone reconnects to the node that is left and publishes again
        pub = Participant(b.url, b.token("warehouse-cam"))
        await pub.connect()
        await pub.join()
        await pub.publish(audio=False)
        frames = viewer.video()[0].frames
        assert await _wait(lambda: viewer.video()[0].frames > frames + 30, timeout=30)
        print(f"failover: media again {time.monotonic() - killed_at:.2f} s after the SIGKILL")
        # the same m-line, the same decoder: no new offer reached the subscriber
        assert len([e for e in viewer.all_events if e["type"] == "offer"]) == offers
    finally:
        await viewer.close()
        await pub.close()
