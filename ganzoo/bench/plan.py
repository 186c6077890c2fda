"""What one bench case will measure, settled and checked before anything is measured.

Every option (sizes, variants, backends, batch sizes) is resolved here for
every case first, so a bad one is refused before a minute of measuring is
spent, and so the estimate counts exactly what will run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .. import config, registry
from ..api import SMOKE_PRESET
from .inference import check_backends, default_backends
from .training import REFERENCE_LOOP, TrainingCase, has_reference_loop, variants_for

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


@dataclass
class Case:
    """One architecture at one size, with everything its measurement needs."""

    name: str
    size: str
    arch: object
    resolved: object  # config.Resolved: the config the case measures
    training: TrainingCase
    variants: dict[str, dict]  # empty: no training table
    backends: list[str]  # empty: no inference table
    batches: list[int]
    warmup: int
    steps: int
    repeats: int
    peak_tflops: float | None
    host_overhead: bool = False  # also time the Trainer against a bare loop (ganzoo.bench.overhead)

    @property
    def label(self) -> str:
        spec = self.arch.data_spec(self.resolved.config)
        return f"{spec.resolution}x{spec.resolution}x{spec.channels}"

    @property
    def title(self) -> str:
        return f"{self.name} {self.size}"


def plan_case(name: str, size: str, device: torch.device, *, resolution: int | None = None,
              batch_size: int | None = None, sets: dict | None = None, warmup: int = 10, steps: int = 30,
              variants: list[str] | None = None, training: bool = True, inference: bool = True,
              inference_batches: list[int] | None = None, repeats: int = 30, backends: list[str] | None = None,
              peak_tflops: float | None = None, host_overhead: bool = False) -> Case:
    """The case, every option checked (a ValueError names a bad one); nothing is built or measured."""
    arch = registry.get(name)
    data, preset, sets = case_settings(arch, size, resolution, dict(sets or {}))
    flags = {"batch_size": batch_size} if batch_size else {}
    resolved = config.resolve(arch, preset=preset, data=data, sets=sets, flags=flags)
    chosen = (backends or default_backends(device)) if inference else []
    check_backends(chosen, device)
    planned = variants_for(device, variants) if training else {}
    if not has_reference_loop(arch):  # no reference-loop row for it
        planned.pop(REFERENCE_LOOP, None)
    return Case(name=name, size=size, arch=arch, resolved=resolved,
                training=TrainingCase(arch, sets, data, preset, batch_size, device),
                variants=planned, backends=chosen,
                batches=inference_batches or ([1, 8, 32, 128] if device.type == "cuda" else [1, 4, 16]),
                warmup=warmup, steps=steps, repeats=repeats, peak_tflops=peak_tflops, host_overhead=host_overhead)


EVAL_RESOLUTIONS = {"32x32x1": (32, 1), "256x256x3": (256, 3)}  # the embedded data; a full-size RGB image
EVAL_MAX_N = 5000  # two disjoint sets of n from the embedded 10,000 Fashion-MNIST test images


@dataclass
class EvalPlan:
    """The feature-extraction section (`ganzoo bench --eval`): what it measures, every value checked.

    Per extractor and precision: images/s of ``Extractor.features`` on uint8 images at each of
    EVAL_RESOLUTIONS, ``batch`` images a call, ``warmup`` + ``repeats`` calls; then the Frechet distance
    of two image pairs of ``n`` images each, so reduced precision can be compared with fp32.
    """

    extractors: list[str]
    precisions: list[str]  # fp32 first: every other precision is compared with it
    batch: int
    repeats: int
    warmup: int
    n: int

    @property
    def titles(self) -> list[str]:
        return [f"{name} {precision}" for name in self.extractors for precision in self.precisions]


def default_eval_precisions(device: torch.device) -> list[str]:
    """fp32 everywhere; bf16 and fp16 autocast on CUDA (on a CPU they are emulated or slow, see docs/metrics.md)."""
    return ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32"]


def _names(text: str, option: str, allowed: tuple[str, ...]) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise ValueError(f"unknown {option} {', '.join(map(repr, unknown)) or repr(text)}; "
                         f"choices: {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def plan_eval(device: torch.device, extractors: str | None = None, precisions: str | None = None,
              batch: int | None = None, repeats: int = 5, n: int | None = None, warmup: int = 1) -> EvalPlan:
    """The section's plan, every option checked (a ValueError names a bad one); nothing is loaded."""
    from ..metrics.extractors import EXTRACTORS, PRECISIONS

    names = _names(extractors or ",".join(EXTRACTORS), "--extractors", EXTRACTORS)
    chosen = _names(precisions, "--eval-precisions", PRECISIONS) if precisions else default_eval_precisions(device)
    chosen = ["fp32"] + [p for p in chosen if p != "fp32"]  # the reference every other precision is compared with
    cuda = device.type == "cuda"
    batch = batch if batch is not None else (64 if cuda else 16)
    n = n if n is not None else (2000 if cuda else 200)
    for option, value, low in (("--eval-batch", batch, 1), ("--eval-repeats", repeats, 1), ("--eval-n", n, 2)):
        if value < low:
            raise ValueError(f"{option} must be at least {low}, got {value}")
    if n > EVAL_MAX_N:
        raise ValueError(f"--eval-n {n} is more than {EVAL_MAX_N}: the two image sets of each pair are disjoint "
                         "halves of the 10,000 embedded Fashion-MNIST test images")
    return EvalPlan(extractors=names, precisions=chosen, batch=batch, repeats=repeats, warmup=warmup, n=n)
