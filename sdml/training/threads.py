"""How many CPU threads torch gets when the config says ``threads = 0``.

Torch's default, one thread per core, is fastest on an idle machine and collapses on a busy one:
its OpenMP threads meet at every operator, so one descheduled thread stalls the others. Measured
on 2 cores with the smoke profile: idle, 2 threads 595 images/s and 1 thread 370; with one core
held by a spinning process, 2 threads 190 and 1 thread 360; under a load of 6-8, 2 threads 27
and 1 thread 225-238. So the rule takes the cores that are free now, measured over a short
window from ``/proc/stat`` (this process's own time left out), and never more than
:data:`MAX_AUTO` threads (a guard for large machines, where the same stalls grow with the thread
count; it was not tuned here, where only 2 cores were available):

    threads = clamp(round(cores - busy_cores), 1, min(cores, MAX_AUTO))

Where ``/proc/stat`` is missing (not Linux), ``min(cores, MAX_AUTO)``.
"""
from __future__ import annotations

import os
import time

MAX_AUTO = 8


def choose_threads(cores: int, busy_cores: float | None, max_threads: int = MAX_AUTO) -> int:
    """The rule of the module docstring (pure)."""
    top = max(1, min(cores, max_threads))
    if busy_cores is None:
        return top
    return max(1, min(top, int(cores - busy_cores + 0.5)))


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    return total - idle, total


def _own_jiffies() -> int:
    """utime + stime of this process (all its threads), in jiffies."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def busy_cores(window_s: float = 0.3) -> float | None:
    """Cores kept busy by other processes over the next ``window_s`` seconds (None: unknown)."""
    try:
        busy0, total0 = _cpu_jiffies()
        own0 = _own_jiffies()
        time.sleep(window_s)
        busy1, total1 = _cpu_jiffies()
        own1 = _own_jiffies()
    except (OSError, ValueError, IndexError):
        return None
    cores = os.cpu_count() or 1
    if total1 <= total0:
        return None
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / (total1 - total0) * cores


def cpu_threads(requested: int) -> int:
    """``requested`` when set, else the thread count the rule picks now."""
    if requested:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return choose_threads(cores or 1, busy_cores())
