"""The benchmark suite: training and inference speed of every registered architecture, measured alike.

It drives the registry and the real Trainer, so a third-party plugin is
benchmarked exactly as the built-in ones. A *case* is one architecture at one
size: ``embedded`` (the preset for the embedded 32x32 data), ``full`` (the
architecture's Config defaults, e.g. 256x256 for CycleGAN and StyleGAN-lite)
or ``smoke`` (its smallest config, for CI).
"""

from __future__ import annotations

import dataclasses

import torch

from .. import config, registry
from ..api import SMOKE_PRESET
from . import machine
from .inference import bench_generator, cuda_provider_available
from .training import TrainingCase, bench_training, variants_for

SIZES = ("embedded", "full", "smoke")


def case_settings(arch, size: str, resolution: int | None, sets: dict) -> tuple[str | None, str | None, dict]:
    """(data name that picks the preset, preset, --set values) for a size and an optional resolution.

    A resolution is applied through the architecture's ``with_resolution``,
    which knows what else scales with it; the fields it changes become --set values.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; sizes: {', '.join(SIZES)}")
    data = None if size == "embedded" else "synthetic"  # "synthetic" names no preset: Config defaults
    preset = SMOKE_PRESET if size == "smoke" else None
    sets = dict(sets)
    if resolution is not None:
        base = config.resolve(arch, preset=preset, data=data, sets=sets).config
        scaled = arch.with_resolution(base, resolution)
        sets.update({f.name: getattr(scaled, f.name) for f in dataclasses.fields(scaled)
                     if getattr(scaled, f.name) != getattr(base, f.name)})
    return data, preset, sets


def run_case(name: str, size: str, device: torch.device, *, resolution: int | None = None,
             batch_size: int | None = None, sets: dict | None = None, warmup: int = 10, steps: int = 30,
             variants: list[str] | None = None, training: bool = True, inference: bool = True,
             inference_batches: list[int] | None = None, repeats: int = 30, backends: list[str] | None = None,
             peak_tflops: float | None = None, echo=print) -> dict:
    """One architecture at one size: the training table and the inference table."""
    arch = registry.get(name)
    data, preset, sets = case_settings(arch, size, resolution, dict(sets or {}))
    flags = {"batch_size": batch_size} if batch_size else {}
    resolved = config.resolve(arch, preset=preset, data=data, sets=sets, flags=flags)
    spec = arch.data_spec(resolved.config)
    label = f"{spec.resolution}x{spec.resolution}x{spec.channels}"
    echo(f"{name} ({size}: {label}, preset {resolved.preset or 'none'}, batch {resolved.config.batch_size}) "
         f"on {machine.device_name(device)}")
    case = {"arch": name, "label": size, "preset": resolved.preset, "sets": {k: str(v) for k, v in sets.items()},
            "data": label, "batch_size": resolved.config.batch_size, "warmup": warmup, "steps": steps}
    if training:
        training_case = TrainingCase(arch, sets, data, preset, batch_size, device)
        case["training"] = bench_training(training_case, variants_for(device, variants), warmup, steps,
                                          peak_tflops, echo)
    if inference:
        chosen = backends or default_backends(device)
        torch.manual_seed(0)
        nets = arch.build(resolved.config)
        batches = inference_batches or ([1, 8, 32, 128] if device.type == "cuda" else [1, 4, 16])
        case["inference"] = {
            gen_name: bench_generator(arch, resolved.config, gen_name, gen, nets[gen.role], device, batches,
                                      repeats, chosen, echo)
            for gen_name, gen in arch.generators(resolved.config).items()}
    return case


def working_architectures() -> list[str]:
    """Every registered architecture that loads (a broken plugin is listed by `ganzoo list`, not benched)."""
    return [entry.name for entry in registry.load_all() if entry.status == registry.OK]


def default_backends(device: torch.device) -> list[str]:
    backends = ["eager", "compiled", "onnxruntime-cpu"]
    if device.type == "cuda" and cuda_provider_available():
        backends.append("onnxruntime-cuda")
    return backends


def run_suite(names: list[str] | None, sizes: list[str], device: torch.device, echo=print, **options) -> dict:
    """Every named (default: every registered) architecture at every size, with the machine record."""
    names = names or working_architectures()
    cases = [run_case(name, size, device, echo=echo, **options) for name in names for size in sizes]
    return {"machine": machine.describe(device), "cases": cases}
