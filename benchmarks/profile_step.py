"""Where a training step spends its time: torch.profiler over steps of one bench row, ops grouped by kind.

The reason a ratio is what it is (ganzoo's default against the reference loop, say) is in what both
spend their time on: when most of a step is convolutions that both run through the same kernels
(oneDNN on a CPU, cuDNN on a GPU), no loop-level change can win much.

    python benchmarks/profile_step.py dcgan --size full --batch-size 64 --rows reference-loop,default
    python benchmarks/profile_step.py cyclegan --size full --resolution 128 --batch-size 1 --steps 3
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile

from ganzoo.bench.plan import plan_case
from ganzoo.bench.training import (REFERENCE, lazy_window, make_trainer, reference_loop_stepper,
                                   torch_default_numerics)
from ganzoo.train.engine import pick_device

KINDS = (  # (kind, substrings of an aten op's name), first match wins
    ("convolution", ("conv",)),
    ("normalisation", ("norm",)),
    ("optimizer", ("adam", "_foreach_", "lerp", "addcdiv", "addcmul")),
    ("matmul", ("mm", "linear", "matmul")),
)


def kind_of(name: str) -> str:
    low = name.lower()
    return next((kind for kind, keys in KINDS if any(key in low for key in keys)), "other")


def stepper(case, row: str, run_dir: str):
    """(call running one step, context it runs in, steps to profile: one lazy window at least)."""
    if row == "reference-loop":
        numerics = torch_default_numerics()
        numerics.__enter__()
        step, _, cfg = reference_loop_stepper(case.training)
        return step, numerics, lazy_window(case.arch.phases(cfg))
    options = {} if row == "default" else {**REFERENCE, **({"optimizer": "fused"} if row == "fused-adam" else {}),
                                           **({"channels_last": "on"} if row == "channels_last" else {}),
                                           **({"precision": "bf16"} if row == "bf16" else {})}
    trainer = make_trainer(case.training, options, run_dir)
    numerics = trainer.engine.numerics()
    numerics.__enter__()
    return trainer.train_step, numerics, lazy_window(trainer)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("arch")
    parser.add_argument("--size", default="full")
    parser.add_argument("--resolution", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", default="reference-loop,default",
                        help="comma-separated: reference-loop, reference, default, fused-adam, channels_last, bf16")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=0, help="steps to profile (default: one lazy window)")
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    sets = dict(item.split("=", 1) for item in args.sets)
    case = plan_case(args.arch, args.size, device, resolution=args.resolution, batch_size=args.batch_size,
                     sets=sets, inference=False, variants=[])
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for row in args.rows.split(","):
        with tempfile.TemporaryDirectory() as run_dir:
            step, numerics, window = stepper(case, row, run_dir)
            with contextlib.ExitStack() as stack:
                stack.callback(numerics.__exit__, None, None, None)
                for _ in range(args.warmup):
                    step()
                steps = args.steps or window
                with profile(activities=activities) as prof:
                    for _ in range(steps):
                        step()
                    if device.type == "cuda":
                        torch.cuda.synchronize()
        events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
        self_ms = {e.key: e.self_cpu_time_total / 1e3 / steps for e in events}
        total = sum(self_ms.values())
        by_kind: dict[str, float] = {}
        for name, ms in self_ms.items():
            by_kind[kind_of(name)] = by_kind.get(kind_of(name), 0.0) + ms
        print(f"\n{args.arch} {case.label} batch {case.resolved.config.batch_size}, {row}: {total:.1f} ms/step of "
              f"aten self time on the CPU side, {steps} steps profiled")
        print("  by kind: " + ", ".join(f"{kind} {ms:.1f} ms ({ms / total:.0%})"
                                        for kind, ms in sorted(by_kind.items(), key=lambda kv: -kv[1])))
        for name, ms in sorted(self_ms.items(), key=lambda kv: -kv[1])[:args.top]:
            print(f"  {ms:9.2f} ms  {ms / total:5.1%}  {name}")


if __name__ == "__main__":
    main()
