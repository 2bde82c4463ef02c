"""Three nodes in three regions with the WAN emulator between them (issue 12).

Real processes: a redis-server, three ``dockcast serve --redis`` nodes, and in front of
each node's trunk port a ``bench.wanrelay`` process (150 ms RTT, ±5 ms jitter, 1% loss
each way) that the node advertises as its ``--trunk-address``: every trunk crosses one
emulated ocean, the clients reach their own node on loopback. A publisher on node A;
ten subscribers on node B and one on node C decode its video.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .cluster_nodes import REGIONS, ClusterScript, free_udp_port
from .peer import CountingVideoTrack, Participant
from .waiting import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from redis_server import RedisServer  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
WAN = "75,5,1"  # one way, each direction: 150 ms RTT, ±5 ms jitter, 1% loss
VIDEO_TICKS = 90000 // 30


class WanRelay:
    """``python -m bench.wanrelay`` in front of one node's trunk port."""

    def __init__(self, directory: Path, name: str, target_port: int, seed: int) -> None:
        self.port = free_udp_port()
        self.stats_path = directory / f"wan-{name}.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.wanrelay", "--listen", f"127.0.0.1:{self.port}",
             "--target", f"127.0.0.1:{target_port}", "--wan", WAN, "--seed", str(seed),
             "--stats", str(self.stats_path)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().startswith("wanrelay:")

    def stats(self) -> dict:
        return json.loads(self.stats_path.read_text()) if self.stats_path.exists() else {}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def wan_cluster(tmp_path, node_factory):
    with RedisServer(tmp_path / "redis") as redis:
        relays, nodes = {}, {}
        try:
            for seed, (name, region) in enumerate(REGIONS.items()):
                trunk_port = free_udp_port()
                relays[name] = WanRelay(tmp_path, name, trunk_port, seed)
                nodes[name] = node_factory.start(
                    f"data-{name}", args=("--redis", redis.url, "--node-id", f"node-{name}",
                                          "--region", region, "--trunk-port", str(trunk_port),
                                          "--trunk-address", f"127.0.0.1:{relays[name].port}"))
            yield nodes, relays
        finally:
            for proc in nodes.values():
                proc.stop()
            for relay in relays.values():
                relay.stop()


async def _viewer(node, identity: str, track_ids: list[str]) -> Participant:
    viewer = Participant(node.url, node.token(identity))
    await viewer.connect()
    joined = await viewer.join()
    assert sorted(t["track_id"] for t in joined["tracks"]) == track_ids
    await viewer.request("subscribe", track_ids=track_ids)
    return viewer


async def test_ten_subscribers_across_a_lossy_wan_get_one_copy_and_keep_decoding(wan_cluster):
    (nodes, relays) = wan_cluster
    a, b, c = nodes["a"], nodes["b"], nodes["c"]
    pub = Participant(a.url, a.token("warehouse-cam"))
    await pub.connect()
    await pub.join()
    viewers: list[Participant] = []
    try:
        published = await pub.publish(video_track=CountingVideoTrack(fps=30, width=320, height=240))
        track_ids = sorted(t["track_id"] for t in published["tracks"])
        viewers = list(await asyncio.gather(*(_viewer(b, f"seller-{i}", track_ids) for i in range(10))))
        viewers.append(await _viewer(c, "broker-eu", track_ids))
        for viewer in viewers:
            assert await wait_until(lambda v=viewer: v.video() and v.video()[0].frames > 30, timeout=60)
            assert viewer.first_video_packet_keyframe is True
            assert await wait_until(lambda v=viewer: v.audio() and v.audio()[0].frames > 30, timeout=20)

        # 1% of the trunk's datagrams are lost each way: B's copy of the track has gaps,
        # B asks A again (NACK over the trunk) and A resends from its cache
        def recovered() -> bool:
            mb, ma = b.metrics(), a.metrics()
            return (mb.get('dockcast_trunk_nacked_total{peer="node-a"}', 0) > 0
                    and ma.get('dockcast_trunk_retransmitted_total{peer="node-b"}', 0) > 0)
        assert await wait_until(recovered, timeout=60, step=0.5)

        # the trunks went through the emulated WAN, which did lose datagrams: B dialled
        # A's relay (media comes down it, acknowledgements and NACKs go up)
        # (the relay writes its counts every second)
        def crossed() -> bool:
            stats = relays["a"].stats()
            return (stats.get("clients", 0) >= 1 and stats["down"]["delivered"] > 300
                    and stats["up"]["delivered"] > 20 and stats["down"]["dropped_loss"] > 0)
        assert await wait_until(crossed, timeout=10, step=0.5), relays["a"].stats()

        # exactly one copy of each track crosses A -> B, however many watch on B
        ma, mb = a.metrics(), b.metrics()
        assert ma['dockcast_trunk_flows{peer="node-b"}'] == 2
        assert ma['dockcast_trunk_flows{peer="node-c"}'] == 2
        received = ma["dockcast_packets_received_total"]
        sent = (ma['dockcast_trunk_datagrams_out_total{peer="node-b"}']
                - ma['dockcast_trunk_retransmitted_total{peer="node-b"}'])
        assert 0.5 * received < sent <= received * 1.1, (sent, received)
        # ... and B fans it out to its ten subscribers
        trunk_in = mb['dockcast_trunk_datagrams_in_total{peer="node-a"}']
        assert mb["dockcast_packets_forwarded_total"] > 10 * trunk_in * 0.7

        # the subscribers decode through the loss: nearly every frame sent since their
        # first one, on B and on C (NACK recovery across the trunk, no freeze)
        for viewer in viewers:
            video = viewer.video()[0]
            assert video.decoded_fraction(VIDEO_TICKS) > 0.9, (viewer.token[:0], video.frames)

        # a late subscriber on B starts at a keyframe
        late = await _viewer(b, "seller-late", track_ids)
        viewers.append(late)
        assert await wait_until(lambda: late.video() and late.video()[0].frames > 5, timeout=30)
        assert late.first_video_packet_keyframe is True
        # a PLI from a subscriber on B reaches A's publisher across the trunk (once the
        # one-a-second limit on keyframe requests is past)
        assert await wait_until(lambda: time.monotonic() - max(pub.keyframe_requests, default=0) > 1.2,
                                timeout=30, step=0.1)
        asked_before = len(pub.keyframe_requests)
        trunk_asked = a.metrics()['dockcast_trunk_keyframe_requests_total{peer="node-b"}']
        assert await viewers[0].send_pli() == 1
        assert await wait_until(lambda: len(pub.keyframe_requests) > asked_before, timeout=10)
        assert a.metrics()['dockcast_trunk_keyframe_requests_total{peer="node-b"}'] > trunk_asked
    finally:
        for p in (*viewers, pub):
            await p.close()


def test_make_cluster_with_a_wan_puts_a_relay_in_front_of_each_trunk(tmp_path):
    with ClusterScript(tmp_path / "cluster", "--wan", WAN, "--log-level", "warning") as cluster:
        # each relay writes its counts once a second
        relays = [tmp_path / "cluster" / f"wan-{region}.json" for region in REGIONS.values()]
        deadline = time.monotonic() + 10
        while not all(p.exists() for p in relays) and time.monotonic() < deadline:
            time.sleep(0.2)
        counts = [json.loads(p.read_text()) for p in relays if p.exists()]
    assert cluster.healthy == {0, 1, 2}, cluster.out
    assert [c["clients"] for c in counts] == [0, 0, 0], cluster.out
    assert cluster.returncode == 0, cluster.out
    nodes = cluster.node_lines()
    assert [line.split(":", 1)[0] for line in nodes] == ["node-us-west", "node-asia", "node-eu"]
    assert all(f"WAN emulator at 127.0.0.1:{cluster.base + 10 * i + 2}" in line
               for i, line in enumerate(nodes))
