"""Interval metrics without a host sync: one stacked copy per log point, read once it has landed.

At a log point the trainer stacks the interval's sums (averaged over the ranks:
an all-reduce, not a host sync) and the SkipCounter's values into ONE tensor;
``submit`` copies it to the host with ``non_blocking=True`` (into pinned memory
on CUDA) and records a CUDA event. The record and the divergence decision are
completed later by ``ready``:

- one process on CUDA: at any later step whose ``event.query()`` says done (no wait);
- several ranks on CUDA: at the next log point, for the records before it, so every
  rank decides at the same step (they landed an interval ago; the wait is nil);
- ``force=True`` (before a checkpoint and at the end of the run): everything, waiting;
- on the CPU the copy is complete at once: a record lands at its own log point,
  exactly as a blocking read did.

Interval times come from the same clock: CUDA timing events on the stream (the
wall time the device saw between two log points, idle gaps included), the host's
perf_counter on the CPU. See ganzoo.train.host_reads for how "no sync" is tested.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import torch

from .host_reads import permitted

KEPT = "_finite/"  # the interval's count of finite losses, per phase (never written)


@dataclass
class Landed:
    """A submitted interval whose values are on the host: ``values`` in ``names`` order, then ``extra``."""
    step: int
    steps: int  # training steps in the interval
    seconds: float
    sums: dict[str, float]
    counts: dict[str, int]
    extra: list[float]
    host: dict[str, float] = field(default_factory=dict)  # measured on the host, written as they are (data_wait)


@dataclass
class _Pending:
    host: torch.Tensor
    event: object  # torch.cuda.Event or None (the CPU: complete at once)
    start: object
    end: object
    step: int
    steps: int
    names: list[str]
    counts: dict[str, int]
    measured: dict[str, float] = field(default_factory=dict)


class MetricsBuffer:
    """Deferred device-to-host copies of interval metrics, completed in submission order.

    ``agreed``: several ranks, so records complete only at log points (see the module docstring).
    """

    def __init__(self, device: torch.device, agreed: bool = False):
        self.cuda = device.type == "cuda"
        self.agreed = agreed
        self.pending: deque[_Pending] = deque()

    def mark(self):
        """A point in the stream of work, for interval times: a recorded timing event, or perf_counter on the CPU."""
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def submit(self, values: torch.Tensor, names: list[str], counts: dict[str, int], start, step: int,
               steps: int, host: dict[str, float] | None = None) -> None:
        """Start copying ``values`` (1-D: ``names``' sums, then extra values) to the host; nothing is read.
        ``host``: values already on the host, handed back with the interval."""
        values = values.detach().to(torch.float64)
        end = self.mark()
        if self.cuda:
            copy = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            copy.copy_(values, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            copy, event = values, None
        self.pending.append(_Pending(copy, event, start, end, step, steps, list(names), dict(counts),
                                     dict(host or {})))

    def ready(self, force: bool = False, log_point: bool = False) -> list[Landed]:
        """The records that have landed, oldest first (``force``: all of them, waiting for the device)."""
        out = []
        while self.pending:
            item = self.pending[0]
            if item.event is not None and not (self.agreed or force) and not item.event.query():
                break
            if item.event is not None and self.agreed and not force and not (log_point and len(self.pending) > 1):
                break
            if item.event is not None and (self.agreed or force):
                item.event.synchronize()  # forced, or an interval old under several ranks: in practice landed
            out.append(self._read(self.pending.popleft()))
        return out

    def clear(self) -> None:
        """Forget what is in flight (a rollback: those steps are undone)."""
        self.pending.clear()

    def _read(self, item: _Pending) -> Landed:
        with permitted("metrics"):
            values = item.host.tolist()
        if item.event is None:
            seconds = item.end - item.start
        else:
            seconds = item.start.elapsed_time(item.end) / 1000
        n = len(item.names)
        return Landed(item.step, item.steps, max(seconds, 1e-9), dict(zip(item.names, values[:n])), item.counts,
                      values[n:], item.measured)


def interval_values(landed: Landed) -> dict[str, float]:
    """Means over the interval: loss/<phase> over its finite losses (absent if none was), nonfinite/<phase> the
    skipped steps (absent if none was), anything else logged by the architecture over its count."""
    sums, values = landed.sums, {}
    for key, total in sums.items():
        if key.startswith(KEPT):
            continue
        if key.startswith("nonfinite/"):
            if total > 0:
                values[key] = round(total)
        elif key.startswith("loss/") and KEPT + key[len("loss/"):] in sums:
            kept = sums[KEPT + key[len("loss/"):]]
            if kept > 0:
                values[key] = total / kept
        else:
            values[key] = total / landed.counts[key]
    return values
