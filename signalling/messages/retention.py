"""What retention keeps of a room's log: `RetentionPolicy` and the one rule applying it.

The rule is written once, in `retention_cut`, a pure function of a few facts about one
room. Backends never decide anything themselves: they look the facts up (in memory, in
SQL, in Redis), call `retention_cut`, and delete every message with ``seq <=`` its
answer. So every backend keeps exactly the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetentionPolicy", "retention_cut"]


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """What `RoomLog.prune` drops, per room. ``None`` disables a limit.

    ``max_age_s``: messages older than this (by ``ts``); ``max_messages``: keep at most
    this many; ``max_bytes``: keep at most this many payload bytes (msgpack-encoded).
    Whatever the limits say, a message that some member or follower with a cursor has
    not acked is kept, unless ``drop_unacked`` is true. ``member_idle_s``: a member
    cursor neither joined with nor acked for this long is dropped at the next prune (an
    identity that left for good must not hold its rooms' messages forever).
    """

    max_age_s: float | None = 7 * 24 * 3600.0
    max_messages: int | None = 100_000
    max_bytes: int | None = 256 * 2**20
    drop_unacked: bool = False
    member_idle_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_age_s", "max_messages", "max_bytes", "member_idle_s"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value >= 0):
                raise ValueError(f"RetentionPolicy.{name} must be >= 0 or None, not {value!r}")

    def idle_since(self, now: float) -> float | None:
        """Member cursors last touched before this go at time ``now``; ``None``: never."""
        return None if self.member_idle_s is None else now - self.member_idle_s

    def young_since(self, now: float) -> float | None:
        """The oldest ``ts`` the age limit keeps at time ``now``; ``None`` without one."""
        return None if self.max_age_s is None else now - self.max_age_s


def retention_cut(
    policy: RetentionPolicy,
    *,
    last_seq: int,
    lowest_cursor: int | None,
    first_young_seq: int | None,
    bytes_cut_seq: int,
) -> int:
    """How far retention cuts one room: every message with ``seq <=`` the result goes.

    The facts a backend looks up in the room (a fact whose limit is ``None`` in
    ``policy`` is not read, so it need not be looked up):

    - ``last_seq``: the room's last seq;
    - ``lowest_cursor``: the lowest cursor of its members and followers, ``None`` when
      it has none;
    - ``first_young_seq``: the lowest seq with ``ts >= policy.young_since(now)``,
      ``None`` when no retained message is that young;
    - ``bytes_cut_seq``: the highest seq at which the running total of payload sizes,
      summed from the newest message back, exceeds ``policy.max_bytes``; 0 when none.
    """
    cut = 0
    if policy.max_age_s is not None:
        cut = last_seq if first_young_seq is None else first_young_seq - 1
    if policy.max_messages is not None:
        cut = max(cut, last_seq - policy.max_messages)
    if policy.max_bytes is not None:
        cut = max(cut, bytes_cut_seq)
    if lowest_cursor is not None and not policy.drop_unacked:
        cut = min(cut, lowest_cursor)
    return max(cut, 0)
