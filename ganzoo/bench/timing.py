"""Timed regions that mean what they say: device work finished, warm-up excluded, medians kept, noise flagged.

On CUDA each region is closed by ``torch.cuda.synchronize`` so the time is the
device's, not the launch's. Peak memory is the CUDA allocator's peak on GPUs
and the process's peak resident set on the CPU (reset through
/proc/self/clear_refs where Linux allows it, so each measurement starts fresh).

A measurement whose like calls spread more than ``NOISY_SPREAD`` (p90/p10) is
flagged ``noisy``: on an idle machine they stay within about 1.3 (see
docs/benchmarks.md), so a wider spread means something else took the machine.
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Hashable
from pathlib import Path

import torch

NOISY_SPREAD = 1.5  # p90/p10 of like calls above which a measurement is not to be trusted
BUSY = "the machine was busy"


def synchronizer(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def _pick(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spread(times: list[float]) -> float | None:
    """p90/p10 of calls that do the same work; None for fewer than 3 (no spread to judge)."""
    if len(times) < 3:
        return None
    ordered = sorted(times)
    return _pick(ordered, 0.90) / max(_pick(ordered, 0.10), 1e-12)


def summary(times: list[float], kinds: list[Hashable] | None = None) -> dict[str, float]:
    """Median, mean and spread of a list of seconds, and whether the spread is too wide to trust.

    ``kinds`` names the work of each call (a training step that runs a lazy
    regulariser is meant to be slower); the spread is taken over the most
    common kind, so only noise counts against it.
    """
    ordered = sorted(times)
    like = times
    if kinds is not None:
        groups: dict[Hashable, list[float]] = defaultdict(list)
        for kind, seconds in zip(kinds, times):
            groups[kind].append(seconds)
        like = max(groups.values(), key=len)
    ratio = spread(like)
    return {"median_s": statistics.median(ordered), "mean_s": statistics.fmean(ordered),
            "p10_s": _pick(ordered, 0.10), "p90_s": _pick(ordered, 0.90), "p99_s": _pick(ordered, 0.99),
            "repeats": len(ordered), "spread": ratio, "noisy": ratio is not None and ratio > NOISY_SPREAD}


def noisy_note(timed: dict) -> str:
    """What the console says after a measurement too spread to trust ("" for a steady one)."""
    return f"  NOISY: p90/p10 {timed['spread']:.2f}, {BUSY}" if timed.get("noisy") else ""


def time_calls(run: Callable[[], object], device: torch.device, repeats: int, min_seconds: float = 0.0,
               warmup: int = 2, kind: Callable[[], Hashable] | None = None) -> dict[str, float]:
    """The one timing loop of the suite (training steps, inference calls, benchmarks/onnx_speed.py).

    ``warmup`` untimed calls, then at least ``repeats`` timed calls and at least
    ``min_seconds`` of them, each closed by a device synchronisation; the summary
    of the per-call seconds. Per-call times are what the p99 latency and the
    spread of training steps need, which is why this is not
    ``torch.utils.benchmark.Timer``: its ``blocked_autorange`` reports means of
    blocks of calls, and its ``timeit`` runs uncounted warm-up calls before every
    measurement (a training step would advance the run) on one thread by default.
    ``kind()``, asked before each timed call, names the work it will do (see ``summary``).
    """
    sync = synchronizer(device)
    for _ in range(warmup):
        run()
    sync()
    times: list[float] = []
    kinds: list[Hashable] | None = None if kind is None else []
    started = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - started < min_seconds:
        if kinds is not None:
            kinds.append(kind())
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return summary(times, kinds)


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
