"""`MemoryRoomLog`: the log in this process's memory (tests, embedded use; not durable)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter

from signalling.durable import StoreClosed

from .log import AckBeyondEnd, AppendResult, RoomLog, StoredMessage, unpack_payload
from .retention import RetentionPolicy, retention_cut

__all__ = ["MemoryRoomLog"]


@dataclass(slots=True)
class _MemoryRoom:
    last_seq: int = 0
    # messages[i].seq == last_seq - len(messages) + 1 + i: retained seqs are contiguous.
    messages: list[tuple[StoredMessage, int]] = field(default_factory=list)
    # The dedupe key is (sender, msg_id): another identity's msg_id is its own message.
    by_msg_id: dict[tuple[str, str], StoredMessage] = field(default_factory=dict)
    members: dict[str, int] = field(default_factory=dict)
    followers: dict[str, int] = field(default_factory=dict)
    touched: dict[str, float] = field(default_factory=dict)  # member -> last join or ack

    @property
    def first_seq(self) -> int:
        return self.last_seq - len(self.messages) + 1

    def advance(self, cursors: dict[str, int], room: str, who: str, seq: int) -> int:
        AckBeyondEnd.check(room, seq, self.last_seq)
        cursor = max(cursors.get(who, 0), seq)
        cursors[who] = cursor
        return cursor

    # -- the facts retention_cut asks for ----------------------------------------------

    def lowest_cursor(self) -> int | None:
        return min((*self.members.values(), *self.followers.values()), default=None)

    def first_young_seq(self, young_since: float) -> int | None:
        return next((m.seq for m, _ in self.messages if m.ts >= young_since), None)

    def bytes_cut_seq(self, max_bytes: int) -> int:
        total = 0
        for message, size in reversed(self.messages):
            total += size
            if total > max_bytes:
                return message.seq
        return 0


# Which cursors of a room: the members' or the followers'.
_Pick = Callable[[_MemoryRoom], dict[str, int]]
_MEMBERS: _Pick = attrgetter("members")
_FOLLOWERS: _Pick = attrgetter("followers")


class MemoryRoomLog(RoomLog):
    """The log in this process's memory: same behaviour, nothing survives a restart."""

    def __init__(self, retention: RetentionPolicy | None = None) -> None:
        super().__init__(retention)
        self._rooms: dict[str, _MemoryRoom] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("room log is closed")

    def _room(self, room: str, create: bool = False) -> _MemoryRoom:
        self._check_open()
        state = self._rooms.get(room)
        if state is None:
            state = _MemoryRoom()
            if create:
                self._rooms[room] = state
        return state

    async def _append(self, room, msg_id, sender, topic, packed, ts):
        state = self._room(room, create=True)
        first = state.by_msg_id.get((sender, msg_id))
        if first is not None:
            return AppendResult(first.seq, True, first)
        state.last_seq += 1
        message = StoredMessage(room, state.last_seq, msg_id, sender, topic, unpack_payload(packed), ts)
        state.messages.append((message, len(packed)))
        state.by_msg_id[(sender, msg_id)] = message
        return AppendResult(message.seq, False, message)

    async def _read(self, room, after_seq, limit):
        state = self._room(room)
        start = max(after_seq + 1 - state.first_seq, 0)
        return [message for message, _ in state.messages[start : start + limit]]

    async def _last_seq(self, room):
        return self._room(room).last_seq

    async def _first_seq(self, room):
        return self._room(room).first_seq

    def _start(self, room: str, cursors: _Pick, who: str) -> int:
        state = self._room(room, create=True)
        return cursors(state).setdefault(who, state.last_seq)

    def _advance(self, room: str, cursors: _Pick, who: str, seq: int) -> int:
        state = self._room(room)
        cursor = state.advance(cursors(state), room, who, seq)
        self._rooms.setdefault(room, state)
        return cursor

    async def _add_member(self, room, member, now):
        cursor = self._start(room, _MEMBERS, member)
        self._rooms[room].touched[member] = now
        return cursor

    async def _ack(self, room, member, seq, now):
        cursor = self._advance(room, _MEMBERS, member, seq)
        self._rooms[room].touched[member] = now
        return cursor

    async def _cursor(self, room, member):
        return self._room(room).members.get(member)

    async def _members(self, room):
        return dict(self._room(room).members)

    async def _remove_member(self, room, member):
        state = self._room(room)
        state.members.pop(member, None)
        state.touched.pop(member, None)

    async def _follow(self, room, follower):
        return self._start(room, _FOLLOWERS, follower)

    async def _follower_ack(self, room, follower, seq):
        return self._advance(room, _FOLLOWERS, follower, seq)

    async def _follower_cursors(self, follower):
        self._check_open()
        return {
            name: (state.followers[follower], state.last_seq)
            for name, state in self._rooms.items()
            if follower in state.followers
        }

    async def _unfollow(self, room, follower):
        self._room(room).followers.pop(follower, None)

    async def _prune(self, now):
        self._check_open()
        policy = self.retention
        young_since = policy.young_since(now)
        idle_since = policy.idle_since(now)
        deleted = {}
        for name, state in self._rooms.items():
            if idle_since is not None:
                for member in [m for m in state.members if state.touched.get(m, now) < idle_since]:
                    del state.members[member]
                    state.touched.pop(member, None)
            if not state.messages:
                continue
            cut = retention_cut(
                policy,
                last_seq=state.last_seq,
                lowest_cursor=state.lowest_cursor(),
                first_young_seq=None if young_since is None else state.first_young_seq(young_since),
                bytes_cut_seq=0 if policy.max_bytes is None else state.bytes_cut_seq(policy.max_bytes),
            )
            drop = max(cut - state.first_seq + 1, 0)
            if drop:
                for message, _ in state.messages[:drop]:
                    del state.by_msg_id[(message.sender, message.msg_id)]
                del state.messages[:drop]
                deleted[name] = drop
        return deleted

    async def close(self):
        self._closed = True
