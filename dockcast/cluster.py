"""A node's part in a cluster: nodes sharing one Redis (``--redis``) serve rooms together.

`Cluster` is wired by the node when ``config.redis`` is set:

- the directory (`sfu.cluster.RedisDirectory`): this node is registered with its region,
  public URL, trunk address and trunk certificate fingerprint, and heartbeats; every node
  is watched, so the node knows who is alive (a dead node's trunks close at once);
- placement: a client whose ``hello.region`` names another region is redirected to the
  least loaded live node there (``welcome.redirect``); every ``welcome`` names the other
  live nodes (``welcome.nodes``), where the client goes if this node dies;
- rooms span nodes: a room with members here is joined in the directory, each track
  published here is announced there (and unannounced), and ``joined.tracks`` lists the
  tracks published on every node;
- events: what the members of a room must hear (joins, leaves, publications, messages)
  is published on the room's Redis channel by the node where it happened, and every
  other node with members in the room delivers it to them; a room message stored by
  another node (the room log is shared: `signalling.messages.RedisRoomLog`) is read
  from the log and delivered in ``seq`` order like a local one;
- media: subscribing to a track published on another node opens (or reuses) the trunk
  to that node (`sfu.relay`, QUIC, certificates pinned through the directory) and makes
  a remote producer here that local consumers consume; one copy of each track crosses,
  however many subscribe here. The trunk server answers other nodes' subscriptions with
  this node's own producers only (split horizon).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from sfu.cluster import (
    DirectoryError,
    NodeDown,
    NodeInfo,
    NodeUp,
    RedisDirectory,
    UnknownNode,
)
from sfu.producer import Producer
from sfu.relay import RelayError, TrunkRefused, TrunkServer, TrunkSettings, connect_trunk
from sfu.relay.certs import load_or_create, same_fingerprint
from sfu.relay.remote import is_remote
from sfu.room import Room
from signalling.errors import NotFound, Unavailable
from signalling.events import (
    Event,
    MessageStored,
    ParticipantJoined,
    ParticipantLeft,
    RoomClosed,
    RoomCreated,
    TrackPublished,
    TrackUnpublished,
)
from signalling.messages import DurableDbError

from .workers import home_worker

if TYPE_CHECKING:
    from .node import Node

__all__ = ["Cluster", "TrunkCollector", "HEARTBEAT_S"]

logger = logging.getLogger("dockcast.cluster")

HEARTBEAT_S = 1.0
TRUNK_SETTINGS = TrunkSettings(idle_timeout=1.5, keepalive_interval=0.4)
"""A dead peer node is noticed by its trunk in 1.5 s (before the directory's TTL): the
failover clock starts there."""
ADMIN_WAIT_S = 1.0
"""How long an admin request done across the cluster (``room.list``, ``room.close``,
``participant.remove``) waits for the other nodes' answers."""
ROOM_SEEN_S = 600.0
"""How long a join seen on another worker places the room there (placement under
``--workers``): a room that has been quiet longer goes by its hash again."""
ROOMS_SEEN_MAX = 10_000
PLACEMENT_GRACE_S = 15.0
"""How long a worker the directory no longer lists still counts for placement."""
ORPHAN_TIMEOUT_S = 15.0
"""How long subscribers of a track whose node died wait for its publisher to come back."""
RESUBSCRIBE_S = 0.5
"""How often the room-event listener tries Redis again after it lost its connection."""
PUBLISH_TIMEOUT_S = 2.0
"""The longest a room event waits for Redis to take it (then it is dropped and logged)."""
_REDIS_DOWN = (RedisError, OSError, DirectoryError, DurableDbError, TimeoutError)
_FORWARDED = (ParticipantJoined, ParticipantLeft, TrackPublished, TrackUnpublished)


def _raise_if_cancelling() -> None:
    """In a loop that survives Redis errors: a cancellation that came as one (see
    `_cancel_all`) ends the loop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _cancel_all(tasks: list[asyncio.Task], tries: int = 5, wait_s: float = 1.0) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again those still running after
    ``wait_s``: redis-py can turn a cancellation that meets its own read timeout into
    a TimeoutError, which a loop that outlives Redis outages takes for one and goes on
    (a node's stop once hung on its pub/sub listener so). Gives up after ``tries``."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(tries):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=wait_s)
    if pending:
        logger.warning("cluster: %d task(s) did not stop when cancelled", len(pending))


class Cluster:
    """See the module docstring. ``start`` after the node's server is listening."""

    def __init__(self, node: Node) -> None:
        config = node.config
        self.node = node
        self.node_id = node.node_id
        self.region = config.region
        self.prefix = "dockcast:"
        self.directory = RedisDirectory(config.redis, key_prefix=self.prefix, ttl_s=5.0)
        self.certificate = load_or_create(config.data_path / "keys" / "trunk")
        self.nodes: dict[str, NodeInfo] = {}  # the live ones, this one included
        self.trunks: dict[str, Any] = {}  # open trunks by the other node's id
        self._trunk_lock = asyncio.Lock()
        self.server: TrunkServer | None = None
        self._redis: Any = None
        self._pubsub: Any = None
        self._tasks: set[asyncio.Task] = set()
        self.info: NodeInfo | None = None
        self._resync = False  # a directory write failed: tell it everything again
        self._left_rooms: set[str] = set()  # rooms closed here whose leave may have failed
        # room -> (node, when): the last node a participant joined the room on, by the
        # room events of the other nodes (placement under --workers)
        self._rooms_seen: dict[str, tuple[str, float]] = {}
        # node -> (when the directory dropped it, what it said of itself)
        self._unlisted: dict[str, tuple[float, NodeInfo]] = {}

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, port: int) -> None:
        import redis.asyncio as redis

        config = self.node.config
        trunk_port = config.trunk_port or port + 1
        self.server = TrunkServer(config.host, trunk_port, self.certificate.certificate,
                                  self.certificate.private_key, self._accept_peer, node_id=self.node_id,
                                  find_producer=self._local_producer, settings=TRUNK_SETTINGS)
        await self.server.start()
        public_url = config.public_url or config.local_url(port, "ws") + "/ws"
        self.info = NodeInfo(node_id=self.node_id, region=self.region, public_url=public_url,
                             trunk_address=config.trunk_address or f"{config.host}:{self.server.port}",
                             cert_fingerprint=self.certificate.fingerprint, load=0.0)
        await self.directory.register(self.info)
        self.nodes = {n.node_id: n for n in await self.directory.nodes()}
        # no retries inside the client: the listener and the publishers decide (a
        # subscription lost with Redis is made again by `_listen`, not given up)
        self._redis = redis.from_url(config.redis, decode_responses=False, retry=Retry(NoBackoff(), 0),
                                     socket_connect_timeout=PUBLISH_TIMEOUT_S)
        self._pubsub = self._redis.pubsub()
        await self._pubsub.psubscribe(f"{self.prefix}room-events:*")
        await self._pubsub.subscribe(self._admin_channel)
        self.node.server.placement = self.placement
        self.node.server.alternates = self.alternates
        self.node.server.region_of = config.region_for
        self.node.registry.register(TrunkCollector(self))
        bus = self.node.bus
        bus.subscribe(_FORWARDED, self._local_event, name="cluster", inline=True)
        bus.subscribe(MessageStored, self._local_message, name="cluster", inline=True)
        bus.subscribe((RoomCreated, RoomClosed), self._room_changed, name="cluster")
        self.node.rooms.remote_tracks = self.remote_tracks
        self.node.admin.elsewhere = self.ask_others
        self.node.media.import_tracks = self.import_tracks
        for coro in (self._heartbeats(), self._watch(), self._listen()):
            self._spawn(coro)
        logger.info("cluster: node %s in region %s joined (%d live nodes)", self.node_id,
                    self.region, len(self.nodes), extra={"public_url": public_url,
                                                         "trunk_port": self.server.port})

    async def stop(self) -> None:
        await _cancel_all(list(self._tasks))
        for trunk in list(self.trunks.values()):
            trunk.close("node stopping")
        if self.server is not None:
            self.server.close()
        try:
            await self.directory.deregister(self.node_id)
        except Exception:  # noqa: BLE001 - Redis may be gone: the TTL cleans up
            logger.warning("cluster: could not deregister (the directory forgets us in 5 s)")
        if self._pubsub is not None:
            await self._pubsub.aclose()
        if self._redis is not None:
            await self._redis.aclose()
        await self.directory.close()

    # -- placement -------------------------------------------------------------------

    def placement(self, claims: Any, region: str | None) -> str | None:
        """The URL of the least loaded live node of ``region``, when that is not ours;
        under ``--workers``, the URL of the worker that is the home of the token's room
        (`dockcast.workers.home_worker`) unless the room is open here."""
        if region is not None and region != self.region:
            there = [n for n in self.nodes.values() if n.region == region]
            if there:
                return min(there, key=lambda n: (n.load, n.node_id)).public_url
        worker = self.node.worker
        room = getattr(claims, "room", None)
        if worker is None or room is None or room in self.node.rooms.media:
            return None
        now = time.monotonic()
        # a sibling the directory stopped listing a moment ago (a heartbeat late under
        # load) keeps its rooms: moving them would split rooms that are running there;
        # one gone longer has died, and the supervisor starts it again
        known = {**{n: info for n, (since, info) in self._unlisted.items() if since > now - PLACEMENT_GRACE_S},
                 **self.nodes}
        live = [n for n in worker.sibling_ids if n in known]
        seen = self._rooms_seen.get(room)
        if seen is not None and seen[0] in live and seen[1] > now - ROOM_SEEN_S:
            home = seen[0]  # open on a sibling (since a restart, say): the room goes on there
        else:
            home = home_worker(room, live)
        if home is None or home == self.node_id:
            return None
        return known[home].public_url

    def _saw_join(self, room: str, node_id: str) -> None:
        now = time.monotonic()
        self._rooms_seen[room] = (node_id, now)
        if len(self._rooms_seen) > ROOMS_SEEN_MAX:  # forget the quiet ones
            self._rooms_seen = {r: seen for r, seen in self._rooms_seen.items() if seen[1] > now - ROOM_SEEN_S}

    async def wait_for_nodes(self, node_ids: list[str], timeout: float) -> list[str]:
        """Wait until the directory lists every one of ``node_ids`` (at most ``timeout``
        seconds); the ones still missing."""
        deadline = time.monotonic() + timeout
        while True:
            missing = [n for n in node_ids if n not in self.nodes]
            if not missing or time.monotonic() >= deadline:
                return missing
            await asyncio.sleep(0.1)

    def alternates(self) -> list[dict[str, Any]]:
        """The other live nodes, this node's region first, then the least loaded
        (``welcome.nodes``): where this node's clients go if it stops answering."""
        others = sorted((n for n in self.nodes.values() if n.node_id != self.node_id),
                        key=lambda n: (n.region != self.region, n.load, n.node_id))
        return [{"node_id": n.node_id, "region": n.region, "url": n.public_url} for n in others]

    # -- rooms and tracks --------------------------------------------------------------

    async def remote_tracks(self, room: str) -> list[dict[str, Any]]:
        """The tracks of ``room`` published on other nodes (``joined.tracks``)."""
        try:
            producers = await self.directory.producers(room)
        except Exception:  # noqa: BLE001 - the room still works with what is here
            logger.warning("cluster: the directory did not answer; joined lists local tracks only")
            return []
        return [dict(p.info) for p in producers if p.node_id != self.node_id and p.info]

    async def import_tracks(self, room: Room, track_ids: list[str],
                            known: dict[str, tuple[str, dict]] | None = None) -> None:
        """Make the remote ones of ``track_ids`` producers of ``room`` (through a trunk).
        Where each comes from is asked of the directory, unless ``known`` says it
        (track id -> (origin node, track info with its publisher's identity))."""
        wanted = [t for t in track_ids if t not in room.producers]
        origins = dict(known or {})
        if any(t not in origins for t in wanted):
            origins.update({p.track_id: (p.node_id, p.info or {})
                            for p in await self.directory.producers(room.name)
                            if p.track_id not in origins})
        for track_id in wanted:
            node_id, info = origins.get(track_id, (None, {}))
            if node_id is None or node_id == self.node_id:
                continue  # unknown: the subscribe refuses it as it would any
            trunk = await self._trunk(node_id)
            producer = await trunk.subscribe(room.name, track_id)
            if track_id not in room.producers:
                # its publisher's identity: if its node dies, its consumers here wait for
                # the same publisher's track from wherever it comes back
                producer.identity = info.get("identity")
                room.adopt_producer(producer, orphan_timeout_s=ORPHAN_TIMEOUT_S)
                room.on_orphaned = lambda key, r=room: self._spawn(self._remote_successor(r, key))
                producer.on_consumers_gone = lambda p, t=trunk: self._drop_import(t, p)

    def _drop_import(self, trunk: Any, producer: Producer) -> None:
        if not producer.consumers and not producer.closed:
            trunk.unsubscribe(producer.flow)

    def open_trunks(self) -> list[Any]:
        """The trunks open now: those this node opened and those it accepted."""
        accepted = list(self.server.trunks.values()) if self.server is not None else []
        return [t for t in {*self.trunks.values(), *accepted} if not t.closed]

    async def _trunk(self, node_id: str) -> Any:
        async with self._trunk_lock:
            # one trunk per node pair: the one the other node opened serves us too
            trunk = self.trunks.get(node_id)
            if trunk is None or trunk.closed:
                trunk = self.server.trunks.get(node_id) if self.server is not None else None
            if trunk is not None and not trunk.closed:
                return trunk
            info = self.nodes.get(node_id) or await self.directory.node(node_id)
            if info is None:
                raise Unavailable(f"node {node_id} of that track is not in the cluster any more")
            host, _, port = info.trunk_address.rpartition(":")
            for attempt in range(3):
                try:
                    trunk = await connect_trunk(host, int(port), self.certificate.certificate,
                                                self.certificate.private_key, info.cert_fingerprint,
                                                node_id=self.node_id, expected_node_id=node_id,
                                                find_producer=self._local_producer,
                                                settings=TRUNK_SETTINGS)
                    break
                except TrunkRefused:
                    # a node that joined a moment ago is not in the other's list yet
                    # (its watch polls the directory twice a second): ask again
                    if attempt == 2:
                        raise
                    await asyncio.sleep(0.6)
            self.trunks[node_id] = trunk
            logger.info("cluster: trunk to %s open", node_id, extra={"peer": node_id})
            return trunk

    def _accept_peer(self, fingerprint: str) -> str | None:
        """The node whose trunk certificate this is, if it is a live node of ours."""
        for info in self.nodes.values():
            if info.node_id != self.node_id and same_fingerprint(info.cert_fingerprint, fingerprint):
                return info.node_id
        return None

    def _local_producer(self, room: str, track_id: str) -> Producer | None:
        media = self.node.rooms.media.get(room)
        producer = media.producers.get(track_id) if media is not None else None
        if producer is None or is_remote(producer):
            return None  # split horizon: what came over a trunk never goes over another
        return producer

    # -- administration across nodes ------------------------------------------------------

    @property
    def _admin_channel(self) -> str:
        return f"{self.prefix}admin"

    async def ask_others(self, op: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        """The other nodes' answers to an admin ``op`` (`signalling.admin.Admin.answer`):
        asked on the admin channel, each node pushing its answer onto a reply key this
        node pops, for at most `ADMIN_WAIT_S`. Redis unreachable: `Unavailable` (this
        node's view alone would read as the whole)."""
        if len(self.nodes) <= 1:
            return []
        key = f"{self.prefix}admin-reply:{uuid.uuid4().hex}"
        loop = asyncio.get_running_loop()
        answers: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                listeners = await self._redis.publish(
                    self._admin_channel, json.dumps({"node": self.node_id, "reply": key, "op": op, "args": args}))
            expected = max(int(listeners) - 1, 0)  # (this node hears itself too)
            deadline = loop.time() + ADMIN_WAIT_S
            while len(answers) < expected and (left := deadline - loop.time()) > 0:
                got = await self._redis.blpop([key], timeout=max(left, 0.01))
                if got is None:
                    break
                answers.append(json.loads(got[1]))
            with contextlib.suppress(*_REDIS_DOWN):
                await self._redis.delete(key)
        except _REDIS_DOWN as exc:
            raise Unavailable(f"the cluster's other nodes cannot be asked now (Redis: {exc or 'timeout'}); "
                              "try again") from None
        if len(answers) < expected:
            logger.warning("cluster: %s: %d of %d other nodes answered in %.1f s", op, len(answers),
                           expected, ADMIN_WAIT_S)
        return answers

    async def _answer_admin(self, raw: dict) -> None:
        try:
            body = json.loads(raw["data"])
            if body.get("node") == self.node_id or not isinstance(body.get("reply"), str):
                return
            answer = await self.node.admin.answer(str(body.get("op")), dict(body.get("args") or {}))
            await self._redis.rpush(body["reply"], json.dumps({"node": self.node_id, **answer}))
            await self._redis.expire(body["reply"], 30)
        except _REDIS_DOWN:
            logger.warning("cluster: could not answer another node's admin request (Redis)")
        except Exception:  # noqa: BLE001 - one bad request must not stop the listener
            logger.exception("cluster: another node's admin request could not be answered")

    # -- events across nodes ---------------------------------------------------------------

    def _channel(self, room: str) -> str:
        return f"{self.prefix}room-events:{room}"

    def _local_event(self, event: Event) -> None:
        # (a track imported from another node is adopted silently: its events are its
        # origin's to tell, so none of them comes here)
        body = {"node": self.node_id, "event": event.to_wire()}
        if isinstance(event, TrackPublished):
            identity = self._identity_of(event.room, event.track.get("participant_id"))
            body["identity"] = identity
            self._spawn(self._directory_write(self.directory.publish(
                event.room, event.track["track_id"], self.node_id, {**event.track, "identity": identity})))
        self._publish(event.room, body)
        if isinstance(event, TrackUnpublished):
            self._spawn(self._directory_write(
                self.directory.unpublish(event.room, event.track_id, self.node_id)))

    def _identity_of(self, room: str | None, participant_id: str | None) -> str | None:
        media = self.node.rooms.media.get(room) if room is not None else None
        participant = media.participants.get(participant_id) if media is not None else None
        return participant.identity if participant is not None else None

    def _local_message(self, event: MessageStored) -> None:
        # stored here (a message another node stored is delivered without this event):
        # the other nodes read it from the shared log
        self._publish(event.room, {"node": self.node_id, "seq": event.message.seq})

    def _publish(self, room: str, body: dict) -> None:
        self._spawn(self._publish_now(room, json.dumps(body)))

    async def _publish_now(self, room: str, data: str) -> None:
        # Redis down: the event is lost for the other nodes (a message is not: it is in
        # the log, and their listener catches up from it when Redis is back)
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await self._redis.publish(self._channel(room), data)
        except _REDIS_DOWN as exc:
            logger.warning("cluster: a room event of %s did not reach the other nodes: %s", room, exc)

    async def _directory_write(self, call: Any) -> bool:
        """A change of what this node serves, told to the directory (whether it was); if
        Redis is away, the first heartbeat that gets through tells it everything again."""
        try:
            await call
            return True
        except _REDIS_DOWN as exc:
            self._resync = True
            logger.warning("cluster: the directory missed a change (%s); it is sent again "
                           "when Redis answers", exc)
            return False

    async def _room_changed(self, event: RoomCreated | RoomClosed) -> None:
        if isinstance(event, RoomCreated):
            self._left_rooms.discard(event.room)
            await self._directory_write(self.directory.join_room(event.room, self.node_id))
        elif not await self._directory_write(self.directory.leave_room(event.room, self.node_id)):
            self._left_rooms.add(event.room)

    async def _listen(self) -> None:
        """Deliver what other nodes tell the rooms with members here. When Redis goes
        away the subscription goes with it: it is made again as soon as Redis answers,
        and each room's messages stored meanwhile are caught up from the log (events
        published while nobody listened are lost: joins and leaves are not replayed)."""
        interrupted = False
        while True:
            try:
                if self._pubsub is None:
                    self._pubsub = self._redis.pubsub()
                    await self._pubsub.psubscribe(f"{self.prefix}room-events:*")
                    await self._pubsub.subscribe(self._admin_channel)
                if interrupted:
                    await self._catch_up()
                    logger.info("cluster: listening to the other nodes again")
                    interrupted = False
                async for raw in self._pubsub.listen():
                    if raw.get("type") == "pmessage":
                        await self._on_room_event(raw)
                    elif raw.get("type") == "message":
                        self._spawn(self._answer_admin(raw))
            except _REDIS_DOWN as exc:
                _raise_if_cancelling()
                if not interrupted:
                    logger.warning("cluster: lost the other nodes' room events (%s); "
                                   "subscribing again when Redis is back", exc)
                interrupted = True
                pubsub, self._pubsub = self._pubsub, None
                if pubsub is not None:
                    with contextlib.suppress(*_REDIS_DOWN):
                        await pubsub.aclose()
                await asyncio.sleep(RESUBSCRIBE_S)

    async def _on_room_event(self, raw: dict) -> None:
        try:
            body = json.loads(raw["data"])
            room = raw["channel"].decode().split("room-events:", 1)[1]
            if body.get("node") == self.node_id:
                return
            if body.get("node") and body.get("event", {}).get("type") == "participant_joined":
                self._saw_join(room, body["node"])
            await self._to_watchers(room, body)
            if room not in self.node.rooms.media:
                return
            if "seq" in body:
                await self._deliver_message(room, int(body["seq"]))
            elif "tracks" in body:  # what the node serves, told again (`_announce`)
                await self._announced_again(room, body["node"], body["tracks"])
            else:
                self._deliver_event(room, body["event"])
                if body["event"].get("type") == "track_published" and body.get("identity"):
                    await self._take_over(room, body["identity"], body["event"]["track"], body.get("node"))
        except _REDIS_DOWN:
            raise  # the listener subscribes again and catches up
        except Exception:  # noqa: BLE001 - one bad message must not stop the listener
            logger.exception("cluster: an event from another node could not be delivered")

    async def _catch_up(self) -> None:
        """What this node missed while it was not listening: each room's messages stored
        meanwhile (its last one, which members that are behind take as a gap, caught up
        from the log), and the tracks that consumers waiting here may have been told of
        (asked of the directory)."""
        for room, media in list(self.node.rooms.media.items()):
            last = await self.node.messaging.log.last_seq(room)
            if last:
                await self._deliver_message(room, last)
            for key in list(media.orphans):
                await self._taking_back(self._remote_successor(media, key), key)

    async def _announced_again(self, room: str, node_id: str, tracks: list[dict]) -> None:
        """Another node told again what it serves (it had to register again: Redis was
        away longer than the TTL, and this node may have taken it for dead and closed
        the trunk): consumers here waiting for one of its tracks take it back."""
        media = self.node.rooms.media.get(room)
        for track in tracks:
            if media is not None and track.get("identity") and track.get("track_id") not in media.producers:
                key = (track["identity"], track.get("source"), track.get("kind"))
                await self._taking_back(self._take_over(room, track["identity"], track, node_id), key)

    @staticmethod
    async def _taking_back(take_over: Any, key: tuple) -> None:
        # a track that went again meanwhile is not an error of the listener's: the
        # consumers wait on (until ORPHAN_TIMEOUT_S) for the next announcement
        try:
            await take_over
        except _REDIS_DOWN:
            raise
        except Exception as exc:  # noqa: BLE001 - SubscribeRefused, Unavailable, a trunk refused
            logger.warning("cluster: %s's %s not taken back: %s", key[0], key[2], exc)

    async def _remote_successor(self, room: Room, key: tuple) -> None:
        """Consumers of a dead node's track wait: is its publisher back on another node
        already (it may have been quicker than the node's death was known)?"""
        identity, source, kind = key
        try:
            for found in await self.directory.producers(room.name):
                info = found.info or {}
                if (found.node_id != self.node_id and info.get("identity") == identity
                        and info.get("source") == source and info.get("kind") == kind):
                    await self._take_over(room.name, identity, info, found.node_id)
                    return
        except (*_REDIS_DOWN, RelayError) as exc:
            # not now (the directory is down, the node found is stopping): the consumers
            # keep waiting, and a publication announced later still reaches them
            logger.warning("cluster: looking for %s's %s elsewhere failed: %s", identity, kind, exc,
                           extra={"room": room.name})

    async def _take_over(self, room: str, identity: str, track: dict, node_id: str | None) -> None:
        """A publisher whose node died is back (elsewhere): consumers here that wait for
        its stream forward the new track, with no renegotiation (failover). Also when
        they do not wait yet: its old node's death not known here yet, the new track
        supersedes the one still imported from it (`sfu.room.Room._supersede`)."""
        media = self.node.rooms.media.get(room)
        key = (identity, track.get("source"), track.get("kind"))
        if media is None or (key not in media.orphans and not any(
                is_remote(p) and not p.closed and (p.identity, p.source, p.kind) == key
                for p in media.producers.values())):
            return
        # from the event itself (the origin's directory write may not be in yet)
        known = {track["track_id"]: (node_id, {**track, "identity": identity})} if node_id else None
        await self.import_tracks(media, [track["track_id"]], known)  # adopted: the waiting take it
        logger.info("cluster: %s's %s is back as %s; its consumers here moved to it", identity,
                    track.get("kind"), track["track_id"], extra={"room": room})

    async def _to_watchers(self, room: str, body: dict) -> None:
        """What another node tells of ``room`` (an event, a stored message) to this
        node's connections watching the room (``events.subscribe {rooms}``): they hear
        a room's events wherever its members are."""
        watchers = self.node.membership.watchers(room, None)
        if not watchers:
            return
        if "seq" in body:
            stored = await self.node.messaging.log.read(room, int(body["seq"]) - 1, 1)
            if not stored:
                return
            wire = stored[0].to_event()
        elif isinstance(body.get("event"), dict):
            wire = body["event"]
        else:
            return  # a node telling what it serves again
        wire = wire if "room" in wire else {**wire, "room": room}
        for conn in watchers:
            conn.send_event(wire)

    def _deliver_event(self, room: str, wire: dict) -> None:
        for member in self.node.membership.members(room):
            member.conn.send_event(wire)

    async def _deliver_message(self, room: str, seq: int) -> None:
        messaging = self.node.messaging
        for message in await messaging.log.read(room, seq - 1, 1):
            messaging.deliver_stored(message)

    # -- the directory -----------------------------------------------------------------

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            load = float(sum(len(r.participants) for r in self.node.rooms.media.values()))
            try:
                try:
                    await self.directory.heartbeat(self.node_id, load)
                except UnknownNode:  # we were taken for dead (Redis was away): come back
                    logger.warning("cluster: the directory had forgotten this node; registering again")
                    await self.directory.register(self.info)
                    self._resync = True
                if self._resync:
                    self._resync = False
                    await self._announce()
            except _REDIS_DOWN as exc:  # Redis down: keep serving, try again
                _raise_if_cancelling()
                logger.warning("cluster: heartbeat failed (Redis unreachable?): %s", exc)

    async def _announce(self) -> None:
        """Tell the directory again what this node serves: its rooms, the tracks
        published here, and the rooms it left while Redis was away."""
        try:
            for name in list(self._left_rooms):
                if name not in self.node.rooms.media:  # (not opened again since)
                    await self.directory.leave_room(name, self.node_id)
                self._left_rooms.discard(name)
            for name, media in list(self.node.rooms.media.items()):
                await self.directory.join_room(name, self.node_id)
                tracks = [self._announced(name, p) for p in list(media.producers.values())
                          if not is_remote(p)]
                for track in tracks:
                    await self.directory.publish(name, track["track_id"], self.node_id, track)
                if tracks:  # to other nodes' consumers that took us for dead meanwhile
                    self._publish(name, {"node": self.node_id, "tracks": tracks})
                for found in await self.directory.producers(name):
                    if found.node_id == self.node_id and found.track_id not in media.producers:
                        await self.directory.unpublish(name, found.track_id, self.node_id)
        except BaseException:
            self._resync = True  # the next heartbeat tries again
            raise

    def _announced(self, room: str, producer: Producer) -> dict[str, Any]:
        """A local track as `_local_event` announces it (``joined.tracks`` and failover
        read it: its publisher's identity included)."""
        info = producer.describe()
        return {**info, "identity": self._identity_of(room, info.get("participant_id"))}

    async def _watch(self) -> None:
        while True:
            try:
                async for change in self.directory.watch():
                    if isinstance(change, NodeUp):
                        self.nodes[change.node.node_id] = change.node
                    elif isinstance(change, NodeDown):
                        self._node_down(change.node.node_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the watch goes on after a Redis outage
                logger.warning("cluster: watching the directory failed; again in a second")
            await asyncio.sleep(1.0)

    def _node_down(self, node_id: str) -> None:
        # The trunk is left to its own keepalives: a node that is really gone is noticed
        # there within 1.5 s, and one the directory lost only because Redis was away keeps
        # its media flowing (closing it made every imported track pause and come back).
        info = self.nodes.pop(node_id, None)
        if info is not None:
            self._unlisted[node_id] = (time.monotonic(), info)
        logger.warning("cluster: node %s is no longer listed in the directory", node_id,
                       extra={"peer": node_id})

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class TrunkCollector:
    """Prometheus figures of the node's trunks, by peer node: flows open now, and
    datagrams, bytes and drops (counted on, across trunks that closed)."""

    _COUNTERS = ("datagrams_in", "datagrams_out", "bytes_in", "bytes_out",
                 "dropped_oversized", "dropped_congested", "malformed", "nacked", "retransmitted",
                 "keyframe_requests")

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._seen: dict[Any, dict[str, int]] = {}  # trunk -> its last figures
        self._retired: dict[tuple[str, str], int] = {}

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        live = self.cluster.open_trunks()
        for trunk in [t for t in self._seen if t not in live]:  # closed since: keep its counts
            for key, value in self._seen.pop(trunk).items():
                self._retired[(trunk.peer_node_id or "?", key)] = (
                    self._retired.get((trunk.peer_node_id or "?", key), 0) + value)
        flows = GaugeMetricFamily("dockcast_trunk_flows", "Tracks carried by the trunk to a node",
                                  labels=["peer"])
        counters = {key: CounterMetricFamily(f"dockcast_trunk_{key}", f"Trunk {key.replace('_', ' ')}",
                                             labels=["peer"]) for key in self._COUNTERS}
        totals: dict[tuple[str, str], int] = dict(self._retired)
        for trunk in live:
            stats = trunk.stats()
            peer = stats["peer"] or "?"
            flows.add_metric([peer], stats["flows"])
            self._seen[trunk] = {key: stats[key] for key in self._COUNTERS}
            for key in self._COUNTERS:
                totals[(peer, key)] = totals.get((peer, key), 0) + stats[key]
        yield flows
        for (peer, key), value in sorted(totals.items()):
            counters[key].add_metric([peer], value)
        yield from counters.values()
