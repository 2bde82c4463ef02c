"""``dockcast serve --workers 2``: one port, rooms placed on workers (issue 14, point 5).

A real supervisor process with its private redis-server and two worker processes on
loopback. Clients connect to the one shared port: the members of a room end up on the
same worker (``welcome.redirect`` to its own port), rooms spread over both, a publisher's
video reaches a subscriber of its room without crossing a trunk; a worker SIGKILLed is
started again and serves; a second server on the same port is refused; SIGTERM stops
everything, the Redis too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench.harness import free_port_range

from .conftest import API_KEY, API_SECRET, ROOT, NodeProcess
from .peer import Participant
from .waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def _worker_pid(supervisor: int, index: int) -> int | None:
    for pid in _children(supervisor):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in env:
            if entry.startswith(b"DOCKCAST_WORKER=") and entry.split(b",")[1] == str(index).encode():
                return pid
    return None


@pytest.fixture
async def workers(tmp_path):
    port = free_port_range(6)
    proc = NodeProcess(tmp_path / "data", extra_args=("--workers", "2", "--node-id", "dock"), port=port)
    # both workers started: a worker's /healthz says ok once it serves on the common
    # port, which it does only when it knows the other (until then it would place every
    # room on itself)
    deadline = time.monotonic() + 30
    while not (_healthy(port + 2) and _healthy(port + 4)):
        assert time.monotonic() < deadline, proc.log()[-3000:]
        await asyncio.sleep(0.2)
    for own in (port + 2, port + 4):
        assert await _knows_sibling(proc, own)
    yield proc
    if proc.proc.poll() is None:
        code = proc.stop()
        log = proc.log_path.read_text()
        assert code == 0, log[-4000:]
        assert "Traceback" not in log, log[-6000:]


async def _knows_sibling(proc: NodeProcess, port: int) -> bool:
    """Worker ``port`` answers, and its ``welcome.nodes`` names the other worker."""
    p = Participant(f"ws://127.0.0.1:{port}/ws", proc.token("probe", room="probe"))
    try:
        welcome = await p.connect()
    except OSError:
        return False
    await p.ws.close()
    return bool(welcome.get("nodes"))


async def _placed(proc: NodeProcess, identity: str, room: str) -> tuple[Participant, dict]:
    """A participant connected through the shared port, moved where ``welcome`` says."""
    p = Participant(proc.url, proc.token(identity, room=room))
    welcome = await p.connect()
    if "redirect" in welcome:
        await p.ws.close()
        p = Participant(welcome["redirect"], p.token)
        welcome = await p.connect()
        assert "redirect" not in welcome  # the home worker keeps it
    return p, welcome


async def test_rooms_are_placed_on_workers_and_media_stays_on_one(workers):
    port = workers.port
    homes: dict[str, set[str]] = {}
    clients = []
    for r in range(8):
        room = f"dock-{r}"
        for i in range(3):
            p, welcome = await _placed(workers, f"u{i}", room)
            await p.join(room)
            clients.append(p)
            homes.setdefault(room, set()).add(welcome["node"])
            assert p.url in (f"ws://127.0.0.1:{port + 2}/ws", f"ws://127.0.0.1:{port + 4}/ws",
                             workers.url)
    assert all(len(nodes) == 1 for nodes in homes.values()), homes  # a room, one worker
    used = {n for nodes in homes.values() for n in nodes}
    assert used == {"dock-w0", "dock-w1"}, homes  # 8 rooms: both workers have some
    for p in clients:
        await p.close()

    room = "dock-media"
    pub, _ = await _placed(workers, "warehouse-cam", room)
    viewer, welcome = await _placed(workers, "seller", room)
    try:
        await pub.join(room)
        published = await pub.publish()
        await viewer.join(room)
        await viewer.request("subscribe", track_ids=[t["track_id"] for t in published["tracks"]])
        assert await wait_until(lambda: viewer.video() and viewer.video()[0].frames > 20, 30)
        # nothing crossed between the workers: the home worker forwarded it itself
        # (the shared port's /metrics are any worker's: ask the home worker's own port)
        home_port = port + 2 + 2 * int(welcome["node"].removeprefix("dock-w"))
        metrics = NodeProcess.metrics(_At(home_port))
        assert metrics["dockcast_packets_forwarded_total"] > 20
        assert not any(k.startswith("dockcast_trunk_flows{") and v for k, v in metrics.items())
    finally:
        await pub.close()
        await viewer.close()


class _At:
    """`NodeProcess.metrics` of a worker's own port."""

    def __init__(self, port: int) -> None:
        self.http = f"http://127.0.0.1:{port}"


async def test_a_killed_worker_is_started_again(workers):
    supervisor = workers.proc.pid
    first = _worker_pid(supervisor, 1)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    # the supervisor starts it again; it listens on its own port and serves its rooms
    assert await wait_until(lambda: (_worker_pid(supervisor, 1) not in (None, first)
                                     and _listening(workers.port + 4)), 30)
    room = next(f"r{i}" for i in range(100) if _home(f"r{i}") == "dock-w1")
    for _ in range(50):  # once the directory lists it again, its rooms go to it
        p, welcome = await _placed(workers, "late", room)
        await p.close()
        if welcome["node"] == "dock-w1":
            break
        await asyncio.sleep(0.2)
    assert welcome["node"] == "dock-w1"
    assert "exited with -9; starting it again" in workers.log()


def _home(room: str) -> str | None:
    from dockcast.workers import home_worker

    return home_worker(room, ["dock-w0", "dock-w1"])


def test_a_second_server_on_the_port_is_refused(workers, tmp_path):
    other = subprocess.run(
        [sys.executable, "-m", "dockcast.cli", "serve", "--port", str(workers.port), "--workers", "2",
         "--data-dir", str(tmp_path / "other"), "--api-key", API_KEY, "--api-secret", API_SECRET],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert other.returncode == 2
    assert f"{workers.port}" in other.stderr and "in use" in other.stderr


def test_sigterm_stops_the_workers_and_the_redis(workers):
    supervisor = workers.proc.pid
    kids = _children(supervisor)
    assert len(kids) == 3  # two workers and the private redis-server
    assert (workers.data_dir / "run" / "redis.sock").exists()
    assert oct((workers.data_dir / "run").stat().st_mode & 0o777) == "0o700"
    assert workers.stop() == 0
    for pid in kids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    log = workers.log_path.read_text()
    assert "Traceback" not in log
    assert "workers: stopped" in log and log.count("stopped") >= 3


async def test_a_room_open_on_another_worker_goes_on_there(workers):
    # a room opened on the worker that is not its home (a client that came to that
    # worker's own port, as after a restart): later members are sent there, not home
    room = next(f"s{i}" for i in range(100) if _home(f"s{i}") == "dock-w1")
    first = Participant(f"ws://127.0.0.1:{workers.port + 2}/ws", workers.token("first", room=room))
    welcome = await first.connect()
    assert welcome["node"] == "dock-w0" and welcome["redirect"].endswith(f":{workers.port + 4}/ws")
    await first.join(room)  # (it stays: redirect is advice)
    try:
        # the home worker hears of the join through the room's events (Redis pub/sub)
        for _ in range(40):
            p, welcome = await _placed(workers, "probe", room)
            await p.close()
            if welcome["node"] == "dock-w0":
                break
            await asyncio.sleep(0.05)
        for i in range(4):
            p, welcome = await _placed(workers, f"later-{i}", room)
            await p.close()
            assert welcome["node"] == "dock-w0", i
    finally:
        await first.close()


def test_a_killed_supervisor_takes_its_workers_and_redis_with_it(workers):
    kids = _children(workers.proc.pid)
    assert len(kids) == 3
    workers.kill()  # SIGKILL: no chance to stop anything itself
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in kids):
        assert time.monotonic() < deadline, [pid for pid in kids if _alive(pid)]
        time.sleep(0.1)
    assert not _listening(workers.port) and not _listening(workers.port + 2)


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


async def test_room_list_shows_every_workers_rooms(workers):
    members = []
    homes = {}
    for r in range(6):
        room = f"list-{r}"
        p, welcome = await _placed(workers, f"m{r}", room)
        await p.join(room)
        members.append(p)
        homes[room] = welcome["node"]
    assert set(homes.values()) == {"dock-w0", "dock-w1"}, homes
    try:
        for own in (workers.port + 2, workers.port + 4):
            admin = Participant(f"ws://127.0.0.1:{own}/ws", workers.token("ops", room=None, grants=("admin",)))
            await admin.connect()
            listed = (await admin.request("room.list"))["rooms"]
            await admin.ws.close()
            assert sorted(r["room"] for r in listed) == sorted(homes), own
            assert all(len(r["participants"]) == 1 for r in listed)
        # an admin token for one room sees that room, wherever it is
        room = next(r for r, node in homes.items() if node == "dock-w1")
        admin = Participant(f"ws://127.0.0.1:{workers.port + 2}/ws",
                            workers.token("ops", room=room, grants=("admin",)))
        await admin.connect()
        assert [r["room"] for r in (await admin.request("room.list"))["rooms"]] == [room]
        await admin.ws.close()
        # an admin on worker 0 closes a room of worker 1, removes a participant there
        others = [r for r, node in homes.items() if node == "dock-w1"]
        admin = Participant(f"ws://127.0.0.1:{workers.port + 2}/ws",
                            workers.token("ops", room=None, grants=("admin",)))
        await admin.connect()
        await admin.request("room.close", room=others[0])
        member = members[list(homes).index(others[0])]
        closed = await member.next_event("room_closed")
        assert closed["reason"] == "closed"
        assert len(others) >= 2  # (the names hash so: the placement is deterministic)
        room = others[1]
        listed = {r["room"]: r for r in (await admin.request("room.list"))["rooms"]}
        pid = listed[room]["participants"][0]["participant_id"]
        await admin.request("participant.remove", room=room, participant_id=pid)
        removed = await members[list(homes).index(room)].next_event("room_closed")
        assert removed["reason"] == "removed"
        listed = sorted(r["room"] for r in (await admin.request("room.list"))["rooms"])
        assert others[0] not in listed
        await admin.ws.close()
    finally:
        for p in members:
            await p.close()


async def test_a_watcher_hears_a_room_served_by_another_worker(workers):
    room = next(f"w{i}" for i in range(100) if _home(f"w{i}") == "dock-w1")
    watcher = Participant(f"ws://127.0.0.1:{workers.port + 2}/ws",
                          workers.token("ops", room=None, grants=("admin",)))
    await watcher.connect()
    await watcher.request("events.subscribe", rooms=[room])
    member, welcome = await _placed(workers, "inspector", room)
    try:
        assert welcome["node"] == "dock-w1"
        await member.join(room)
        joined = await watcher.next_event("participant_joined")
        assert joined["room"] == room
        await member.request("send", topic="status", payload={"stage": "customs"}, msg_id="m-1")
        message = await watcher.next_event("message")
        assert message["room"] == room and message["payload"] == {"stage": "customs"}
    finally:
        await member.close()
        await watcher.ws.close()
