"""dockcast.metrics: totals that never go down, read from live objects at scrape time."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import CollectorRegistry

from dockcast.metrics import CAPS, CapRefusals, MediaCollector, Retired
from signalling.membership import LocalMembership


def participant(packets_in: int, packets_out: int, octets: int, retransmitted: int):
    producer = SimpleNamespace(packets=packets_in, nacks_sent=packets_in * 2,
                               nack_recovered=packets_in + 1, nack_failed=packets_in - 1)
    consumer = SimpleNamespace(state=SimpleNamespace(packets=packets_out, octets=octets),
                               retransmitted=retransmitted, nacks_refused=retransmitted * 10,
                               nacks=retransmitted * 4)
    return SimpleNamespace(producers={"TR": producer}, consumers={"TR2": consumer})


async def test_counters_keep_what_left_and_add_what_is_live():
    live = participant(10, 20, 2000, 1)
    room = SimpleNamespace(participants={"PA": live}, producers=dict(live.producers))
    retired = Retired()
    gone = participant(5, 7, 700, 2)
    retired.retire_producer(gone.producers["TR"])
    retired.retire_consumer(gone.consumers["TR2"])
    membership = LocalMembership()
    membership.watch(object(), ["dock-1"], [])
    registry = CollectorRegistry()
    registry.register(MediaCollector(lambda: [room], retired, membership, lambda: None))
    value = registry.get_sample_value
    assert value("dockcast_rooms") == 1 and value("dockcast_participants") == 1
    assert value("dockcast_packets_received_total") == 15
    assert value("dockcast_packets_forwarded_total") == 27
    assert value("dockcast_bytes_forwarded_total") == 2700
    assert value("dockcast_retransmissions_total") == 3
    assert value("dockcast_nacks_refused_total") == 30
    assert value("dockcast_nacks_received_total") == 12
    assert value("dockcast_nacks_sent_total") == 30
    assert (value("dockcast_nack_recovered_total"), value("dockcast_nack_failed_total")) == (17, 13)
    assert value("dockcast_watchers") == 1
    assert value("dockcast_open_fds") > 0 and value("dockcast_asyncio_tasks") is not None
    assert value("dockcast_messages_stored_total") is None  # no room log yet


def test_the_event_loop_lag_is_a_gauge():
    from dockcast.loop_lag import LoopLag

    registry = CollectorRegistry()
    registry.register(MediaCollector(lambda: [], Retired(), LocalMembership(), lambda: None,
                                     loop_lag=LoopLag()))
    assert registry.get_sample_value("dockcast_event_loop_lag_seconds") == 0.0


def test_cap_refusals_are_one_family_with_every_cap_from_zero():
    refusals = CapRefusals()
    registry = CollectorRegistry()
    registry.register(MediaCollector(lambda: [], Retired(), LocalMembership(), lambda: None,
                                     refusals=refusals))
    value = registry.get_sample_value
    assert [value("dockcast_cap_refusals_total", {"cap": cap}) for cap in CAPS] == [0] * 6
    refusals.refused("rooms")
    refusals.refused("rooms")
    refusals.refused("mlines_per_offer")
    assert value("dockcast_cap_refusals_total", {"cap": "rooms"}) == 2
    assert value("dockcast_cap_refusals_total", {"cap": "mlines_per_offer"}) == 1
    assert set(CAPS) == {"rooms", "participants_per_room", "tracks_per_participant",
                         "subscriptions_per_participant", "mlines_per_offer", "loop_lag"}
