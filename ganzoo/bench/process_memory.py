"""The memory a process tree uses while it runs, read from /proc (Linux), for data benchmarks and tests.

Two figures answer "does training memory grow with the dataset, and do ranks
share it": RssAnon, the private (anonymous) pages a process holds, which a
memory-mapped dataset does not add to; and PSS, the proportional set size, where
a page shared by k processes counts 1/k to each, so that summed over the ranks
of a job the page cache's one copy of the data counts once.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children by their parent id in /proc/N/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


def field_bytes(path: str, name: str) -> int:
    """A "Name:   N kB" line of a /proc file in bytes; 0 when the process or the line is gone."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def command_line(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def trains(pid: int) -> bool:
    """Whether ``pid`` is a process that trains: `ganzoo train` without --nproc-per-node (a rank, or the one
    process), not the launcher or torchrun."""
    args = command_line(pid)
    launches = any(a.startswith(b"--nproc-per-node") or a.endswith(b"torchrun") for a in args)
    return any(a.endswith(b"ganzoo") for a in args) and b"train" in args and not launches


class MemorySampler(threading.Thread):
    """Samples the processes under ``pid`` that ``select`` accepts, every ``interval`` seconds, keeping peaks:
    of the largest single RssAnon, of RssAnon summed, and of PSS summed. Use as a context manager."""

    def __init__(self, pid: int, select: Callable[[int], bool] = trains, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.select, self.interval = pid, select, interval
        self._done = threading.Event()
        self.peak_anon = self.peak_anon_sum = self.peak_pss_sum = 0
        self.processes = 0

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            time.sleep(self.interval)

    def sample(self) -> None:
        pids = [p for p in descendants(self.pid) if self.select(p)]
        if not pids:
            return
        anon = [field_bytes(f"/proc/{p}/status", "RssAnon") for p in pids]
        pss = [field_bytes(f"/proc/{p}/smaps_rollup", "Pss") for p in pids]
        self.processes = max(self.processes, len(pids))
        self.peak_anon = max(self.peak_anon, *anon)
        self.peak_anon_sum = max(self.peak_anon_sum, sum(anon))
        self.peak_pss_sum = max(self.peak_pss_sum, sum(pss))

    def __enter__(self) -> "MemorySampler":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self.join()
