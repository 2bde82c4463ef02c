"""Room messages on a node: ``send``/``sent``, ``ack``, live delivery and resume.

`Messaging` answers ``send`` and ``ack`` from the durable `RoomLog` and delivers each
stored message to the room's members as a ``message`` event, in ``seq`` order. A
message's path, top to bottom:

1. ``send`` arrives validated (schema, grants, payload size: the session core);
   `Messaging.on_send` finds the sender's room in the `Membership`.
2. `RoomLog.append` stores it (validated once more by the log, the one place that
   checks names and payloads) and returns once the write is durable.
3. With no ``await`` since the append returned, it goes to every member, the sender
   included (`Messaging._deliver`); appends complete in ``seq`` order, so members see
   ``seq`` 1, 2, 3...
4. `MessageStored` is published on the `EventBus` (watchers at once, plugins in the
   room's lane) and every `LogFollower` is told (they read the log from a cursor of
   their own), neither awaited: ``sent`` waits only for the commit.
5. ``sent {seq, msg_id}`` is answered. A ``msg_id`` the same identity sent before is
   answered its first ``seq`` and delivered again to nobody (another identity's
   message with the same ``msg_id`` is its own message).
- A message from inside the node (a plugin's, `Messaging.send`) takes steps 2-4 the
  same way, with no connection: its sender is the name the plugin gives.
- Each member connection has a ``delivered`` mark (the highest ``seq`` sent to it). A
  live message at or below it is skipped; one above ``delivered + 1`` (a gap, which
  should not happen) makes the connection catch up from the log instead.
- A connection that said ``hello.resume {session_id, last_seq}`` gets, on its first
  ``join``, every retained message after ``last_seq`` read from the log page by page
  (pacing itself on the connection's send queue), and no live message until the replay
  has caught up with what was delivered live meanwhile. ``session_id`` is not checked:
  sessions do not survive a restart, the log does, and ``last_seq`` says it all.

Who is in which room is the `Membership`'s: the room lifecycle tells `Messaging` when
a connection joined (`prepare_join` before, then `joined` once the membership has it),
left (`left`), and when a room closed (`room_closed`); `Messaging` keeps only each
member's delivery state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest
from ..bus import EventBus
from ..events import MessageStored
from ..membership import Membership
from ..schema import Request
from .follower import LogFollower
from .log import RoomLog, StoredMessage

__all__ = ["Messaging", "REPLAY_PAGE", "REPLAY_QUEUE_LOW"]

logger = logging.getLogger("dockcast.messages")

REPLAY_PAGE = 256
"""Messages a replay reads from the log at a time."""
REPLAY_QUEUE_LOW = 256
"""A replay sends its next page once the connection has fewer messages than this
waiting to be written (the server disconnects a connection whose queue overflows)."""
_PACE_S = 0.005


@dataclass(slots=True, eq=False)
class _Member:
    """One connection's delivery state in the room it joined."""

    conn: Any
    room: str
    delivered: int
    replay: asyncio.Task[None] | None = None


class Messaging:
    """``send``/``ack`` handlers and ``message`` delivery over ``log``, to the members
    that ``membership`` knows; new messages are published on ``bus`` and handed to the
    ``followers``."""

    def __init__(self, log: RoomLog, membership: Membership, *, bus: EventBus | None = None,
                 followers: Iterable[LogFollower] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.log = log
        self.membership = membership
        self.bus = bus
        self.followers = list(followers)
        self.clock = clock
        self._members: dict[Any, _Member] = {}
        # Per room with members: the highest seq known to be stored (delivered live or
        # read at a join). A replay is caught up when it reached it.
        self._last: dict[str, int] = {}
        self.stored = 0       # messages stored since start (for /metrics)
        self.duplicates = 0   # sends answered with an earlier seq (same sender and msg_id)

    def add_follower(self, follower: LogFollower) -> None:
        """Hand ``follower`` the rooms joined and the messages stored from now on."""
        self.followers.append(follower)

    # -- membership ------------------------------------------------------------------

    async def prepare_join(self, room: str, identity: str) -> int:
        """Before ``identity`` joins ``room``: give it a cursor (a rejoin keeps its old
        one), and each follower one, and return the room's last stored ``seq``."""
        await self.log.add_member(room, identity, self.clock())
        for follower in self.followers:
            await follower.track(room)
        return await self.log.last_seq(room)

    def joined(self, conn: Any, room: str, logged_last_seq: int) -> int:
        """``conn`` is now a member of ``room`` in the membership (call it with no
        ``await`` since it became one); returns ``last_seq`` for the ``joined`` reply.

        The first join of a connection that said ``hello.resume`` starts its replay
        (as a task: its messages follow the ``joined`` reply on the wire).
        """
        self.left(conn)
        last = max(self._last.get(room, 0), logged_last_seq)
        self._last[room] = last
        resume = conn.resume if not conn.data.get("resume_used") else None
        conn.data["resume_used"] = True
        member = _Member(conn, room, last)
        if resume is not None:
            member.delivered = min(int(resume["last_seq"]), last)
        self._members[conn] = member
        if member.delivered < last:
            self._start_replay(member)
        return last

    def left(self, conn: Any) -> None:
        """``conn`` left its room (or disconnected): stop delivering to it."""
        member = self._members.pop(conn, None)
        if member is not None and member.replay is not None:
            member.replay.cancel()

    def room_closed(self, room: str) -> None:
        """``room`` closed: forget its state (a later join reads it from the log)."""
        for conn, member in list(self._members.items()):
            if member.room == room:
                self.left(conn)
        self._last.pop(room, None)

    def replays(self) -> int:
        """Connections still catching up from the log."""
        return sum(1 for m in self._members.values() if m.replay is not None)

    def replaying(self, conn: Any) -> bool:
        """Whether ``conn`` is still catching up from the log."""
        member = self._members.get(conn)
        return member is not None and member.replay is not None

    # -- requests --------------------------------------------------------------------

    async def on_send(self, conn: Any, request: Request) -> dict[str, Any]:
        room = self.membership.room_of(conn)
        if room is None or conn not in self._members:
            raise BadRequest("send needs a joined room; send join first")
        message = await self.send(room, conn.identity or "", request["topic"],
                                  request["payload"], request["msg_id"])
        return {"type": "sent", "seq": message.seq, "msg_id": message.msg_id}

    async def send(self, room: str, sender: str, topic: str, payload: Any,
                   msg_id: str) -> StoredMessage:
        """Store a room message from ``sender`` and deliver it like a member's ``send``
        (steps 2-4 of the module docstring): to every member, on the bus, to the
        followers. Returns the stored message; for a ``msg_id`` ``sender`` stored
        already, the first one (delivered again to nobody). Errors are the log's
        (`InvalidMessage`, `DurableDbError`)."""
        result = await self.log.append(room, msg_id, sender, topic, payload, self.clock())
        if result.duplicate:
            self.duplicates += 1
        else:
            self.stored += 1
            # No await before this: appends complete in seq order, so do deliveries.
            self._deliver(result.message)
            if self.bus is not None:
                self.bus.publish(MessageStored(room=room, message=result.message))
            for follower in self.followers:
                follower.notify(room)
        return result.message

    async def on_ack(self, conn: Any, request: Request) -> None:
        room = self.membership.room_of(conn)
        if room is None:
            raise BadRequest("ack needs a joined room; send join first")
        await self.log.ack(room, conn.identity or "", request["seq"], self.clock())
        return None

    async def remove_member(self, room: str, identity: str) -> None:
        """``identity`` was removed from ``room``: its cursor no longer holds messages."""
        await self.log.remove_member(room, identity)

    async def prune(self, now: float) -> dict[str, int]:
        """Apply the log's retention policy (the node calls it periodically)."""
        deleted = await self.log.prune(now)
        if deleted:
            logger.info("pruned room messages", extra={"deleted": deleted})
        return deleted

    async def close(self) -> None:
        for conn in list(self._members):
            self.left(conn)
        await self.log.close()

    # -- delivery --------------------------------------------------------------------

    def deliver_stored(self, message: StoredMessage) -> None:
        """Deliver a message another node stored in the shared log to this node's
        members of its room (each once, in ``seq`` order, a gap caught up from the log)."""
        self._deliver(message)

    def _deliver(self, message: StoredMessage) -> None:
        if message.seq > self._last.get(message.room, 0):
            self._last[message.room] = message.seq
        event = None
        for conn in self.membership.connections(message.room):
            member = self._members.get(conn)
            if member is None or member.replay is not None or message.seq <= member.delivered:
                continue
            if message.seq != member.delivered + 1:
                logger.warning("gap in live delivery: catching up from the log",
                               extra={"room": message.room, "delivered": member.delivered,
                                      "seq": message.seq})
                self._start_replay(member)
                continue
            if event is None:
                event = message.to_event()
            conn.send_event(event)
            member.delivered = message.seq

    def _start_replay(self, member: _Member) -> None:
        member.replay = asyncio.ensure_future(self._replay(member))

    async def _replay(self, member: _Member) -> None:
        conn = member.conn
        try:
            while True:
                # Everything stored up to target was committed before this read began.
                target = self._last.get(member.room, 0)
                page = await self.log.read(member.room, member.delivered, REPLAY_PAGE)
                if self._members.get(conn) is not member:
                    return  # left while reading
                for message in page:
                    if message.seq > member.delivered:
                        conn.send_event(message.to_event())
                        member.delivered = message.seq
                if len(page) < REPLAY_PAGE:
                    # What is missing up to target was pruned by retention.
                    member.delivered = max(member.delivered, target)
                    if member.delivered >= self._last.get(member.room, 0):
                        # Caught up, no await since the check: live delivery takes over.
                        member.replay = None
                        return
                while conn.queued_messages > REPLAY_QUEUE_LOW and not conn.closed:
                    await asyncio.sleep(_PACE_S)
                if conn.closed:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            # The client resumes again from what it has; better than a silent stall.
            logger.exception("message replay failed; closing the connection",
                             extra={"room": member.room, "identity": conn.identity})
            conn.close(1011, "message replay failed; resume again")
