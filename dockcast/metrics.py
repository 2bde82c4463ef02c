"""The node's Prometheus metrics, read from the live objects at scrape time.

Nothing here costs anything per packet: `MediaCollector.collect` walks the open rooms
when ``/metrics`` is scraped. Each producer and consumer hands its counts to `Retired`
when it closes (unpublished, unsubscribed, its participant gone, its room closed), so
that a ``_total`` never goes down; per-room values are gauges.

With ``DOCKCAST_DEBUG_SUBSCRIBER_GAUGES=1`` in the node's environment (read once, when
the collector is built), ``/metrics`` also carries one gauge per subscriber (its
bandwidth estimate, the budget shared among its simulcast tracks, the transport-cc
feedbacks it sent and the probe clusters sent to it) and one per simulcast consumer
(the layer it forwards): the ``quality`` bench samples them. They are
off by default because their labels grow with every participant, which a production
scrape must not; they read the objects and change nothing.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sfu import forward
from sfu.consumer import Consumer
from sfu.producer import Producer
from sfu.room import Room
from signalling.membership import Membership
from signalling.messages.delivery import Messaging

from .loop_lag import LoopLag

__all__ = ["MediaCollector", "Retired", "CapRefusals", "CAPS", "DEBUG_GAUGES_ENV", "open_fds"]

#: The node-wide caps, by the ``cap`` label of ``dockcast_cap_refusals_total``.
CAPS = ("rooms", "participants_per_room", "tracks_per_participant",
        "subscriptions_per_participant", "mlines_per_offer", "loop_lag")

DEBUG_GAUGES_ENV = "DOCKCAST_DEBUG_SUBSCRIBER_GAUGES"
"""Set to ``1`` in a node's environment for the per-subscriber gauges (bench only)."""


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


@dataclass(slots=True)
class Retired:
    """The packet counters of producers and consumers that have closed."""

    packets_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    retransmitted: int = 0
    nacks_refused: int = 0
    nacks_received: int = 0
    nacks_sent: int = 0
    nack_recovered: int = 0
    nack_failed: int = 0

    def retire_producer(self, producer: Producer) -> None:
        """A producer closed: keep what it received (its ``on_close``)."""
        self.packets_in += producer.packets
        self.nacks_sent += producer.nacks_sent
        self.nack_recovered += producer.nack_recovered
        self.nack_failed += producer.nack_failed

    def retire_consumer(self, consumer: Consumer) -> None:
        """A consumer closed: keep what it forwarded (its ``on_close``)."""
        self.packets_out += consumer.state.packets
        self.bytes_out += consumer.state.octets
        self.retransmitted += consumer.retransmitted
        self.nacks_refused += consumer.nacks_refused
        self.nacks_received += consumer.nacks


class CapRefusals:
    """How many requests each node-wide cap refused (`CAPS`)."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(CAPS, 0)

    def refused(self, cap: str) -> None:
        self.counts[cap] += 1


class MediaCollector:
    """A ``prometheus_client`` collector over the node's rooms, messages and resources."""

    def __init__(self, rooms: Callable[[], Iterable[Room]], retired: Retired,
                 membership: Membership, messaging: Callable[[], Messaging | None],
                 refusals: CapRefusals | None = None, debug_subscribers: bool | None = None,
                 loop_lag: LoopLag | None = None) -> None:
        self.rooms = rooms
        self.debug_subscribers = (os.environ.get(DEBUG_GAUGES_ENV) == "1"
                                  if debug_subscribers is None else debug_subscribers)
        self.refusals = refusals if refusals is not None else CapRefusals()
        self.loop_lag = loop_lag
        self.retired = retired
        self.membership = membership
        self.messaging = messaging

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        rooms = list(self.rooms())
        participants = [p for r in rooms for p in r.participants.values()]
        producers = [t for r in rooms for t in r.producers.values()]
        consumers = [c for p in participants for c in p.consumers.values()]
        retired = self.retired
        yield GaugeMetricFamily("dockcast_rooms", "Open rooms", value=len(rooms))
        yield GaugeMetricFamily("dockcast_participants", "Participants in rooms", value=len(participants))
        yield GaugeMetricFamily("dockcast_tracks", "Published tracks", value=len(producers))
        yield GaugeMetricFamily("dockcast_consumers", "Forwarded track subscriptions", value=len(consumers))
        yield CounterMetricFamily("dockcast_packets_received", "RTP packets received from publishers",
                                  value=retired.packets_in + sum(t.packets for t in producers))
        yield CounterMetricFamily("dockcast_packets_forwarded", "RTP packets forwarded to subscribers",
                                  value=retired.packets_out + sum(c.state.packets for c in consumers))
        yield CounterMetricFamily("dockcast_bytes_forwarded", "RTP payload bytes forwarded",
                                  value=retired.bytes_out + sum(c.state.octets for c in consumers))
        yield CounterMetricFamily("dockcast_retransmissions", "Packets resent after a NACK",
                                  value=retired.retransmitted + sum(c.retransmitted for c in consumers))
        yield CounterMetricFamily("dockcast_nacks_refused",
                                  "Lost packets asked for again too soon or over one NACK's cap",
                                  value=retired.nacks_refused + sum(c.nacks_refused for c in consumers))
        # loss recovery: the NACK hit rate toward subscribers is retransmissions / nacks_received
        yield CounterMetricFamily("dockcast_nacks_received",
                                  "Lost packets subscribers asked for (NACKed sequence numbers)",
                                  value=retired.nacks_received + sum(c.nacks for c in consumers))
        yield CounterMetricFamily("dockcast_nacks_sent",
                                  "Sequence numbers NACKed to publishers (retries included)",
                                  value=retired.nacks_sent + sum(t.nacks_sent for t in producers))
        yield CounterMetricFamily("dockcast_nack_recovered",
                                  "Packets lost from publishers that came back after a NACK",
                                  value=retired.nack_recovered + sum(t.nack_recovered for t in producers))
        yield CounterMetricFamily("dockcast_nack_failed",
                                  "Packets lost from publishers and given up after the NACK retries",
                                  value=retired.nack_failed + sum(t.nack_failed for t in producers))
        caps = CounterMetricFamily("dockcast_cap_refusals",
                                   "Requests refused by a node-wide cap (max_rooms...)", labels=["cap"])
        for cap, count in self.refusals.counts.items():
            caps.add_metric([cap], count)
        yield caps
        messaging = self.messaging()
        if messaging is not None:
            yield from _message_metrics(messaging)
        if self.loop_lag is not None:
            yield GaugeMetricFamily("dockcast_event_loop_lag_seconds",
                                    "How late the event loop ran, the worst of the last 2 s "
                                    "(joins are refused over max_loop_lag_ms)",
                                    value=self.loop_lag.current_ms / 1000.0)
        parallel = forward.parallel_stats()
        yield GaugeMetricFamily("dockcast_fanout_threads",
                                "Threads beside the event loop's that send a big room's copies",
                                value=parallel["helpers"])
        yield CounterMetricFamily("dockcast_fanout_parallel_packets",
                                  "Packets whose copies were sent by the fan-out threads together",
                                  value=parallel["batches"])
        yield CounterMetricFamily("dockcast_fanout_parallel_copies",
                                  "Copies sent by the fan-out threads together", value=parallel["copies"])
        yield GaugeMetricFamily("dockcast_watchers", "Connections with events.subscribe",
                                value=self.membership.watcher_count())
        # resources, to see leaks: every join/leave cycle must give back what it took
        yield GaugeMetricFamily("dockcast_asyncio_tasks", "Pending asyncio tasks",
                                value=len(asyncio.all_tasks()))
        yield GaugeMetricFamily("dockcast_threads", "Threads of the process",
                                value=threading.active_count())
        yield GaugeMetricFamily("dockcast_open_fds", "Open file descriptors (sockets included)",
                                value=open_fds())
        if self.debug_subscribers:
            yield from _subscriber_gauges(participants)


def _subscriber_gauges(participants: list[Any]) -> Iterable[Any]:
    labels = ["participant", "identity"]
    estimate = GaugeMetricFamily("dockcast_debug_subscriber_estimate_bps",
                                 "A subscriber's bandwidth estimate (bit/s)", labels=labels)
    budget = GaugeMetricFamily("dockcast_debug_subscriber_budget_bps",
                               "What a subscriber's estimate leaves its simulcast tracks (bit/s)",
                               labels=labels)
    layer = GaugeMetricFamily("dockcast_debug_consumer_layer",
                              "The simulcast layer a consumer forwards (0 lowest; -1 paused "
                              "for bandwidth)", labels=[*labels, "track"])
    feedbacks = GaugeMetricFamily("dockcast_debug_subscriber_transport_cc_feedbacks",
                                  "transport-cc feedbacks read from a subscriber (absent: "
                                  "not negotiated)", labels=labels)
    probes = GaugeMetricFamily("dockcast_debug_subscriber_probe_clusters",
                               "Probe clusters sent to a subscriber", labels=labels)
    usable = GaugeMetricFamily("dockcast_debug_subscriber_usable_bps",
                               "What of a subscriber's estimate its path has shown: layers go "
                               "up only within it (bit/s; transport-cc)", labels=labels)
    track = [*labels, "track"]
    counts = {name: GaugeMetricFamily(f"dockcast_debug_consumer_{name}", text, labels=track)
              for name, text in (("resyncs", "Restarts of a consumer at a keyframe past a hole"),
                                 ("keyframe_requests", "Keyframes a consumer asked its producer for"),
                                 ("retransmissions", "Packets a consumer resent on NACK"),
                                 ("nacks", "NACKs a consumer received"))}
    for p in participants:
        if not p.consumers:
            continue
        bandwidth = p.bandwidth
        estimate.add_metric([p.id, p.identity], bandwidth.estimator.bitrate)
        usable.add_metric([p.id, p.identity], bandwidth.estimator.usable)
        budget.add_metric([p.id, p.identity], bandwidth.budget)
        if p.send_side is not None:
            stats = p.send_side.stats()
            feedbacks.add_metric([p.id, p.identity], stats["feedbacks"])
            probes.add_metric([p.id, p.identity], stats["probe_clusters"])
        for c in p.consumers.values():
            if c.kind == "video" and c.producer.simulcast:
                layer.add_metric([p.id, p.identity, c.producer.id],
                                 -1 if c.bandwidth_paused else c.state.layer)
            if c.kind == "video":
                for name, family in counts.items():
                    family.add_metric([p.id, p.identity, c.producer.id],
                                      getattr(c, "retransmitted" if name == "retransmissions" else name))
    yield estimate
    yield budget
    yield layer
    yield feedbacks
    yield probes
    yield usable
    yield from counts.values()


def _message_metrics(messaging: Messaging) -> Iterable[Any]:
    yield CounterMetricFamily("dockcast_messages_stored", "Room messages stored", value=messaging.stored)
    yield CounterMetricFamily("dockcast_message_duplicates",
                              "Sends answered with an earlier seq (same msg_id)",
                              value=messaging.duplicates)
    yield GaugeMetricFamily("dockcast_message_replays", "Connections catching up from the message log",
                            value=messaging.replays())
    handled = CounterMetricFamily("dockcast_follower_messages",
                                  "Room messages handed to a log follower (webhooks...)",
                                  labels=["follower"])
    failed = CounterMetricFamily("dockcast_follower_failures",
                                 "Room messages a log follower failed on (retried)", labels=["follower"])
    for follower in messaging.followers:
        handled.add_metric([follower.name], follower.handled)
        failed.add_metric([follower.name], follower.failures)
    yield handled
    yield failed
