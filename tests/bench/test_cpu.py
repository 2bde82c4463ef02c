"""CPU time from /proc and machine facts."""

from __future__ import annotations

import os

from bench.cpu import CpuMeter, MachineLoad, machine_facts, parse_stat, process_cpu


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
