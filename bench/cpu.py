"""CPU time of a process from ``/proc``, and facts about the machine a run measured on.

The machine is shared and noisy: a report names the CPU, the cores, and how busy the
rest of the machine was while it measured (:class:`MachineLoad`), so a reader can tell
a quiet run from a noisy one.
"""

from __future__ import annotations

import os
import pathlib
import platform
import time
from dataclasses import dataclass

__all__ = ["CpuTimes", "process_cpu", "process_tree", "CpuMeter", "MachineLoad", "machine_facts"]

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTimes:
    user: float    # seconds
    system: float  # seconds

    @property
    def total(self) -> float:
        return self.user + self.system

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user - other.user, self.system - other.system)


def parse_stat(text: str) -> CpuTimes:
    """utime and stime of a ``/proc/PID/stat`` line (all threads of the process)."""
    # the command name (field 2) may contain spaces and parentheses: split after it
    fields = text[text.rindex(")") + 2:].split()
    return CpuTimes(int(fields[11]) / _TICKS, int(fields[12]) / _TICKS)


def process_cpu(pid: int) -> CpuTimes:
    """CPU time used so far by process ``pid`` (raises OSError if it is gone)."""
    return parse_stat(pathlib.Path(f"/proc/{pid}/stat").read_text())


def _parent(pid: int) -> int | None:
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2:].split()[1])


NOT_THE_SERVER = (b"bench.wanrelay",)
"""Command-line words of processes that may run under a server's process but are not
the server: the WAN emulator a cascade's launcher stands between its nodes is the
network, and its CPU is not the system's."""


def _is_network(pid: int) -> bool:
    try:
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(word in cmdline for word in NOT_THE_SERVER)


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process descended from it now (its children, theirs, ...),
    less the emulated network (`NOT_THE_SERVER`) and what it started.

    A server may do its work in child processes (mediasoup: a ``node`` parent and a
    ``mediasoup-worker`` child); the CPU to measure is the whole tree's.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current != pid and _is_network(current):
            continue
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def _system_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from ``/proc/stat``."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return total - idle, total


class CpuMeter:
    """CPU used by a set of pids over a window: ``start()``, then ``stop()``.

    For the names in ``with_children`` the pid's descendants count too
    (:func:`process_tree`, looked up at ``start()`` and again at ``stop()``): a child
    born inside the window counts from zero; one that ended inside it is not counted.
    """

    def __init__(self, pids: dict[str, int], with_children: tuple[str, ...] = ()) -> None:
        self.pids = dict(pids)
        self.with_children = frozenset(with_children)
        self._start: dict[str, dict[int, CpuTimes]] = {}
        self._t0 = 0.0

    def _sample(self, name: str, pid: int) -> dict[int, CpuTimes]:
        """CPU so far of ``pid`` (raises OSError if it is gone) and, if asked, its tree."""
        out = {pid: process_cpu(pid)}
        if name in self.with_children:
            for member in process_tree(pid)[1:]:
                try:
                    out[member] = process_cpu(member)
                except OSError:
                    pass  # ended between the listing and the read
        return out

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = {name: self._sample(name, pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, dict[str, float]]:
        """Per name: ``cpu_s`` used in the window, ``wall_s``, ``core_pct`` (of one core),
        ``processes`` (how many were counted)."""
        wall = time.monotonic() - self._t0
        zero = CpuTimes(0.0, 0.0)
        out = {}
        for name, pid in self.pids.items():
            try:
                now = self._sample(name, pid)
            except OSError:
                continue
            used = zero
            for member, times in now.items():
                delta = times - self._start[name].get(member, zero)
                used = CpuTimes(used.user + delta.user, used.system + delta.system)
            out[name] = {"cpu_s": used.total, "user_s": used.user, "system_s": used.system,
                         "wall_s": wall, "core_pct": 100.0 * used.total / wall if wall else 0.0,
                         "processes": len(now)}
        return out


class MachineLoad:
    """How busy the whole machine was over a window, and how much of that was ours."""

    def __init__(self, own_pids: list[int] | None = None) -> None:
        self.own_pids = list(own_pids or [])
        self._sys0 = (0, 0)
        self._own0 = 0.0

    def _own(self) -> float:
        total = 0.0
        for pid in self.own_pids:
            try:
                total += process_cpu(pid).total
            except OSError:
                pass
        return total

    def start(self) -> None:
        self._sys0 = _system_ticks()
        self._own0 = self._own()

    def stop(self) -> dict[str, float]:
        busy1, total1 = _system_ticks()
        busy = (busy1 - self._sys0[0]) / _TICKS
        total = (total1 - self._sys0[1]) / _TICKS
        own = self._own() - self._own0
        cores = os.cpu_count() or 1
        return {
            "machine_busy_pct": 100.0 * busy / total if total else 0.0,
            "harness_cpu_s": own,
            # CPU that neither the server nor the load clients used: other people's work
            "others_cores": max(0.0, busy - own) / (total / cores) if total else 0.0,
        }


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> dict:
    """CPU model, cores, load averages, memory, kernel, Python and key library versions."""
    facts: dict = {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    try:
        affinity = os.sched_getaffinity(0)
        facts["usable_cores"] = len(affinity)
    except AttributeError:
        pass
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                facts["mem_total_mb"] = int(line.split()[1]) // 1024
    except OSError:
        pass
    versions = {}
    for name in ("aiortc", "aioice", "pylibsrtp", "av", "uvloop", "websockets"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # noqa: BLE001 - not installed
            pass
    facts["versions"] = versions
    return facts
