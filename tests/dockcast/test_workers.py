"""`dockcast.workers`: placement by rendezvous hashing, the worker's role, the
supervisor's command lines (the processes themselves: tests/e2e/test_workers.py)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockcast.config import ConfigError, load_config
from dockcast.workers import (
    ROLE_ENV,
    Supervisor,
    WorkerRole,
    home_worker,
    worker_count,
    worker_port,
    worker_url,
)

rooms = st.text(min_size=1, max_size=40)
node_sets = st.lists(st.text(alphabet="abcdefw0123456789-", min_size=1, max_size=12),
                     min_size=1, max_size=8, unique=True)


@given(rooms, node_sets)
def test_every_node_computes_the_same_home(room, nodes):
    assert home_worker(room, nodes) == home_worker(room, list(reversed(nodes)))
    assert home_worker(room, nodes) in nodes


@given(rooms, node_sets, st.data())
def test_a_node_going_moves_only_its_own_rooms(room, nodes, data):
    gone = data.draw(st.sampled_from(nodes))
    before = home_worker(room, nodes)
    after = home_worker(room, [n for n in nodes if n != gone])
    if before != gone:
        assert after == before
    elif len(nodes) > 1:
        assert after != gone


def test_no_node_no_home():
    assert home_worker("dock-1", []) is None


def test_rooms_spread_over_workers():
    nodes = [f"node-x-w{i}" for i in range(4)]
    homes = [home_worker(f"shipment-{i}", nodes) for i in range(2000)]
    for n in nodes:  # each about a quarter
        assert 400 < homes.count(n) < 600, [homes.count(m) for m in nodes]


def test_role_round_trips_and_checks_its_parent():
    role = WorkerRole("dock", 1, 2, 9000, os.getppid())
    assert WorkerRole.from_env({ROLE_ENV: role.to_env()}) == role
    assert role.node_id == "dock-w1" and role.sibling_ids == ["dock-w0", "dock-w1"]
    assert WorkerRole.from_env({}) is None
    with pytest.raises(ConfigError, match="supervisor"):
        WorkerRole.from_env({ROLE_ENV: WorkerRole("dock", 1, 2, 9000, os.getpid() + 99999).to_env()})
    for bad in ("dock,1,2", "dock,x,2,9000,1", f"dock,2,2,9000,{os.getppid()}",
                f",0,2,9000,{os.getppid()}", f"dock,0,2,70000,{os.getppid()}"):
        with pytest.raises(ConfigError):
            WorkerRole.from_env({ROLE_ENV: bad})


def test_worker_ports_and_urls():
    config = load_config({"port": 8765}, environ={})
    assert [worker_port(8765, i) for i in range(3)] == [8767, 8769, 8771]
    assert worker_url(config, 8767) == "ws://127.0.0.1:8767/ws"
    public = load_config({"public_url": "wss://media.example.com:443/ws"}, environ={})
    assert worker_url(public, 8769) == "wss://media.example.com:8769/ws"
    wildcard = load_config({"host": "0.0.0.0"}, environ={})
    assert worker_url(wildcard, 8767) == "ws://127.0.0.1:8767/ws"


def test_worker_count_and_fanout_threads():
    assert worker_count(load_config({}, environ={})) == 1
    assert worker_count(load_config({"workers": 0}, environ={})) == (os.cpu_count() or 1)
    cores = os.cpu_count() or 1
    # workers share the cores: a worker per core leaves none for fan-out helpers
    assert load_config({"workers": cores}, environ={}).resolved_fanout_threads == 0
    assert load_config({"workers": 1}, environ={}).resolved_fanout_threads == min(cores - 1, 3)
    with pytest.raises(ConfigError, match="workers"):
        load_config({"workers": -1}, environ={})
    assert load_config({}, environ={"DOCKCAST_WORKERS": "3"}).workers == 3


def test_the_worker_command_keeps_secrets_off_the_command_line():
    secret = "s" * 40
    config = load_config({"port": 9000, "workers": 2, "api_key": "k", "api_secret": secret,
                          "api_keys": "old:" + "o" * 40, "node_id": "dock"}, environ={})
    sup = Supervisor(config, {"port": 9000, "workers": 2, "api_key": "k", "api_secret": secret,
                              "api_keys": "old:" + "o" * 40, "node_id": "dock", "host": None})
    argv, env = sup.command(1, "unix:///tmp/r.sock")
    assert secret not in " ".join(argv) and "o" * 40 not in " ".join(argv)
    assert env["DOCKCAST_API_SECRET"] == secret and env["DOCKCAST_API_KEYS"] == "old:" + "o" * 40
    flags = dict(zip(argv[4::2], argv[5::2]))
    assert flags["--node-id"] == "dock-w1" and flags["--redis"] == "unix:///tmp/r.sock"
    assert flags["--trunk-port"] == "9005" and flags["--public-url"] == "ws://127.0.0.1:9004/ws"
    assert flags["--port"] == "9000"  # the shared port
    group, index, count, port, pid = env[ROLE_ENV].split(",")
    assert (group, index, count, port, int(pid)) == ("dock", "1", "2", "9004", os.getpid())


class _Proc:
    def __init__(self) -> None:
        self.code: int | None = None
        self.pid = 4242

    def poll(self) -> int | None:
        return self.code


def test_a_worker_that_keeps_failing_is_started_again_ever_later(monkeypatch):
    import types

    from dockcast import workers

    clock = [100.0]
    monkeypatch.setattr(workers, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    sup = Supervisor(load_config({"workers": 2, "node_id": "dock"}, environ={}), {})
    started: list[int] = []

    def start(index: int, redis_url: str) -> None:
        started.append(index)
        sup.procs[index] = _Proc()

    monkeypatch.setattr(sup, "_start", start)
    start(0, "r"), start(1, "r")
    waits = []
    for _ in range(7):  # worker 1 dies as soon as it starts, again and again
        sup.procs[1].code = 1
        sup._supervise("r")
        assert sup.procs[1] is None
        waits.append(sup.next_start[1] - clock[0])
        clock[0] += waits[-1] - 0.01
        sup._supervise("r")
        assert sup.procs[1] is None  # not before its time
        clock[0] += 0.02
        sup._supervise("r")
        assert sup.procs[1] is not None
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert started.count(0) == 1  # the other worker was left alone
    # once it has run a while, the next failure waits 1 s again
    clock[0] += 31.0
    sup._supervise("r")
    sup.procs[1].code = -9
    sup._supervise("r")
    assert sup.next_start[1] - clock[0] == 1.0
