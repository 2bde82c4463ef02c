"""/metrics of a real node: the totals never go down while tracks, subscriptions and
rooms come and go; what is per room is a gauge."""

from __future__ import annotations

import pytest

from .test_media import _publisher, _subscriber, _wait

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TOTALS = ("dockcast_packets_received_total", "dockcast_packets_forwarded_total",
          "dockcast_bytes_forwarded_total", "dockcast_retransmissions_total")


async def test_counters_never_go_down_as_tracks_subscriptions_and_rooms_close(node_factory):
    node = node_factory.start(env={"DOCKCAST_ROOM_DEPARTURE_TIMEOUT_S": "0.2"})
    seen: list[dict] = []

    def snapshot() -> dict:
        metrics = node.metrics()
        values = {name: metrics.get(name, 0.0) for name in TOTALS}
        if seen:
            for name in TOTALS:
                assert values[name] >= seen[-1][name], (name, seen[-1][name], values[name])
        seen.append(values)
        return metrics

    pub, published = await _publisher(node)
    ids = {t["kind"]: t["track_id"] for t in published["tracks"]}
    sub = await _subscriber(node, "seller", [ids["video"], ids["audio"]])
    try:
        assert await _wait(lambda: sub.video() and sub.video()[0].frames > 10)
        assert snapshot()["dockcast_packets_forwarded_total"] > 0
        await sub.request("unsubscribe", track_ids=[ids["video"]])  # a consumer closes
        await sub.next_event("offer")
        snapshot()
        await pub.request("unpublish", track_ids=[ids["audio"]])  # a producer closes
        assert await _wait(lambda: node.metrics()["dockcast_tracks"] == 1)
        snapshot()
    finally:
        await sub.close()
        await pub.close()
    # everybody left: the room closes after its departure wait; the totals stay
    assert await _wait(lambda: node.metrics()["dockcast_rooms"] == 0)
    metrics = snapshot()
    assert metrics["dockcast_consumers"] == 0 and metrics["dockcast_participants"] == 0
    assert seen[-1]["dockcast_packets_received_total"] >= seen[0]["dockcast_packets_received_total"] > 0
