"""Counting torch.compile's compiles and recompiles while a real Trainer steps.

Shared by ``benchmarks/recompiles.py`` (which reports them) and the
no-recompile test (which asserts them): a phase whose inputs change a dynamo
guard after warm-up (grad mode, requires_grad, a shape) recompiles its network
every time, which on a GPU costs seconds per step, so both read dynamo's own
records rather than timing anything.
"""

from __future__ import annotations

import torch
import torch._dynamo
from torch._dynamo.utils import counters, get_compilation_metrics, guard_failures


def reset() -> None:
    """Fresh dynamo state: no compiled code, counters, guard failures or compile records."""
    torch._dynamo.reset()
    counters.clear()
    guard_failures.clear()
    torch._dynamo.utils.clear_compilation_metrics()


def frame_compiles() -> list:
    """Dynamo's record of every frame compile so far (AOTAutograd's backward graphs have records of their own)."""
    return [m for m in get_compilation_metrics() if m.is_forward is not False]


def snapshot() -> dict:
    """Frames compiled, unique graphs, graph breaks, recompiles and recompiles refused at the limit, so far."""
    compiles = frame_compiles()
    return {"frames": counters["frames"]["ok"], "graphs": counters["stats"]["unique_graphs"],
            "breaks": sum(counters["graph_break"].values()),
            "recompiles": sum(m.recompile_reason is not None and m.fail_type is None for m in compiles),
            "limit_hits": sum("recompile limit" in (m.fail_reason or "") for m in compiles)}


def train_counting(trainer, steps: int, marks: dict[str, int], step_seconds: list | None = None) -> dict[str, dict]:
    """``steps`` real training steps; a snapshot named ``name`` after step index ``marks[name]``, and one at "end".

    Call inside ``trainer.engine.numerics()``, after :func:`reset`. ``step_seconds`` collects each step's time.
    """
    import time

    counts = {}
    for step in range(steps):
        before = time.perf_counter()
        trainer.train_step()
        if step_seconds is not None:
            step_seconds.append(time.perf_counter() - before)
        for name, at in marks.items():
            if step == at:
                counts[name] = snapshot()
    counts["end"] = snapshot()
    return counts
