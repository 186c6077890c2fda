"""Timed regions that mean what they say: device work finished, warm-up excluded, medians kept.

On CUDA each region is closed by ``torch.cuda.synchronize`` so the time is the
device's, not the launch's. Peak memory is the CUDA allocator's peak on GPUs
and the process's peak resident set on the CPU (reset through
/proc/self/clear_refs where Linux allows it, so each measurement starts fresh).
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import torch


def synchronizer(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def summary(times: list[float]) -> dict[str, float]:
    """Median, mean and spread of a list of seconds."""
    ordered = sorted(times)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"median_s": statistics.median(ordered), "mean_s": statistics.fmean(ordered), "p10_s": pick(0.10),
            "p90_s": pick(0.90), "p99_s": pick(0.99), "repeats": len(ordered)}


def time_calls(run: Callable[[], object], device: torch.device, repeats: int, min_seconds: float = 0.0,
               warmup: int = 2) -> dict[str, float]:
    """The one timing loop of the suite (training steps, inference calls, benchmarks/onnx_speed.py).

    ``warmup`` untimed calls, then at least ``repeats`` timed calls and at least
    ``min_seconds`` of them, each closed by a device synchronisation; the summary
    of the per-call seconds. Per-call times are what the p99 latency and the
    spread of training steps need, which is why this is not
    ``torch.utils.benchmark.Timer``: its ``blocked_autorange`` reports means of
    blocks of calls, and its ``timeit`` runs uncounted warm-up calls before every
    measurement (a training step would advance the run) on one thread by default.
    """
    sync = synchronizer(device)
    for _ in range(warmup):
        run()
    sync()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - started < min_seconds:
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return summary(times)


class PartTimer:
    """Installed as ``Trainer.timing``: seconds per part of a step, synchronised around each part."""

    def __init__(self, device: torch.device):
        self.sync = synchronizer(device)
        self.totals: dict[str, float] = defaultdict(float)
        self.enabled = False

    @contextlib.contextmanager
    def __call__(self, part: str):
        if not self.enabled:
            yield
            return
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.totals[part] += time.perf_counter() - start


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak resident set


def peak_memory_bytes(device: torch.device) -> dict[str, float | str]:
    if device.type == "cuda":
        return {"peak_memory_bytes": torch.cuda.max_memory_allocated(device), "memory_kind": "CUDA allocator peak"}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return {"peak_memory_bytes": int(line.split()[1]) * 1024, "memory_kind": "process peak RSS"}
    except OSError:
        pass
    return {"peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "memory_kind": "process peak RSS (since start)"}
