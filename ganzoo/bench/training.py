"""Training speed: the reference configuration against ganzoo's fast path, each optimisation alone too.

The reference is what the original implementations run: eager, fp32 with
PyTorch's default numerics (no TF32 for matmuls, no cuDNN autotuning),
contiguous NCHW, the plain (per-parameter loop) Adam and data copied to the
device every step. Each optimisation is then switched on alone, and all of them
together ("fast"), in one process, so the ratios compare like with like.
Every variant trains through the real Trainer on synthetic images shaped as
the architecture's DataSpec.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass

import torch

from .. import config
from ..api import UNPAIRED
from ..testing import synthetic_data
from ..train.trainer import Trainer
from . import machine
from .timing import PartTimer, noisy_note, peak_memory_bytes, reset_peak_memory, synchronizer, time_calls

REFERENCE = {"precision": "fp32", "channels_last": "off", "compile": False, "optimizer": "plain",
             "data_on_device": "off", "tf32_matmul": False, "tf32_conv": True, "cudnn_benchmark": False}
OPTIMISATIONS = {  # name -> what it changes over the reference
    "tf32": {"tf32_matmul": True},
    "cudnn-benchmark": {"cudnn_benchmark": True},
    "device-data": {"data_on_device": "auto"},
    "fused-adam": {"optimizer": "fused"},
    "channels_last": {"channels_last": "on"},
    "bf16": {"precision": "bf16"},
    "compile": {"compile": True},
}

CUDA_ONLY = ("tf32", "cudnn-benchmark", "device-data", "bf16")


def variants_for(device: torch.device, names: list[str] | None = None) -> dict[str, dict]:
    """reference, each optimisation alone, and "fast" (all of them) for this device.

    On the CPU the data already lives where the model runs, so "device-data" is
    the reference itself, TF32 and cuDNN do not exist, and bf16 autocast has no
    fast kernels on most CPUs; these are left out there.
    """
    available = [n for n in OPTIMISATIONS if device.type == "cuda" or n not in CUDA_ONLY]
    chosen = available if names is None else [n for n in names if n not in ("reference", "fast")]
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise ValueError(f"unknown or unavailable variants on {device.type}: {', '.join(unknown)}; "
                         f"available: reference, {', '.join(available)}, fast")
    out = {"reference": dict(REFERENCE)}
    for name in chosen:
        out[name] = {**REFERENCE, **OPTIMISATIONS[name]}
    if names is None or "fast" in names:
        fast = dict(REFERENCE)
        for name in available:
            fast.update(OPTIMISATIONS[name])
        out["fast"] = fast
    return out


@dataclass
class TrainingCase:
    arch: object
    sets: dict
    data: str | None  # picks the preset, as `--data` does
    preset: str | None  # or names it
    batch_size: int | None
    device: torch.device


def count_flops_per_step(trainer: Trainer, steps: int) -> float:
    """FLOPs of ``steps`` training steps (forward, backward and double backward) counted by
    torch.utils.flop_counter, per step. Lazy regularisers are included in proportion."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        for _ in range(steps):
            trainer.train_step()
    return counter.get_total_flops() / steps


def lazy_window(trainer: Trainer) -> int:
    """Steps after which every phase has run its share: the lcm of the phase intervals."""
    window = 1
    for phase in trainer.phases:
        window = window * phase.interval // math.gcd(window, phase.interval)
    return window


def make_trainer(case: TrainingCase, options: dict, run_dir: str) -> Trainer:
    """A Trainer for one variant that never logs, samples or checkpoints (the bench steps it by hand)."""
    flags = {"device": str(case.device), "steps": 10**9, "ema_kimg": 10.0, "log_every": 10**9,
             "sample_every": 10**9, "checkpoint_every": 10**9, **options}
    if case.batch_size:
        flags["batch_size"] = case.batch_size
    resolved = config.resolve(case.arch, preset=case.preset, data=case.data, sets=case.sets, flags=flags)
    batch = resolved.config.batch_size
    return Trainer(case.arch, resolved, synthetic_data(case.arch, resolved.config, n=max(256, 2 * batch)), run_dir)


def step_kind(trainer: Trainer):
    """The phases the next step runs: steps of one kind do the same work (lazy regularisers apart)."""
    return tuple(trainer.step % phase.interval == 0 for phase in trainer.phases)


def run_variant(case: TrainingCase, options: dict, warmup: int, steps: int, count_flops: bool = False) -> dict:
    """Time one variant: warm-up (compilation included) apart, then ``steps`` timed steps, then the
    per-part split on a few more steps, peak memory over the timed steps, FLOPs if asked."""
    sync = synchronizer(case.device)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = make_trainer(case, options, run_dir)
        batch = trainer.cfg.batch_size
        window = lazy_window(trainer)
        with trainer.engine.numerics():
            started = time.perf_counter()
            for _ in range(warmup):
                trainer.train_step()
            sync()
            warmup_s = time.perf_counter() - started
            reset_peak_memory(case.device)
            times = time_calls(trainer.train_step, case.device, repeats=max(steps, window), warmup=0,
                               kind=lambda: step_kind(trainer))
            memory = peak_memory_bytes(case.device)
            timer = PartTimer(case.device)
            trainer.timing, timer.enabled = timer, True
            for _ in range(window):
                trainer.train_step()
            timer.enabled = False
            flops = count_flops_per_step(trainer, window) if count_flops else None
    mean = times["mean_s"]
    kind = "pairs" if case.arch.data_spec(trainer.cfg).kind == UNPAIRED else "images"
    record = {**times, "batch_size": batch, "throughput_unit": f"{kind}/s",
              "throughput": batch / mean, "s_per_kimg": mean * 1000 / batch, "warmup_s": warmup_s,
              "parts_ms": {part: total / window * 1e3 for part, total in timer.totals.items()},
              **memory, "options": options,
              "arithmetic": machine.arithmetic(case.device, options["precision"])}
    if flops is not None:
        record["flops_per_step"] = flops
    return record


def bench_training(case: TrainingCase, variants: dict[str, dict], warmup: int, steps: int,
                   peak_override: float | None = None, echo=print) -> dict:
    """Every variant of one case, with ratios to the reference and model-FLOPs utilisation."""
    results = {}
    flops = None
    for name, options in variants.items():
        record = run_variant(case, options, warmup, steps, count_flops=flops is None)
        flops = record.pop("flops_per_step", flops)
        results[name] = record
        echo(f"  {name:16s} {record['median_s'] * 1e3:9.2f} ms/step (p10 {record['p10_s'] * 1e3:.2f}, "
             f"p90 {record['p90_s'] * 1e3:.2f})  {record['throughput']:9.1f} {record['throughput_unit']}  "
             f"warm-up {record['warmup_s']:.1f} s" + noisy_note(record))
    reference = results["reference"]["mean_s"]
    name = machine.device_name(case.device)
    for record in results.values():
        record["speedup_vs_reference"] = reference / record["mean_s"]
        record["tflops_per_s"] = flops / record["mean_s"] / 1e12 if flops else None
        peak = machine.peak_tflops(name, record["arithmetic"], peak_override)
        record["peak_tflops"] = peak
        record["mfu"] = record["tflops_per_s"] / peak if peak and record["tflops_per_s"] else None
    return {"flops_per_step": flops, "variants": results}
