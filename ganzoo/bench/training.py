"""Training speed: the reference configuration against ganzoo's fast path, each optimisation alone too.

The reference is what the original implementations run: eager, fp32 with
PyTorch's default numerics (no TF32 for matmuls, no cuDNN autotuning),
contiguous NCHW, the plain (per-parameter loop) Adam and data copied to the
device every step. Each optimisation is then switched on alone, and all of them
together ("fast"), in one process, so the ratios compare like with like.
Every variant trains through the real Trainer on synthetic images shaped as
the architecture's DataSpec.

Two rows frame them: ``reference-loop``, the training loop of the code base the
architecture reproduces (``Architecture.reference_loop``: what users would
otherwise run), timed alike on batches of the same synthetic data; and
``default``, the Trainer with no options set (what ``ganzoo train ARCH`` runs on
the device). Every row's ``speedup_vs_reference_loop`` is the ratio users care about.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import tempfile
import time
from dataclasses import dataclass

import torch

from .. import config
from ..api import UNPAIRED, Architecture
from ..testing import synthetic_data
from ..train.feed import make_feed
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
REFERENCE_LOOP = "reference-loop"  # the reference code base's own loop: no Trainer, no options
DEFAULT = "default"  # the Trainer with no options set: TrainOptions as `ganzoo train` resolves them


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 has fast kernels here: on CUDA (checked by the Engine), or a CPU with bf16 instructions
    (AVX-512 BF16, AMX), which oneDNN uses for bf16 convolutions and matmuls."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and \
        bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def variants_for(device: torch.device, names: list[str] | None = None) -> dict[str, dict]:
    """reference-loop, reference, default, each optimisation alone, and "fast" (all of them) for this device.

    On the CPU the data already lives where the model runs, so "device-data" is
    the reference itself, and TF32 and cuDNN do not exist; these are left out
    there. bf16 autocast is measured on a CPU with native bf16 instructions
    (AVX-512 BF16 or AMX), where oneDNN runs bf16 convolutions at up to twice
    the fp32 rate; on other CPUs it is emulated (slower than fp32) and left out.
    "reference-loop" and "default" set no options (their dicts are empty);
    "reference" is always measured, as the other ratios are taken to it.
    """
    available = [n for n in OPTIMISATIONS
                 if device.type == "cuda" or n not in CUDA_ONLY or (n == "bf16" and native_bf16(device))]
    framing = (REFERENCE_LOOP, "reference", DEFAULT, "fast")
    chosen = available if names is None else [n for n in names if n not in framing]
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise ValueError(f"unknown or unavailable variants on {device.type}: {', '.join(unknown)}; "
                         f"available: {REFERENCE_LOOP}, reference, {DEFAULT}, {', '.join(available)}, fast")
    out = {REFERENCE_LOOP: {}} if names is None or REFERENCE_LOOP in names else {}
    out["reference"] = dict(REFERENCE)
    if names is None or DEFAULT in names:
        out[DEFAULT] = {}
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


def lazy_window(trainer) -> int:
    """Steps after which every phase has run its share: the lcm of the phase intervals.
    ``trainer``: anything with ``phases`` (a Trainer), or the list of phases itself."""
    window = 1
    for phase in getattr(trainer, "phases", trainer):
        window = window * phase.interval // math.gcd(window, phase.interval)
    return window


def resolve_case(case: TrainingCase, options: dict):
    """The case's config with one variant's options; a run that never logs, samples or checkpoints."""
    flags = {"device": str(case.device), "steps": 10**9, "ema_kimg": 10.0, "log_every": 10**9,
             "sample_every": 10**9, "checkpoint_every": 10**9, **options}
    if case.batch_size:
        flags["batch_size"] = case.batch_size
    return config.resolve(case.arch, preset=case.preset, data=case.data, sets=case.sets, flags=flags)


def case_data(case: TrainingCase, cfg):
    """The synthetic images every row of a case trains on."""
    return synthetic_data(case.arch, cfg, n=max(256, 2 * cfg.batch_size))


def make_trainer(case: TrainingCase, options: dict, run_dir: str) -> Trainer:
    """A Trainer for one variant that never logs, samples or checkpoints (the bench steps it by hand)."""
    resolved = resolve_case(case, options)
    return Trainer(case.arch, resolved, case_data(case, resolved.config), run_dir)


def fresh_compiler() -> None:
    """Forget every compiled graph, as a fresh process would have none.

    Dynamo keys its cache on a function's code, and guards on the module it was called with: every
    Trainer a bench process builds adds entries to the same networks' ``forward``. After 8 (its
    recompile_limit) it runs that function eagerly for the rest of the process, so without a reset the
    later cases' compiled rows measured eager code (seen for CycleGAN at 128x128 in the CPU suite).
    """
    import torch._dynamo

    torch._dynamo.reset()


def has_reference_loop(arch) -> bool:
    """Whether the architecture offers a reference loop (overrides the hook), without building one."""
    return type(arch).reference_loop is not Architecture.reference_loop


@contextlib.contextmanager
def torch_default_numerics():
    """PyTorch's own TF32 and cuDNN switches (a fresh process's) while a reference loop is built and run, so it
    starts where its script starts and sets what its script sets; the switches as before afterwards."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark)
    matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = False, True, False
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = before


PREDRAWN_BATCHES = 4  # the reference loop's batches, drawn before timing and reused in turn


def reference_loop_stepper(case: TrainingCase):
    """(one reference-loop iteration as a call, the loop, its config), or None when the architecture has none.

    Built with ``torch.manual_seed(0)`` for the config the Trainer fits to the data; its batches are the
    trainer's (same synthetic data, feed and seed, so same crops and flips), drawn now and placed on the
    device, as the trainer's data are, then reused in turn. Call it inside ``torch_default_numerics()``.
    """
    resolved = resolve_case(case, {})
    cfg = resolved.config
    feed = make_feed(case_data(case, cfg), cfg.batch_size, resolved.train.seed, case.device,
                     case.arch.data_spec(cfg))
    cfg = case.arch.fit_to_data(cfg, len(feed))  # as the Trainer trains it (augmentation for small sets)
    torch.manual_seed(0)
    loop = case.arch.reference_loop(cfg, case.device)
    if loop is None:
        return None
    batches = itertools.cycle([{k: v.to(case.device) for k, v in feed.next().items()}
                               for _ in range(PREDRAWN_BATCHES)])
    feed.close()
    return (lambda: loop.step(next(batches))), loop, cfg


def run_reference_loop(case: TrainingCase, warmup: int, steps: int) -> dict | None:
    """Time the architecture's reference loop as ``run_variant`` times a Trainer (warm-up apart, then
    ``steps`` timed steps, at least one lazy window, peak memory over them); None when it has none."""
    sync = synchronizer(case.device)
    with torch_default_numerics():
        built = reference_loop_stepper(case)
        if built is None:
            return None
        step, loop, cfg = built
        started = time.perf_counter()
        for _ in range(warmup):
            step()
        sync()
        warmup_s = time.perf_counter() - started
        reset_peak_memory(case.device)
        window = lazy_window(case.arch.phases(cfg))  # at least one lazy window, as the Trainer's rows
        times = time_calls(step, case.device, repeats=max(steps, window), warmup=0)
        memory = peak_memory_bytes(case.device)
    return {**times, **_throughput(case, cfg, times["mean_s"]), "warmup_s": warmup_s, "data_wait": None,
            "parts_ms": {}, **memory,
            "options": {}, "source": loop.source, "arithmetic": machine.arithmetic(case.device, "fp32")}


def _throughput(case: TrainingCase, cfg, mean: float) -> dict:
    batch = cfg.batch_size
    kind = "pairs" if case.arch.data_spec(cfg).kind == UNPAIRED else "images"
    return {"batch_size": batch, "throughput_unit": f"{kind}/s", "throughput": batch / mean,
            "s_per_kimg": mean * 1000 / batch}


def step_kind(trainer: Trainer):
    """The phases the next step runs: steps of one kind do the same work (lazy regularisers apart)."""
    return tuple(trainer.step % phase.interval == 0 for phase in trainer.phases)


def run_variant(case: TrainingCase, options: dict, warmup: int, steps: int, count_flops: bool = False) -> dict:
    """Time one variant: warm-up (compilation included) apart, then ``steps`` timed steps, then the
    per-part split on a few more steps, peak memory over the timed steps, FLOPs if asked."""
    sync = synchronizer(case.device)
    if options.get("compile"):
        fresh_compiler()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = make_trainer(case, options, run_dir)
        window = lazy_window(trainer)
        with trainer.engine.numerics():
            started = time.perf_counter()
            for _ in range(warmup):
                trainer.train_step()
            sync()
            warmup_s = time.perf_counter() - started
            reset_peak_memory(case.device)
            waited = trainer.data_wait_s
            times = time_calls(trainer.train_step, case.device, repeats=max(steps, window), warmup=0,
                               kind=lambda: step_kind(trainer))
            data_wait = (trainer.data_wait_s - waited) / (times["mean_s"] * times["repeats"])
            memory = peak_memory_bytes(case.device)
            timer = PartTimer(case.device)
            trainer.timing, timer.enabled = timer, True
            for _ in range(window):
                trainer.train_step()
            timer.enabled = False
            flops = count_flops_per_step(trainer, window) if count_flops else None
        trainer.feed.close()
    opts = trainer.opts  # the options as resolved: the default row's are TrainOptions' own
    record = {**times, **_throughput(case, trainer.cfg, times["mean_s"]), "warmup_s": warmup_s,
              "data_wait": min(1.0, data_wait),
              "parts_ms": {part: total / window * 1e3 for part, total in timer.totals.items()},
              **memory, "options": {key: getattr(opts, key) for key in REFERENCE},
              "arithmetic": machine.arithmetic(case.device, opts.precision)}
    if flops is not None:
        record["flops_per_step"] = flops
    return record


def bench_training(case: TrainingCase, variants: dict[str, dict], warmup: int, steps: int,
                   peak_override: float | None = None, echo=print) -> dict:
    """Every variant of one case, with ratios to the reference and to the reference loop, and model-FLOPs
    utilisation (of the Trainer's rows: the reference loop's work is not counted)."""
    results = {}
    flops = None
    for name, options in variants.items():
        if name == REFERENCE_LOOP:
            record = run_reference_loop(case, warmup, steps)
            if record is None:  # the architecture has no reference loop: no such row
                continue
        else:
            record = run_variant(case, options, warmup, steps, count_flops=flops is None)
            flops = record.pop("flops_per_step", flops)
        results[name] = record
        wait = "" if record.get("data_wait") is None else f"  data {record['data_wait'] * 100:.1f}%"
        echo(f"  {name:16s} {record['median_s'] * 1e3:9.2f} ms/step (p10 {record['p10_s'] * 1e3:.2f}, "
             f"p90 {record['p90_s'] * 1e3:.2f})  {record['throughput']:9.1f} {record['throughput_unit']}  "
             f"warm-up {record['warmup_s']:.1f} s{wait}" + noisy_note(record))
    reference = results["reference"]["mean_s"]
    loop = results[REFERENCE_LOOP]["mean_s"] if REFERENCE_LOOP in results else None
    name = machine.device_name(case.device)
    for variant, record in results.items():
        record["speedup_vs_reference"] = reference / record["mean_s"]
        record["speedup_vs_reference_loop"] = loop / record["mean_s"] if loop else None
        counted = flops and variant != REFERENCE_LOOP
        record["tflops_per_s"] = flops / record["mean_s"] / 1e12 if counted else None
        peak = machine.peak_tflops(name, record["arithmetic"], peak_override)
        record["peak_tflops"] = peak
        record["mfu"] = record["tflops_per_s"] / peak if peak and record["tflops_per_s"] else None
    return {"flops_per_step": flops, "variants": results}
