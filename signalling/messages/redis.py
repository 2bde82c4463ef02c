"""`RedisRoomLog`: the room log of a cluster, on Redis Streams (``docs/cluster.md``).

Every node of a cluster appends to and reads from the same Redis, so a room's ``seq``
stays gap-free and its ``msg_id`` deduped whichever node a member is connected to. Each
change is one Lua script (EVALSHA), which Redis runs alone: two nodes appending to one
room at once get consecutive seqs, never the same one and never a hole.

Keys (``P`` is ``key_prefix``; a room or follower name is the end of its key, so names
never collide)::

    P log:stream:<room>     stream, one entry per retained message, id "<seq>-0":
                            m msg_id, s sender, t topic, p payload (msgpack), ts, and
                            b the payload bytes of the room before this message
    P log:meta:<room>       hash: seq (the last one), bytes (payload bytes ever appended)
    P log:dedupe:<room>     hash: "<len(sender)>:<sender><msg_id>" -> seq, while retained
    P log:members:<room>    hash: member -> cursor
    P log:touched:<room>    sorted set: member scored by when it last joined or acked
    P log:followers:<room>  hash: follower -> cursor
    P log:rooms             set of every room with a key
    P log:follows:<name>    set of the rooms where follower <name> has a cursor

Durability is Redis's: ``append`` returns once Redis answered, which with ``appendonly
yes`` and ``appendfsync always`` (``config_problems`` checks) is after the AOF was
fsynced. Redis unreachable, timing out or refusing a write is `StoreUnavailable`; no call
waits longer than ``timeout_s``. Needs Redis 7 (script flags) and one Redis, not Redis
Cluster: prune walks every room.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from signalling.durable import StoreClosed, StoreUnavailable

from . import _redis_scripts as lua
from .log import AckBeyondEnd, AppendResult, RoomLog, StoredMessage, unpack_payload
from .retention import RetentionPolicy, retention_cut

__all__ = ["RedisRoomLog"]

_PRUNE_ATTEMPTS = 5


def _b(name: str) -> bytes:
    # surrogatepass: any str the log accepts is a key, as in the other backends
    return name.encode("utf-8", "surrogatepass")


def _s(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def _dedupe_field(sender: bytes, msg_id: bytes) -> bytes:
    """(sender, msg_id) as one hash field; the length prefix keeps every pair distinct."""
    return b"%d:%s%s" % (len(sender), sender, msg_id)


def _fields(flat: list) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2]))


def _message(room: str, entry_id: bytes, fields: dict[bytes, bytes]) -> StoredMessage:
    return StoredMessage(room, int(entry_id.split(b"-")[0]), _s(fields[b"m"]), _s(fields[b"s"]),
                         _s(fields[b"t"]), unpack_payload(fields[b"p"]), float(fields[b"ts"]))


def _connect(url_or_client: str | aioredis.Redis, timeout_s: float) -> tuple[aioredis.Redis, bool]:
    """A client for ``url_or_client`` (bytes replies, ``timeout_s`` on every socket
    operation, no silent retries) and whether we own it; a given client is checked."""
    if isinstance(url_or_client, str):
        client = aioredis.Redis.from_url(
            url_or_client, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0), decode_responses=False,
        )
        return client, True
    if url_or_client.get_connection_kwargs().get("decode_responses"):
        raise ValueError("the Redis client must be made with decode_responses=False")
    return url_or_client, False


class RedisRoomLog(RoomLog):
    """The log in Redis: shared by every node of a cluster, durable with AOF ``always``.

    ``url_or_client``: a ``redis://`` URL, or a ``redis.asyncio.Redis`` made with
    ``decode_responses=False`` (then `close` leaves it open). ``key_prefix`` starts every
    key, so several clusters (or tests) can share one Redis. ``timeout_s`` bounds each
    call to Redis when the log makes its own client.
    """

    def __init__(self, url_or_client: str | aioredis.Redis, retention: RetentionPolicy | None = None,
                 *, key_prefix: str = "dockcast:", timeout_s: float = 5.0) -> None:
        super().__init__(retention)
        self._client, self._owns_client = _connect(url_or_client, timeout_s)
        self._prefix = _b(key_prefix) + b"log:"
        self._closed = False
        register = self._client.register_script
        self._append_script = register(lua.APPEND)
        self._first_seq_script = register(lua.FIRST_SEQ)
        self._start_script = register(lua.START)
        self._advance_script = register(lua.ADVANCE)
        self._expire_idle_script = register(lua.EXPIRE_IDLE)
        self._measure_script = register(lua.MEASURE)
        self._trim_script = register(lua.TRIM)

    def _key(self, kind: str, room: str) -> bytes:
        return self._prefix + kind.encode() + b":" + _b(room)

    @contextlib.asynccontextmanager
    async def _redis(self) -> AsyncIterator[aioredis.Redis]:
        """The client, with Redis's failures turned into `StoreUnavailable`."""
        if self._closed:
            raise StoreClosed("room log is closed")
        try:
            yield self._client
        except (RedisError, OSError) as exc:
            kwargs = self._client.get_connection_kwargs()
            where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
            raise StoreUnavailable(f"redis at {where} failed: {exc}") from exc

    async def config_problems(self) -> list[str]:
        """What in the Redis server's configuration breaks the log's guarantees (empty:
        none): ``appendonly yes``, ``appendfsync always`` and ``maxmemory-policy
        noeviction`` are required (``docs/cluster.md``)."""
        wanted = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}
        found = {}
        async with self._redis() as client:
            for name in wanted:
                for key, value in (await client.config_get(name)).items():
                    found[key if isinstance(key, str) else _s(key)] = (
                        value if isinstance(value, str) else _s(value))
        problems = []
        for name, value in wanted.items():
            have = found.get(name, "unknown")
            if have != value:
                problems.append(f"{name} is {have}, must be {value}")
        return problems

    async def _append(self, room, msg_id, sender, topic, packed, ts):
        sender_b, msg_id_b = _b(sender), _b(msg_id)
        keys = [self._key("meta", room), self._key("stream", room), self._key("dedupe", room),
                self._prefix + b"rooms"]
        args = [_b(room), _dedupe_field(sender_b, msg_id_b), msg_id_b, sender_b, _b(topic),
                packed, repr(ts)]
        async with self._redis() as client:
            reply = await self._append_script(keys, args, client=client)
        if reply[0] == 0:
            first = _message(room, reply[1], _fields(reply[2]))
            return AppendResult(first.seq, True, first)
        message = StoredMessage(room, reply[1], msg_id, sender, topic, unpack_payload(packed), ts)
        return AppendResult(message.seq, False, message)

    async def _read(self, room, after_seq, limit):
        async with self._redis() as client:
            entries = await client.xrange(self._key("stream", room), min=f"{after_seq + 1}-0",
                                          max="+", count=limit)
        return [_message(room, entry_id, fields) for entry_id, fields in entries]

    async def _last_seq(self, room):
        async with self._redis() as client:
            return int(await client.hget(self._key("meta", room), "seq") or 0)

    async def _first_seq(self, room):
        keys = [self._key("stream", room), self._key("meta", room)]
        async with self._redis() as client:
            return await self._first_seq_script(keys, [], client=client)

    # -- cursors ------------------------------------------------------------------------

    def _cursor_keys(self, room: str, member: bool, who: str) -> list[bytes]:
        if member:
            cursors, extra = self._key("members", room), self._key("touched", room)
        else:
            cursors, extra = self._key("followers", room), self._key("follows", who)
        return [cursors, self._key("meta", room), self._prefix + b"rooms", extra]

    async def _start(self, room: str, who: str, now: float | None) -> int:
        member = now is not None
        args = [_b(who), _b(room), "member" if member else "follower", repr(now)]
        async with self._redis() as client:
            return await self._start_script(self._cursor_keys(room, member, who), args, client=client)

    async def _advance(self, room: str, who: str, seq: int, now: float | None) -> int:
        member = now is not None
        args = [_b(who), _b(room), "member" if member else "follower", repr(now), seq]
        async with self._redis() as client:
            ok, value = await self._advance_script(self._cursor_keys(room, member, who), args,
                                                   client=client)
        if not ok:
            AckBeyondEnd.check(room, seq, value)
        return value

    async def _add_member(self, room, member, now):
        return await self._start(room, member, now)

    async def _ack(self, room, member, seq, now):
        return await self._advance(room, member, seq, now)

    async def _cursor(self, room, member):
        async with self._redis() as client:
            cursor = await client.hget(self._key("members", room), _b(member))
        return None if cursor is None else int(cursor)

    async def _members(self, room):
        async with self._redis() as client:
            cursors = await client.hgetall(self._key("members", room))
        return {_s(member): int(cursor) for member, cursor in cursors.items()}

    async def _remove_member(self, room, member):
        async with self._redis() as client, client.pipeline(transaction=True) as pipe:
            pipe.hdel(self._key("members", room), _b(member))
            pipe.zrem(self._key("touched", room), _b(member))
            await pipe.execute()

    async def _follow(self, room, follower):
        return await self._start(room, follower, None)

    async def _follower_ack(self, room, follower, seq):
        return await self._advance(room, follower, seq, None)

    async def _follower_cursors(self, follower):
        async with self._redis() as client:
            rooms = sorted(_s(room) for room in await client.smembers(self._key("follows", follower)))
            async with client.pipeline(transaction=True) as pipe:
                for room in rooms:
                    pipe.hget(self._key("followers", room), _b(follower))
                    pipe.hget(self._key("meta", room), "seq")
                replies = await pipe.execute()
        return {
            room: (int(cursor), int(last or 0))
            for room, cursor, last in zip(rooms, replies[::2], replies[1::2])
            if cursor is not None  # unfollowed meanwhile
        }

    async def _unfollow(self, room, follower):
        async with self._redis() as client, client.pipeline(transaction=True) as pipe:
            pipe.hdel(self._key("followers", room), _b(follower))
            pipe.srem(self._key("follows", follower), _b(room))
            await pipe.execute()

    # -- retention ----------------------------------------------------------------------

    async def _prune(self, now):
        policy = self.retention
        young_since = policy.young_since(now)
        idle_since = policy.idle_since(now)
        measure_args = ["" if young_since is None else repr(young_since),
                        "" if policy.max_bytes is None else policy.max_bytes]
        deleted = {}
        async with self._redis() as client:
            rooms = sorted(_s(room) for room in await client.smembers(self._prefix + b"rooms"))
            for room in rooms:
                if idle_since is not None:
                    await self._expire_idle_script(
                        [self._key("members", room), self._key("touched", room)],
                        [repr(idle_since)], client=client)
                count = await self._prune_room(client, room, measure_args)
                if count:
                    deleted[room] = count
        return deleted

    async def _prune_room(self, client: aioredis.Redis, room: str, measure_args: list[Any]) -> int:
        """Trim one room as `retention_cut` says; how many messages went."""
        stream, members, followers = (self._key(kind, room) for kind in ("stream", "members", "followers"))
        guard = "0" if self.retention.drop_unacked else "1"
        for _ in range(_PRUNE_ATTEMPTS):
            last, lowest, young, bytes_cut, first = await self._measure_script(
                [self._key("meta", room), stream, members, followers], measure_args, client=client)
            cut = retention_cut(
                self.retention,
                last_seq=last,
                lowest_cursor=None if lowest < 0 else lowest,
                first_young_seq=None if young < 0 else young,
                bytes_cut_seq=bytes_cut,
            )
            if cut < first:
                return 0
            count = await self._trim_script([stream, self._key("dedupe", room), members, followers],
                                            [cut, guard], client=client)
            if count >= 0:
                return count
        return 0  # cursors kept moving under us: the next prune trims this room

    async def close(self):
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.aclose()
