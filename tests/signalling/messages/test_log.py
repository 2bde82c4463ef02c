"""The RoomLog interface, run against both backends: seq, dedupe, payloads, argument
checks, member and follower cursors, concurrency."""

from __future__ import annotations

import asyncio

import pytest

from signalling.messages import AckBeyondEnd, InvalidMessage, RetentionPolicy, StoreClosed, StoredMessage

from .support import fill, make_log, send


# -- append, read, dedupe -------------------------------------------------------------


async def test_seq_is_gap_free_per_room(log):
    seqs_a = [(await send(log, "a", f"m{i}")).seq for i in range(5)]
    seqs_b = [(await send(log, "b", f"m{i}")).seq for i in range(3)]
    assert seqs_a == [1, 2, 3, 4, 5]
    assert seqs_b == [1, 2, 3]
    assert await log.last_seq("a") == 5
    assert await log.last_seq("b") == 3
    assert await log.last_seq("never") == 0
    assert await log.first_seq("never") == 1


async def test_message_event_matches_protocol(log):
    result = await log.append("dock-7", "m-1", "alice", "note", {"pallet": 4}, 1700000000.5)
    assert result.duplicate is False
    assert result.message.to_event() == {
        "type": "message",
        "room": "dock-7",
        "seq": 1,
        "msg_id": "m-1",
        "from": "alice",
        "topic": "note",
        "payload": {"pallet": 4},
        "ts": 1700000000500,  # milliseconds on the wire
    }
    assert (await log.read("dock-7")) == [result.message]


@pytest.mark.parametrize(
    "payload",
    [None, True, 0, -(2**63), 2**64 - 1, 1.5, "", "清关 ✓", b"\x00\xffraw", [1, [2, {"a": b"x"}]],
     {"nested": {"deep": [None, 3.25]}, "bin": b"\x01"}, {1: "int keys survive msgpack"}],
)
async def test_payload_round_trips(log, payload):
    result = await send(log, "r", "m", payload)
    assert result.message.payload == payload
    [stored] = await log.read("r")
    assert stored.payload == payload


async def test_tuple_payload_reads_back_as_list(log):
    assert (await send(log, "r", "m", (1, 2))).message.payload == [1, 2]


@pytest.mark.parametrize("payload", [object(), {1.5j}, 2**64, {"s": {1, 2}}])
async def test_unstorable_payload_is_refused_and_changes_nothing(log, payload):
    await send(log, "r", "first")
    with pytest.raises(InvalidMessage, match="payload"):
        await send(log, "r", "bad", payload)
    assert await log.last_seq("r") == 1
    assert (await send(log, "r", "bad", "fixed")).seq == 2


@pytest.mark.parametrize(
    "args, match",
    [
        (("", "m", "s", "t", 1, 1.0), "room must not be empty"),
        ((7, "m", "s", "t", 1, 1.0), "room must be a string"),
        (("r", "", "s", "t", 1, 1.0), "msg_id must not be empty"),
        (("r", b"m", "s", "t", 1, 1.0), "msg_id must be a string"),
        (("r", "m" * 257, "s", "t", 1, 1.0), "msg_id is longer than 256"),
        (("r", "m", None, "t", 1, 1.0), "sender must be a string"),
        (("r", "m", "s", 3, 1, 1.0), "topic must be a string"),
        (("r", "m", "s", "t", 1, float("nan")), "ts must be a finite number"),
        (("r", "m", "s", "t", 1, "now"), "ts must be a finite number"),
    ],
)
async def test_bad_append_arguments(log, args, match):
    with pytest.raises(InvalidMessage, match=match):
        await log.append(*args)
    assert await log.last_seq("r") == 0


async def test_same_msg_id_is_stored_once_and_answers_first_seq(log):
    first = await send(log, "r", "dup", {"v": 1})
    await send(log, "r", "other")
    again = await send(log, "r", "dup", {"v": "changed"})
    assert again.duplicate is True
    assert again.seq == first.seq == 1
    assert again.message == first.message
    assert [m.msg_id for m in await log.read("r")] == ["dup", "other"]
    assert await log.last_seq("r") == 2


async def test_msg_id_dedupe_is_per_room(log):
    assert (await send(log, "a", "same")).duplicate is False
    other = await send(log, "b", "same")
    assert (other.seq, other.duplicate) == (1, False)


async def test_msg_id_dedupe_is_per_sender(log):
    """Another identity's message with the same msg_id is its own message: it is stored,
    gets its own seq, and is never answered with someone else's."""
    alice = await send(log, "r", "scan-1", {"by": "alice"}, sender="alice")
    bob = await send(log, "r", "scan-1", {"by": "bob"}, sender="bob")
    assert (bob.seq, bob.duplicate, bob.message.sender, bob.message.payload) == \
        (2, False, "bob", {"by": "bob"})
    # each sender's retry is answered with its own first seq
    assert (await send(log, "r", "scan-1", sender="alice")).message == alice.message
    again = await send(log, "r", "scan-1", sender="bob")
    assert (again.seq, again.duplicate, again.message) == (2, True, bob.message)
    # the empty sender (a message of the node itself) is a sender like any other
    node = await send(log, "r", "scan-1", sender="")
    assert (node.seq, node.duplicate) == (3, False)
    assert (await send(log, "r", "scan-1", sender="")).seq == 3
    assert [(m.seq, m.sender) for m in await log.read("r")] == [(1, "alice"), (2, "bob"), (3, "")]
    assert await log.last_seq("r") == 3


async def test_concurrent_senders_of_one_msg_id_each_store_theirs(log):
    results = await asyncio.gather(*(send(log, "r", "retry", sender=f"s{i % 5}") for i in range(30)))
    by_sender: dict[str, set[int]] = {}
    for i, result in enumerate(results):
        by_sender.setdefault(f"s{i % 5}", set()).add(result.seq)
        assert result.message.sender == f"s{i % 5}"
    assert all(len(seqs) == 1 for seqs in by_sender.values())
    assert sorted(s for seqs in by_sender.values() for s in seqs) == [1, 2, 3, 4, 5]
    assert sum(not r.duplicate for r in results) == 5


async def test_pruned_message_frees_its_senders_msg_id_only(kind, tmp_path):
    log = make_log(kind, tmp_path, RetentionPolicy(max_age_s=None, max_messages=1, max_bytes=None))
    try:
        await send(log, "r", "x", sender="alice")
        await send(log, "r", "x", sender="bob")
        assert await log.prune(now=0) == {"r": 1}
        # alice's message is gone, so is its dedupe; bob's is still answered
        assert (await send(log, "r", "x", sender="bob")).duplicate is True
        assert (await send(log, "r", "x", sender="alice")).seq == 3
    finally:
        await log.close()


async def test_read_after_seq_and_limit(log):
    for i in range(10):
        await send(log, "r", f"m{i}")
    assert [m.seq for m in await log.read("r", after_seq=7)] == [8, 9, 10]
    assert [m.seq for m in await log.read("r", after_seq=2, limit=3)] == [3, 4, 5]
    assert await log.read("r", after_seq=10) == []
    assert await log.read("r", after_seq=99) == []
    for bad in ({"limit": 0}, {"limit": 10_001}, {"after_seq": -1}, {"after_seq": 1.5}):
        with pytest.raises(InvalidMessage):
            await log.read("r", **bad)


# -- members and acks ------------------------------------------------------------------


async def test_ack_is_cumulative_and_never_moves_back(log):
    for i in range(5):
        await send(log, "r", f"m{i}")
    assert await log.cursor("r", "bob") is None
    assert await log.ack("r", "bob", 3) == 3
    assert await log.ack("r", "bob", 1) == 3
    assert await log.cursor("r", "bob") == 3
    assert await log.ack("r", "bob", 5) == 5
    assert await log.members("r") == {"bob": 5}


async def test_ack_beyond_last_seq_is_refused_and_changes_nothing(log):
    await send(log, "r", "m")
    await log.ack("r", "bob", 1)
    with pytest.raises(AckBeyondEnd, match="past the last message") as info:
        await log.ack("r", "bob", 2)
    assert isinstance(info.value, ValueError)
    with pytest.raises(AckBeyondEnd):
        await log.ack("empty-room", "carol", 1)
    assert await log.cursor("r", "bob") == 1
    assert await log.members("empty-room") == {}
    with pytest.raises(InvalidMessage):
        await log.ack("r", "bob", -1)


async def test_add_member_starts_at_last_seq_once(log):
    await send(log, "r", "m1")
    await send(log, "r", "m2")
    assert await log.add_member("r", "bob") == 2
    await send(log, "r", "m3")
    assert await log.add_member("r", "bob") == 2  # a rejoin keeps the old cursor
    assert await log.add_member("r", "carol") == 3
    await log.remove_member("r", "bob")
    assert await log.members("r") == {"carol": 3}
    await log.remove_member("r", "nobody")


# -- follower cursors -------------------------------------------------------------------


async def test_follow_starts_at_last_seq_once(log):
    assert await log.follow("empty", "hook") == 0
    await fill(log, "r", 2)
    assert await log.follow("r", "hook") == 2
    await send(log, "r", "late")
    # Following again keeps the cursor; a new follower starts at the end.
    assert (await log.follow("r", "hook"), await log.follow("r", "other")) == (2, 3)
    assert await log.follower_cursors("hook") == {"empty": (0, 0), "r": (2, 3)}


async def test_follower_ack_is_cumulative_and_never_moves_back(log):
    for i in range(5):
        await send(log, "r", f"m{i}")
    await log.follow("r", "hook")
    assert await log.follower_ack("r", "hook", 3) == 5  # follow started it at last_seq
    await log.unfollow("r", "hook")
    assert await log.follower_ack("r", "hook", 3) == 3  # like ack: no cursor, one is made
    assert await log.follower_ack("r", "hook", 1) == 3
    assert await log.follower_ack("r", "hook", 0) == 3
    assert await log.follower_ack("r", "hook", 5) == 5
    assert await log.follower_cursors("hook") == {"r": (5, 5)}


async def test_follower_ack_beyond_last_seq_is_refused_and_changes_nothing(log):
    await send(log, "r", "m")
    assert await log.follower_ack("r", "hook", 1) == 1
    with pytest.raises(AckBeyondEnd, match="past the last message") as info:
        await log.follower_ack("r", "hook", 2)
    assert isinstance(info.value, ValueError)
    assert info.value.code == "bad_request"
    with pytest.raises(AckBeyondEnd):
        await log.follower_ack("empty-room", "hook", 1)
    assert await log.follower_cursors("hook") == {"r": (1, 1)}


async def test_follower_cursors_map_every_followed_room_to_cursor_and_last_seq(log):
    for i in range(3):
        await send(log, "a", f"m{i}")
    await log.follow("b", "hook")  # before the room has any message
    await send(log, "b", "m0")
    await log.follow("c", "hook")
    await log.follower_ack("a", "hook", 2)
    await log.follow("a", "other")
    assert await log.follower_cursors("hook") == {"a": (2, 3), "b": (0, 1), "c": (0, 0)}
    assert await log.follower_cursors("other") == {"a": (3, 3)}
    assert await log.follower_cursors("nobody") == {}
    await log.unfollow("a", "hook")
    await log.unfollow("a", "nobody")
    await log.unfollow("never", "hook")
    assert await log.follower_cursors("hook") == {"b": (0, 1), "c": (0, 0)}


async def test_follower_cursors_are_apart_from_member_cursors(log):
    for i in range(4):
        await send(log, "r", f"m{i}")
    await log.ack("r", "bob", 1)
    await log.follow("r", "bob")  # the same name as a follower is another cursor
    await log.follower_ack("r", "hook", 3)
    assert await log.members("r") == {"bob": 1}
    assert await log.cursor("r", "hook") is None
    assert await log.follower_cursors("bob") == {"r": (4, 4)}
    await log.ack("r", "bob", 2)
    assert await log.follower_cursors("bob") == {"r": (4, 4)}
    await log.remove_member("r", "bob")
    assert await log.follower_cursors("bob") == {"r": (4, 4)}
    await log.unfollow("r", "bob")
    assert await log.members("r") == {}
    assert await log.follower_cursors("hook") == {"r": (3, 4)}


@pytest.mark.parametrize(
    "method, args, match",
    [
        ("follow", ("", "hook"), "room must not be empty"),
        ("follow", ("r", ""), "follower must not be empty"),
        ("follow", ("r", 7), "follower must be a string"),
        ("follower_ack", ("r", "h" * 257, 0), "follower is longer than 256"),
        ("follower_ack", ("r", "hook", -1), "seq must be an integer >= 0"),
        ("follower_ack", ("r", "hook", True), "seq must be an integer >= 0"),
        ("follower_ack", ("r", "hook", 1.0), "seq must be an integer >= 0"),
        ("follower_cursors", ("",), "follower must not be empty"),
        ("follower_cursors", (b"hook",), "follower must be a string"),
        ("unfollow", ("r", None), "follower must be a string"),
        ("unfollow", (None, "hook"), "room must be a string"),
    ],
)
async def test_bad_follower_arguments(log, method, args, match):
    await send(log, "r", "m")
    with pytest.raises(InvalidMessage, match=match):
        await getattr(log, method)(*args)
    assert await log.follower_cursors("hook") == {}


# -- concurrency ----------------------------------------------------------------------


async def test_concurrent_appenders_get_unique_gap_free_seqs(log):
    tasks, per_task = 40, 25

    async def sender(k: int) -> list[int]:
        return [(await send(log, "r", f"{k}-{i}", {"k": k, "i": i})).seq for i in range(per_task)]

    results = await asyncio.gather(*(sender(k) for k in range(tasks)))
    seqs = sorted(seq for result in results for seq in result)
    assert seqs == list(range(1, tasks * per_task + 1))
    for result in results:
        assert result == sorted(result)  # one sender's messages stay in its order
    stored = await log.read("r", limit=10_000)
    assert [m.seq for m in stored] == seqs
    by_id = {m.msg_id: m for m in stored}
    for k, result in enumerate(results):
        for i, seq in enumerate(result):
            assert by_id[f"{k}-{i}"].seq == seq
            assert by_id[f"{k}-{i}"].payload == {"k": k, "i": i}


async def test_concurrent_duplicates_are_stored_once(log):
    results = await asyncio.gather(*(send(log, "r", "retry") for _ in range(30)))
    assert {r.seq for r in results} == {1}
    assert sum(not r.duplicate for r in results) == 1
    assert await log.last_seq("r") == 1


# -- prune's argument, closing ----------------------------------------------------------


async def test_prune_refuses_bad_now(log):
    with pytest.raises(InvalidMessage):
        await log.prune(float("inf"))


async def test_closed_log_refuses_work(kind, tmp_path):
    log = make_log(kind, tmp_path)
    await log.close()
    await log.close()
    with pytest.raises(StoreClosed):
        await send(log, "r", "m")

async def test_closed_log_refuses_follower_work(kind, tmp_path):
    log = make_log(kind, tmp_path)
    await log.follow("r", "hook")
    await log.close()
    for call in (
        lambda: log.follow("r", "hook"),
        lambda: log.follower_ack("r", "hook", 0),
        lambda: log.follower_cursors("hook"),
        lambda: log.unfollow("r", "hook"),
        lambda: log.prune(0),
    ):
        with pytest.raises(StoreClosed):
            await call()


def test_stored_message_is_frozen():
    message = StoredMessage("r", 1, "m", "s", "t", None, 0.0)
    with pytest.raises(AttributeError):
        message.seq = 2  # type: ignore[misc]
