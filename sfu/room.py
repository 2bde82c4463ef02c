"""Room (mediasoup's router): participants, their producers, and who consumes what.

Ownership runs top-down and ``close()`` cascades: a room closes its participants, a
participant its producers, consumers and peer connections, a producer its consumers.
The room reports what happened through ``on_event(event)``, one typed event of
:mod:`sfu.events` per call (``ParticipantJoined``, ``ParticipantLeft``,
``TrackPublished``, ``TrackUnpublished``, ``ActiveSpeakers``, ``RoomClosed``); the node
turns those into protocol events and plugin hooks. While a track with audio levels is
published, a timer samples them and a `SpeakerDetector` says when to tell who speaks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from .audio_level import SpeakerDetector, SpeakerSettings
from .clock import ASYNCIO_SCHEDULER, SYSTEM_CLOCK, Cancellable, Clock, Scheduler
from .consumer import Consumer
from .errors import Closed, NotFound
from .events import (ActiveSpeakers, ParticipantJoined, ParticipantLeft, RoomClosed, RoomEvent,
                     TrackPublished, TrackUnpublished)
from .participant import MediaSettings, Participant
from .producer import Producer

__all__ = ["Room"]

logger = logging.getLogger(__name__)


def _ignore(event: RoomEvent) -> None:
    pass


def _stream_key(producer: Producer) -> tuple:
    """A publisher's stream, whichever producer carries it now."""
    return (producer.identity, producer.source, producer.kind)


class Room:
    """A room named ``name``. ``on_event(event)`` is told what happens in it; ``clock``
    and ``scheduler`` (the machine's and the running asyncio loop's by default) are
    passed to its participants and time the speaker detection (``speakers``)."""

    def __init__(self, name: str, settings: MediaSettings | None = None,
                 metadata: Any = None, *, clock: Clock | None = None,
                 scheduler: Scheduler | None = None,
                 speakers: SpeakerSettings | None = None) -> None:
        self.name = name
        self.settings = settings or MediaSettings()
        self.metadata = metadata
        self.clock = clock or SYSTEM_CLOCK
        self.scheduler = scheduler or ASYNCIO_SCHEDULER
        self.created_at = self.clock.wall()
        self.participants: dict[str, Participant] = {}
        self.producers: dict[str, Producer] = {}
        self.on_event: Callable[[RoomEvent], None] = _ignore
        # consumers whose producer went away, waiting for a successor: by stream key
        self.orphans: dict[tuple, tuple[list[Consumer], Cancellable]] = {}
        self._adopted: set[str] = set()  # ids of the producers of other nodes
        # told of a stream key whose consumers wait and have no successor in this room
        self.on_orphaned: Callable[[tuple], None] | None = None
        self.closed = False
        self._tasks: set[Cancellable] = set()
        self.speakers = SpeakerDetector(speakers)
        self._speaker_timer: Cancellable | None = None

    def _emit(self, event: RoomEvent) -> None:
        try:
            self.on_event(event)
        except Exception:  # an observer bug must not break the media plane
            logger.exception("room %s: %s observer failed", self.name, type(event).__name__)

    def _spawn(self, start: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run ``start()`` in the background; a failure is logged, close() cancels it
        (before it starts, no coroutine is made)."""
        task: Cancellable | None = None

        async def guarded() -> None:
            try:
                await start()
            except Exception:  # noqa: BLE001 - a background failure must be seen, not lost
                logger.exception("room %s: background task failed", self.name)
            finally:
                self._tasks.discard(task)

        task = self.scheduler.spawn(guarded())
        self._tasks.add(task)

    def _check_open(self) -> None:
        if self.closed:
            raise Closed(f"room {self.name!r} is closed")

    def participant(self, participant_id: str) -> Participant:
        participant = self.participants.get(participant_id)
        if participant is None:
            raise NotFound(f"participant {participant_id!r} is not in room {self.name!r}")
        return participant

    def tracks(self) -> list[dict[str, Any]]:
        return [p.describe() for p in self.producers.values()]

    def describe(self) -> dict[str, Any]:
        return {"room": self.name, "created_at": self.created_at, "metadata": self.metadata,
                "participants": [p.describe() for p in self.participants.values()]}

    # -- membership ------------------------------------------------------------------

    def join(self, identity: str, name: str | None = None, metadata: Any = None) -> Participant:
        self._check_open()
        participant = Participant(identity, name, metadata, self.settings,
                                  clock=self.clock, scheduler=self.scheduler)
        self.participants[participant.id] = participant
        self._emit(ParticipantJoined(self.name, participant))
        return participant

    async def leave(self, participant_id: str) -> None:
        """Remove a participant: its tracks are unpublished, its peers closed."""
        participant = self.participants.pop(participant_id, None)
        if participant is None:
            return
        await participant.close()
        self._emit(ParticipantLeft(self.name, participant))

    # -- media -----------------------------------------------------------------------

    async def publish(self, participant: Participant, sdp: str,
                      tracks: list[dict[str, Any]]) -> tuple[str, list[Producer]]:
        self._check_open()
        answer, producers = await participant.publish(sdp, tracks)
        for producer in producers:
            self._published(producer)
        return answer, producers

    def publish_local(self, participant: Participant, producer: Producer) -> Producer:
        """Publish a producer fed from inside the node (`sfu.local`), as ``participant``'s."""
        self._check_open()
        participant.add_producer(producer)
        self._published(producer)
        return producer

    def _published(self, producer: Producer) -> None:
        self.producers[producer.id] = producer
        producer.on_close.append(self._producer_closed)
        self._emit(TrackPublished(self.name, producer))
        self._continue_orphans(producer)

    def _continue_orphans(self, producer: Producer) -> None:
        """A new producer continues a stream whose consumers wait: they take it. One
        that supersedes an adopted producer still open (`_supersede`) takes its consumers
        at once."""
        self._supersede(producer)
        if self.orphans and _stream_key(producer) in self.orphans:
            self.successor(producer)
        if producer.audio_level is not None and self._speaker_timer is None:
            self._speaker_timer = self.scheduler.call_later(self.speakers.settings.tick_s,
                                                            self._speaker_tick)

    def adopt_producer(self, producer: Producer, *, orphan_timeout_s: float = 0.0) -> Producer:
        """Add a producer of another node (`sfu.relay.RemoteProducer`) for this room's
        participants to consume. It is announced by no event here (its origin tells the
        room), and leaves silently when it closes. With ``orphan_timeout_s`` its
        consumers outlive it that long (paused, their m-lines kept) when it closes with a
        known ``identity``: a successor track of the same publisher, source and kind
        (`successor`) takes them over with no renegotiation."""
        self._check_open()
        self.producers[producer.id] = producer
        self._adopted.add(producer.id)
        producer.on_close.append(self._adopted_closed)
        if orphan_timeout_s > 0 and producer.identity is not None:
            producer.on_orphans = lambda p, consumers: self._keep_orphans(p, consumers, orphan_timeout_s)
        self._continue_orphans(producer)
        return producer

    def _supersede(self, producer: Producer) -> None:
        """The same publisher's stream (identity, source, kind) published anew from
        another origin, while the producer adopted from its old node is still open: the
        publisher moved (its phone reconnected to another node, or to this one) before
        its old node's death was known here (a trunk notices in 1.5 s). The old producer
        closes now; with orphan waiting its consumers then take this one, with no
        renegotiation, instead of waiting out the trunk's timeout. This is the
        directory's rule too: the latest node to publish a track is its origin."""
        key = _stream_key(producer)
        if key[0] is None or not self._adopted:
            return
        origin = getattr(producer, "origin_node", None)
        for old in [p for p in self.producers.values() if p.id in self._adopted]:
            if (old is not producer and not old.closed and _stream_key(old) == key
                    and getattr(old, "origin_node", None) != origin):
                logger.info("room %s: %s supersedes %s (its publisher moved from node %s)",
                            self.name, producer.id, old.id, getattr(old, "origin_node", None))
                old.close()

    def _adopted_closed(self, producer: Producer) -> None:
        self._adopted.discard(producer.id)
        if self.producers.get(producer.id) is producer:
            del self.producers[producer.id]
        if _stream_key(producer) not in self.orphans:
            self._renegotiate_all()

    def _keep_orphans(self, producer: Producer, consumers: list[Consumer], timeout_s: float) -> bool:
        if self.closed:
            return False
        key = _stream_key(producer)
        waiting, timer = self.orphans.get(key, ([], None))
        if timer is not None:
            timer.cancel()
        timer = self.scheduler.call_later(timeout_s, lambda: self._orphans_expired(key))
        self.orphans[key] = (waiting + consumers, timer)
        logger.info("room %s: %d consumer(s) of %s wait %.0f s for its publisher to come back",
                    self.name, len(consumers), producer.id, timeout_s)
        # the publisher may be back already (before its old node was known dead): once
        # the consumers have left the closing producer, look for its successor
        self.scheduler.call_later(0, lambda: self._find_successor(key, producer))
        return True

    def _find_successor(self, key: tuple, gone: Producer) -> None:
        if key not in self.orphans:
            return
        for candidate in list(self.producers.values()):
            if candidate is not gone and not candidate.closed and _stream_key(candidate) == key:
                self.successor(candidate)
                return
        if self.on_orphaned is not None:  # elsewhere, maybe (another node): ask the owner
            self.on_orphaned(key)

    def _orphans_expired(self, key: tuple) -> None:
        consumers, _ = self.orphans.pop(key, ([], None))
        for consumer in consumers:
            consumer.close()
        self._renegotiate_all()

    def successor(self, producer: Producer) -> list[Consumer]:
        """``producer`` continues a stream whose consumers wait (same identity, source
        and kind): they forward it from its next keyframe, on their own streams."""
        consumers, timer = self.orphans.pop(_stream_key(producer), ([], None))
        if timer is not None:
            timer.cancel()
        moved = []
        for consumer in consumers:
            participant = self.participants.get(consumer.subscriber_id)
            if consumer.closed or participant is None or participant.closed:
                continue
            participant.repoint(consumer, producer)
            moved.append(consumer)
        if moved:
            logger.info("room %s: %d consumer(s) continue on %s (no renegotiation)", self.name,
                        len(moved), producer.id)
        return moved

    def _producer_closed(self, producer: Producer) -> None:
        self.producers.pop(producer.id, None)
        self._emit(TrackUnpublished(self.name, producer))
        self._renegotiate_all()

    def _renegotiate_all(self) -> None:
        if self.closed:
            return
        # subscribers whose consumer just closed get an offer with that m-line inactive
        for participant in self.participants.values():
            if participant.sub is not None and not participant.closed:
                self._spawn(participant.renegotiate)

    def _speaker_tick(self) -> None:
        """Sample the levels of the participants' own tracks (a track of another node is
        that node's to report), tell who speaks if it is time, and tick again while
        there is a level to sample or a speaker still listed."""
        self._speaker_timer = None
        if self.closed:
            return
        now = self.clock.monotonic()
        levels: dict[str, float] = {}
        for participant in self.participants.values():
            for producer in participant.producers.values():
                if producer.audio_level is not None and not producer.closed:
                    level = producer.audio_level.sample(now)
                    levels[participant.id] = max(levels.get(participant.id, 0.0), level)
        speakers = self.speakers.update(levels, now)
        if speakers is not None:
            self._emit(ActiveSpeakers(self.name, tuple(speakers)))
        if levels or self.speakers.sent:
            self._speaker_timer = self.scheduler.call_later(self.speakers.settings.tick_s,
                                                            self._speaker_tick)

    def unpublish(self, participant: Participant, track_ids: list[str]) -> list[str]:
        for track_id in track_ids:
            if track_id not in participant.producers:
                raise NotFound(f"track {track_id!r} is not published by this participant")
        for track_id in track_ids:
            participant.unpublish(track_id)
        return track_ids

    async def subscribe(self, participant: Participant, track_ids: list[str]) -> list[Consumer]:
        self._check_open()
        producers = []
        for track_id in track_ids:
            producer = self.producers.get(track_id)
            if producer is None:
                raise NotFound(f"track {track_id!r} is not published in room {self.name!r}")
            producers.append(producer)
        return await participant.subscribe(producers)

    async def unsubscribe(self, participant: Participant, track_ids: list[str]) -> list[str]:
        for track_id in track_ids:
            if track_id not in participant.consumers:
                raise NotFound(f"not subscribed to track {track_id!r}")
        for track_id in track_ids:
            participant.unsubscribe(track_id)
        await participant.renegotiate()
        return track_ids

    # -- lifecycle -------------------------------------------------------------------

    async def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        for participant_id in list(self.participants):
            await self.leave(participant_id)
        for producer in list(self.producers.values()):  # adopted ones: owned by no participant
            producer.close()
        for consumers, timer in self.orphans.values():
            timer.cancel()
        self.orphans.clear()
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        if self._speaker_timer is not None:
            self._speaker_timer.cancel()
            self._speaker_timer = None
        self._emit(RoomClosed(self.name, reason))
