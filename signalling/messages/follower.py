"""Slow consumers of room messages, each following the log from a cursor of its own.

A `LogFollower` hands every stored message of every room to one handler (the webhooks
plugin's, the audit log's), in ``seq`` order per room, at least once: its cursor is
durable in the `RoomLog` (`RoomLog.follow`, `RoomLog.follower_ack`), so what it had not
finished when the node stopped or died is handed to it again at the next `start`.
Because it reads the log instead of being called by ``send``, a slow or failing handler
never delays ``sent`` nor the members' delivery, and each room has its own task: a
handler stuck in one room does not hold back another. A handler that raises is retried
with exponential backoff (``retry_s`` doubling up to ``max_retry_s``); it must be
idempotent (a message may come again after a crash).

The delivery (`signalling.messages.delivery.Messaging`) calls `track` before a room's
first join on this node (so the cursor starts where the room is), and `notify` after
each append.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..durable import StoreUnavailable
from ..events import MessageStored
from .log import RoomLog

__all__ = ["LogFollower", "FOLLOW_PAGE"]

log = logging.getLogger(__name__)

FOLLOW_PAGE = 256
"""Messages read from the log at a time; the cursor moves once per page."""


class LogFollower:
    """Hands ``handler`` every message of every room, from the durable cursor ``name``.

    ``shipment_of(room)`` fills `MessageStored.shipment_id` (the room's bound shipment).
    """

    def __init__(self, log: RoomLog, name: str, handler: Callable[[MessageStored], Awaitable[None]],
                 *, shipment_of: Callable[[str], str | None] | None = None,
                 retry_s: float = 0.5, max_retry_s: float = 30.0, page: int = FOLLOW_PAGE) -> None:
        self.log = log
        self.name = name
        self.handler = handler
        self.shipment_of = shipment_of
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self.page = page
        self._tasks: dict[str, asyncio.Task] = {}
        self._again: set[str] = set()
        self._closed = False
        self.handled = 0
        self.failures = 0

    async def start(self) -> None:
        """Catch up on every room whose messages this follower has not all seen."""
        for room, (cursor, last) in (await self.log.follower_cursors(self.name)).items():
            if cursor < last:
                log.info("%s catching up on room %s from seq %d to %d", self.name, room,
                         cursor, last, extra={"room": room, "follower": self.name})
                self.notify(room)

    async def track(self, room: str) -> None:
        """Make sure this follower has a cursor in ``room`` (at its end when new)."""
        await self.log.follow(room, self.name)

    def notify(self, room: str) -> None:
        """``room`` has a new message: read it (now, or after the page being handled)."""
        if self._closed:
            return
        if room in self._tasks:
            self._again.add(room)
            return
        self._tasks[room] = asyncio.get_running_loop().create_task(self._follow(room))

    @property
    def busy(self) -> bool:
        """Whether some room is still being read or handled."""
        return bool(self._tasks)

    async def wait_idle(self) -> None:
        """Wait until every room has been followed to its end (tests, stop)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def stop(self) -> None:
        """Stop reading; unfinished messages wait for the next start."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, room: str) -> None:
        delay = self.retry_s
        try:
            while True:
                self._again.discard(room)
                try:
                    caught_up = await self._step(room)
                except asyncio.CancelledError:
                    raise
                except StoreUnavailable as exc:  # the store is down: no traceback, just why
                    self.failures += 1
                    log.warning("%s waits for the message store (room %s): %s; retrying in %.1fs",
                                self.name, room, exc, delay, extra={"room": room, "follower": self.name})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_retry_s)
                    continue
                except Exception:  # noqa: BLE001 - logged, retried: nothing is skipped
                    self.failures += 1
                    log.exception("%s failed on a message of room %s; retrying in %.1fs",
                                  self.name, room, delay, extra={"room": room, "follower": self.name})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_retry_s)
                    continue
                delay = self.retry_s
                if caught_up and room not in self._again:
                    return
        finally:
            self._tasks.pop(room, None)

    async def _step(self, room: str) -> bool:
        """Handle one page; True when the room's log has nothing more for us."""
        cursor = await self.log.follow(room, self.name)
        messages = await self.log.read(room, cursor, self.page)
        shipment_id = self.shipment_of(room) if self.shipment_of is not None else None
        done = cursor
        try:
            for message in messages:
                await self.handler(MessageStored(room=room, message=message, shipment_id=shipment_id))
                self.handled += 1
                done = message.seq
        finally:
            if done > cursor:
                await self.log.follower_ack(room, self.name, done)
        return len(messages) < self.page
