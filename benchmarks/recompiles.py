"""How often torch.compile compiles and recompiles while ganzoo's real Trainer trains each architecture.

With ``compile`` on, the Engine wraps every network in ``torch.compile`` and the
phases call the same compiled networks in different states: one network trains
while the other is frozen (``requires_grad_``), fakes are made under no_grad,
inputs do or do not require grad. Each such change can fail a dynamo guard and
recompile the network; past ``torch._dynamo.config.recompile_limit`` compiles of
one function, dynamo gives up and runs it eagerly. Phases with ``eager=True``
(double-backward regularisers) use the uncompiled networks and never compile.

Per case (architecture x size) this resets dynamo, builds the Trainer on
synthetic images in a temporary run dir and trains two full lazy-regularisation
windows (the lcm of the phase intervals) plus two steps, reading dynamo's own
records after step 0 (warm-up), after the first window and at the end:

- ``frames``: frames compiled (``counters["frames"]["ok"]``, recompiles included);
- ``graphs``: ``counters["stats"]["unique_graphs"]``; ``breaks``: graph breaks;
- ``recompiles``: compiles with a ``recompile_reason`` in
  ``torch._dynamo.utils.get_compilation_metrics()``, each with the step and part
  of the step (a phase's name) it happened in and every guard failure that caused
  it (``torch._dynamo.utils.guard_failures``); ``limit hit``: a compile that
  failed on the recompile limit.

Reproduce a single reason by hand with ``TORCH_LOGS=recompiles``.

    python benchmarks/recompiles.py --sizes smoke,embedded --threads 2 --json benchmarks/results/cpu-recompiles.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch._dynamo
from torch._dynamo.utils import counters, get_compilation_metrics, guard_failures

from ganzoo import config, registry
from ganzoo.bench.training import lazy_window
from ganzoo.data.embedded import COUNT as EMBEDDED_COUNT
from ganzoo.testing import synthetic_data
from ganzoo.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ganzoo-wgan-gp"  # the example plugin, imported from its source folder
FLAGS = {"device": "cpu", "compile": True, "steps": 10**9, "log_every": 10**9, "sample_every": 10**9,
         "checkpoint_every": 10**9}


def architectures(names: list[str] | None) -> dict:
    """The named architectures (default: every registered one, and the wgan-gp example)."""
    names = names or [entry.name for entry in registry.discover() if entry.usable] + ["wgan-gp"]
    if "wgan-gp" in names:
        sys.path.insert(0, str(EXAMPLE))
        from ganzoo_wgan_gp import WGANGP
    return {name: WGANGP() if name == "wgan-gp" else registry.get(name) for name in names}


def forward_compiles() -> list:
    """Dynamo's record of every frame compile so far (the backward graphs have records of their own)."""
    return [m for m in get_compilation_metrics() if m.is_forward is not False]


def snapshot() -> dict:
    compiles = forward_compiles()
    return {"frames": counters["frames"]["ok"], "graphs": counters["stats"]["unique_graphs"],
            "breaks": sum(counters["graph_break"].values()),
            "recompiles": sum(m.recompile_reason is not None and m.fail_type is None for m in compiles),
            "limit_hits": sum("recompile limit" in (m.fail_reason or "") for m in compiles)}


class CompileLog:
    """A Trainer.timing hook: after each part of a step (a phase, "data", "ema"), tags the new compiles
    with (step, part) and gives each recompile the guard failures dynamo recorded for its function meanwhile."""

    def __init__(self, trainer: Trainer):
        self.trainer, self.events, self.seen = trainer, [], {}
        self.names = {(c.co_filename, c.co_firstlineno): c.co_qualname for net in trainer.nets.values()
                      for module in net.modules() for c in [type(module).forward.__code__]}

    def where(self, m) -> str:
        """A compiled function (a code object or a compile's record) as Class.forward (file:line)."""
        path = Path(m.co_filename or "?")
        name = self.names.get((m.co_filename, m.co_firstlineno), m.co_name)
        return f"{name} ({path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{m.co_firstlineno})"

    @contextlib.contextmanager
    def __call__(self, part: str):
        step = self.trainer.step
        yield
        new = {self.where(code): reasons[self.seen.get(code, 0):] for code, reasons in guard_failures.items()}
        self.seen = {code: len(reasons) for code, reasons in guard_failures.items()}
        for m in forward_compiles()[len(self.events):]:  # a failed compile's record names no function
            key = next((k for k, found in new.items() if m.recompile_reason in found), None)
            reasons = new.pop(key) if key else [m.recompile_reason] if m.recompile_reason else []
            self.events.append({"step": step, "part": part, "compile_id": str(m.compile_id),
                                "function": key or self.where(m), "reasons": reasons,
                                "failed": m.fail_reason and m.fail_reason.splitlines()[0]})


def measure(arch, size: str) -> dict:
    """One case: fresh dynamo state, 2 lazy windows + 2 steps of real training, dynamo's counts read 3 times."""
    torch._dynamo.reset()
    counters.clear()
    guard_failures.clear()
    torch._dynamo.utils.clear_compilation_metrics()
    smoke = size == "smoke"
    resolved = config.resolve(arch, preset="smoke" if smoke else None, data=None, flags=FLAGS)
    # The embedded size gets as many images as the embedded data, so fit_to_data decides as it would there.
    n = max(32, 2 * resolved.config.batch_size) if smoke else EMBEDDED_COUNT
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(arch, resolved, synthetic_data(arch, resolved.config, n=n), run_dir)
        trainer.timing = log = CompileLog(trainer)
        window = lazy_window(trainer)
        points, seconds = {}, {}
        with trainer.engine.numerics():
            for step in range(2 * window + 2):
                trainer.train_step()
                if step == 0:
                    points["step0"], seconds["step0"] = snapshot(), time.perf_counter() - started
                if step == window - 1:
                    points["window"] = snapshot()
    points["end"], seconds["total"] = snapshot(), time.perf_counter() - started
    return {"architecture": arch.name, "size": size, "preset": resolved.preset, "batch_size": resolved.config.batch_size,
            "phases": [{"name": p.name, "interval": p.interval, "eager": p.eager} for p in trainer.phases],
            "window": window, "steps": 2 * window + 2, **points["end"],
            "recompiles_after_step0": points["end"]["recompiles"] - points["step0"]["recompiles"],
            "recompiles_after_window": points["end"]["recompiles"] - points["window"]["recompiles"],
            "counts": points, "seconds": seconds, "compiles": log.events,
            "compile_seconds": sum(m.entire_frame_compile_time_s or 0 for m in forward_compiles())}


def markdown(cases: list[dict]) -> str:
    lines = ["| architecture | size | batch | phases (interval, e = eager) | steps | frames | graphs | breaks "
             "| recompiles (step 0 / later / after window 1) | limit hits | step 0 s | total s |",
             "|---" * 12 + "|"]
    for c in cases:
        phases = " ".join(f"{p['name']}/{p['interval']}{'e' if p['eager'] else ''}" for p in c["phases"])
        lines.append(f"| {c['architecture']} | {c['size']} | {c['batch_size']} | {phases} | {c['steps']} "
                     f"| {c['frames']} | {c['graphs']} | {c['breaks']} | {c['recompiles']} "
                     f"({c['counts']['step0']['recompiles']} / {c['recompiles_after_step0']} / "
                     f"{c['recompiles_after_window']}) | {c['limit_hits']} "
                     f"| {c['seconds']['step0']:.1f} | {c['seconds']['total']:.1f} |")
    for c in cases:
        for e in (e for e in c["compiles"] if e["reasons"] or e["failed"]):
            lines.append(f"- {c['architecture']} {c['size']}: step {e['step']} phase {e['part']} recompiled "
                         f"{e['function']} [{e['compile_id']}]: {'; '.join(e['reasons'])}"
                         + (f" FAILED: {e['failed']}" if e["failed"] else ""))
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", nargs="*", help="architectures (default: every registered one and wgan-gp)")
    parser.add_argument("--sizes", default="smoke", help="comma-separated: smoke, embedded (slow on a CPU)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--cold", action="store_true", help="turn off inductor's on-disk caches (honest compile times)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cold:
        torch._inductor.config.force_disable_caches = True
    torch._dynamo.utils.set_compilation_metrics_limit(10_000)
    cases = []
    for name, arch in architectures(args.arch).items():
        for size in args.sizes.split(","):
            cases.append(measure(arch, size))
            print(f"{name} {size}: {cases[-1]['recompiles']} recompiles, {cases[-1]['seconds']['total']:.1f} s",
                  file=sys.stderr, flush=True)
    print(markdown(cases))
    if args.json:
        machine = {"processor": platform.processor(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
                   "threads": torch.get_num_threads(), "platform": platform.platform()}
        record = {"torch": torch.__version__, "python": platform.python_version(), "machine": machine,
                  "date": datetime.date.today().isoformat(), "command": sys.argv, "flags": FLAGS, "cold": args.cold,
                  "recompile_limit": torch._dynamo.config.recompile_limit, "cases": cases}
        args.json.write_text(json.dumps(record, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
