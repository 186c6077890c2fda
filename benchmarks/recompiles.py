"""How often torch.compile compiles and recompiles while ganzoo's real Trainer trains each architecture.

With ``compile`` on, the Engine wraps every network in ``torch.compile``, and the
phases call the same compiled networks in different states (fakes made under
no_grad, inputs that do or do not require grad, networks frozen in turn). A
change that fails one of dynamo's guards recompiles the network; past
``torch._dynamo.config.recompile_limit`` compiles of one function dynamo runs it
eagerly. Phases with ``eager=True`` call the uncompiled networks.

Per case (architecture x size) dynamo is reset, the Trainer is built on synthetic
images in a temporary run dir and trains two lazy-regularisation windows (the lcm
of the phase intervals) plus two steps. Dynamo's own records are read after step
0, after the first window and at the end: frames compiled (``counters["frames"]``),
unique graphs and graph breaks (``counters``), recompiles (compiles with a
``recompile_reason`` in ``torch._dynamo.utils.get_compilation_metrics()``), each
with its step, phase and guard failures (``torch._dynamo.utils.guard_failures``),
and recompiles refused at the limit. ``TORCH_LOGS=recompiles`` shows the same reasons live.

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
import warnings
from pathlib import Path

import torch
import torch._dynamo
from torch._dynamo.utils import guard_failures

from ganzoo import config, registry
from ganzoo.bench.compiles import frame_compiles, reset, train_counting
from ganzoo.bench.training import lazy_window
from ganzoo.data.embedded import COUNT as EMBEDDED_COUNT
from ganzoo.testing import synthetic_data
from ganzoo.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ganzoo-wgan-gp"  # the example plugin, imported from its source folder
FLAGS = {"device": "cpu", "compile": True, "steps": 10**9, "log_every": 10**9, "sample_every": 10**9,
         "checkpoint_every": 10**9}


def architectures(names: list[str] | None) -> dict:
    """The named architectures; by default every registered one and the wgan-gp example."""
    names = names or [entry.name for entry in registry.discover() if entry.usable] + ["wgan-gp"]
    if "wgan-gp" in names:
        sys.path.insert(0, str(EXAMPLE))
        from ganzoo_wgan_gp import WGANGP
    return {name: WGANGP() if name == "wgan-gp" else registry.get(name) for name in names}


class CompileLog:
    """A Trainer.timing hook: after each part of a step (a phase, "data", "ema") it tags the new compiles
    with (step, part) and gives each recompile the guard failures dynamo recorded for its function meanwhile."""

    def __init__(self, trainer: Trainer):
        self.trainer, self.events, self.seen = trainer, [], {}
        self.names = {(c.co_filename, c.co_firstlineno): c.co_qualname for net in trainer.nets.values()
                      for module in net.modules() for c in [type(module).forward.__code__]}

    def where(self, code) -> str:
        """A code object or a compile's record as Class.forward (file:line)."""
        path = Path(code.co_filename or "?")
        name = self.names.get((code.co_filename, code.co_firstlineno), code.co_name)
        return f"{name} ({path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{code.co_firstlineno})"

    @contextlib.contextmanager
    def __call__(self, part: str):
        step = self.trainer.step
        yield
        new = {self.where(code): found[self.seen.get(code, 0):] for code, found in guard_failures.items()}
        self.seen = {code: len(found) for code, found in guard_failures.items()}
        for m in frame_compiles()[len(self.events):]:  # a refused compile's record names no function
            key = next((k for k, found in new.items() if m.recompile_reason in found), None)
            reasons = new.pop(key) if key else [m.recompile_reason] if m.recompile_reason else []
            self.events.append({"step": step, "part": part, "compile_id": str(m.compile_id),
                                "function": key or self.where(m), "reasons": reasons,
                                "failed": m.fail_reason and m.fail_reason.splitlines()[0]})


def measure(arch, size: str) -> dict:
    """One case: fresh dynamo state, two lazy windows + 2 steps of real training, dynamo read three times."""
    reset()
    resolved = config.resolve(arch, preset="smoke" if size == "smoke" else None, data=None, flags=FLAGS)
    # The embedded size gets as many images as the embedded data, so fit_to_data decides as it would there.
    n = max(32, 2 * resolved.config.batch_size) if size == "smoke" else EMBEDDED_COUNT
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(arch, resolved, synthetic_data(arch, resolved.config, n=n), run_dir)
        trainer.timing = log = CompileLog(trainer)
        window, step_s = lazy_window(trainer), []
        with trainer.engine.numerics():
            build_s = time.perf_counter() - started
            counts = train_counting(trainer, 2 * window + 2, {"step0": 0, "window": window - 1}, step_s)
    return {"architecture": arch.name, "size": size, "preset": resolved.preset,
            "batch_size": resolved.config.batch_size, "window": window, "steps": len(step_s),
            "phases": [{"name": p.name, "interval": p.interval, "eager": p.eager} for p in trainer.phases],
            **counts["end"], "recompiles_after_step0": counts["end"]["recompiles"] - counts["step0"]["recompiles"],
            "recompiles_after_window": counts["end"]["recompiles"] - counts["window"]["recompiles"],
            "counts": counts, "compiles": log.events, "build_s": build_s, "step_s": step_s,
            "total_s": time.perf_counter() - started, "load_average": os.getloadavg()[0],
            "frame_compile_s": sum(m.entire_frame_compile_time_s or 0 for m in frame_compiles())}


def markdown(cases: list[dict]) -> str:
    lines = ["| architecture | size | batch | phases (name/interval, e = eager) | steps | frames | graphs | breaks "
             "| recompiles: all (in step 0 / after it / after window 1) | limit hits | step 0 s | total s |",
             "|---" * 12 + "|"]
    for c in cases:
        phases = " ".join(f"{p['name']}/{p['interval']}{'e' if p['eager'] else ''}" for p in c["phases"])
        lines.append(f"| {c['architecture']} | {c['size']} | {c['batch_size']} | {phases} | {c['steps']} "
                     f"| {c['frames']} | {c['graphs']} | {c['breaks']} | {c['recompiles']} "
                     f"({c['counts']['step0']['recompiles']} / {c['recompiles_after_step0']} / "
                     f"{c['recompiles_after_window']}) | {c['limit_hits']} | {c['step_s'][0]:.1f} "
                     f"| {c['total_s']:.1f} |")
    lines.append("")
    for c in cases:
        for e in (e for e in c["compiles"] if e["reasons"] or e["failed"]):
            lines.append(f"- {c['architecture']} {c['size']}: step {e['step']}, phase {e['part']}: "
                         f"{e['function']} [{e['compile_id']}]: {'; '.join(r.strip() for r in e['reasons'])}"
                         + (f" (refused: {e['failed']})" if e["failed"] else ""))
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", nargs="*", help="architectures (default: every registered one and wgan-gp)")
    parser.add_argument("--sizes", default="smoke", help="comma-separated: smoke, embedded (slow on a CPU)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--cold", action="store_true", help="turn inductor's on-disk caches off (cold compile times)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cold:
        torch._inductor.config.force_disable_caches = True
        warnings.filterwarnings("ignore", "dynamo_pgo force disabled")  # once per case, and expected
    torch._dynamo.utils.set_compilation_metrics_limit(10_000)
    cases = []
    for name, arch in architectures(args.arch).items():
        for size in args.sizes.split(","):
            cases.append(measure(arch, size))
            print(f"{name} {size}: {cases[-1]['recompiles']} recompiles, {cases[-1]['total_s']:.1f} s",
                  file=sys.stderr, flush=True)
    print(markdown(cases))
    if args.json:
        machine = {"processor": platform.processor(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
                   "threads": torch.get_num_threads(), "platform": platform.platform()}
        args.json.write_text(json.dumps({
            "torch": torch.__version__, "python": platform.python_version(), "machine": machine,
            "date": datetime.date.today().isoformat(), "command": sys.argv, "flags": FLAGS, "cold": args.cold,
            "recompile_limit": torch._dynamo.config.recompile_limit, "cases": cases}, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
