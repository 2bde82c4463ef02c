"""CPU time from /proc and machine facts."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time

from bench.cpu import (
    CpuMeter,
    MachineLoad,
    machine_facts,
    parse_stat,
    process_cpu,
    process_tree,
)


def test_parse_stat_with_a_hostile_command_name():
    fields = ["S"] + ["0"] * 10 + ["250", "50"] + ["0"] * 30
    times = parse_stat("123 (we ird) (name) " + " ".join(fields))
    ticks = os.sysconf("SC_CLK_TCK")
    assert times.user == 250 / ticks and times.system == 50 / ticks


def test_own_cpu_grows_while_busy():
    meter = CpuMeter({"me": os.getpid()})
    load = MachineLoad([os.getpid()])
    meter.start()
    load.start()
    before = process_cpu(os.getpid()).total
    x = 0
    while process_cpu(os.getpid()).total - before < 0.05:
        x += sum(range(1000))
    used = meter.stop()["me"]
    assert used["cpu_s"] >= 0.04 and used["wall_s"] > 0
    machine = load.stop()
    assert 0 <= machine["machine_busy_pct"] <= 100 and machine["harness_cpu_s"] >= 0.04


def test_machine_facts():
    facts = machine_facts()
    assert facts["cores"] >= 1 and facts["cpu_model"]
    assert "aiortc" in facts["versions"]


def test_a_server_with_children_counts_them(tmp_path):
    # an idle parent whose child spins: mediasoup's node and its worker, in miniature
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys; subprocess.run([sys.executable, '-c', 'while True: pass'])"])
    child = None
    try:
        deadline = time.monotonic() + 30
        while len(tree := process_tree(parent.pid)) < 2:
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.02)
        child = tree[1]
        meter = CpuMeter({"tree": parent.pid, "alone": parent.pid}, with_children=("tree",))
        meter.start()
        before = process_cpu(child).total
        while process_cpu(child).total - before < 0.1:
            assert time.monotonic() < deadline, "the child never ran"
            time.sleep(0.02)
        used = meter.stop()
        assert used["tree"]["processes"] == 2 and used["alone"]["processes"] == 1
        assert used["tree"]["cpu_s"] >= 0.09
        assert used["alone"]["cpu_s"] < used["tree"]["cpu_s"] - 0.05
    finally:
        for pid in (child, parent.pid):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        parent.wait(10)


def test_process_tree_of_a_lone_process_is_itself():
    tree = process_tree(os.getpid())
    assert tree[0] == os.getpid() and os.getppid() not in tree


def test_the_emulated_network_under_a_server_is_not_the_server():
    # a cascade's launcher starts WAN relays beside its nodes: they are the network
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys; "
                               "a = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                               "b = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', "
                               "'bench.wanrelay']); a.wait()"])
    try:
        deadline = time.monotonic() + 30
        while not any(b"bench.wanrelay" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
                      for pid in _children(parent.pid)):
            assert time.monotonic() < deadline, "the children never started"
            time.sleep(0.02)
        assert len(_children(parent.pid)) == 2
        tree = process_tree(parent.pid)
        assert len(tree) == 2 and tree[0] == parent.pid
        assert b"bench.wanrelay" not in pathlib.Path(f"/proc/{tree[1]}/cmdline").read_bytes()
    finally:
        for pid in [*_children(parent.pid), parent.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait(10)


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(entry))
    return out
