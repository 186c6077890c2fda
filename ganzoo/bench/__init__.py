"""The benchmark suite: training and inference speed of every registered architecture, measured alike.

It drives the registry and the real Trainer, so a third-party plugin is
benchmarked exactly as the built-in ones. A *case* is one architecture at one
size: ``embedded`` (the preset for the embedded 32x32 data), ``full`` (the
architecture's Config defaults, e.g. 256x256 for CycleGAN and StyleGAN-lite)
or ``smoke`` (its smallest config, for CI).

A run settles and checks every case first (``plan``), says how long it will
take (``estimate``), then measures case by case, printing each case's tables
and handing the record to ``save`` as soon as the case is done, so a run that
is stopped keeps what it measured.
"""

from __future__ import annotations

import time

import torch

from .. import registry
from . import machine, report
from ..train.loggers import duration
from .estimate import count, probe
from .overhead import measure_overhead
from .inference import bench_generator, cuda_provider_available, default_backends  # noqa: F401 (re-exported)
from .plan import SIZES, Case, case_settings, plan_case  # noqa: F401 (re-exported)
from .training import bench_training


def measure_case(case: Case, device: torch.device, echo=print, prefix: str = "") -> dict:
    """One architecture at one size: the training table and the inference table."""
    resolved = case.resolved
    echo(f"{prefix}{case.name} ({case.size}: {case.label}, preset {resolved.preset or 'none'}, "
         f"batch {resolved.config.batch_size}) on {machine.device_name(device)}")
    record = {"arch": case.name, "label": case.size, "preset": resolved.preset,
              "sets": {k: str(v) for k, v in case.training.sets.items()}, "data": case.label,
              "batch_size": resolved.config.batch_size, "warmup": case.warmup, "steps": case.steps}
    if case.variants:
        record["training"] = bench_training(case.training, case.variants, case.warmup, case.steps,
                                            case.peak_tflops, echo)
    if case.host_overhead:
        record["host_overhead"] = measure_overhead(case.training, case.warmup, case.steps, echo)
    if case.backends:
        torch.manual_seed(0)
        nets = case.arch.build(resolved.config)
        record["inference"] = {
            gen_name: bench_generator(case.arch, resolved.config, gen_name, gen, nets[gen.role], device,
                                      case.batches, case.repeats, case.backends, echo)
            for gen_name, gen in case.arch.generators(resolved.config).items()}
    return record


def run_case(name: str, size: str, device: torch.device, *, echo=print, **options) -> dict:
    """One case measured, options as for ``plan_case``."""
    return measure_case(plan_case(name, size, device, **options), device, echo)


def working_architectures() -> list[str]:
    """Every registered architecture that loads (a broken plugin is listed by `ganzoo list`, not benched)."""
    return [entry.name for entry in registry.load_all() if entry.status == registry.OK]


def plan_suite(names: list[str] | None, sizes: list[str], device: torch.device, **options) -> list[Case]:
    """Every named (default: every registered) architecture at every size, each checked, none measured."""
    return [plan_case(name, size, device, **options) for name in names or working_architectures() for size in sizes]


def new_record(device: torch.device, cases: list[Case]) -> dict:
    """The record of a run before its first case: incomplete, with what it will measure."""
    return {"machine": machine.describe(device), "complete": False,
            "planned": [case.title for case in cases], "cases": []}


def _cases(n: int) -> str:
    return f"{n} case" if n == 1 else f"{n} cases"


def describe_plan(cases: list[Case], device: torch.device) -> str:
    first = cases[0]
    training = (f"training {len(first.variants)} variants ({', '.join(first.variants)}) x ({first.warmup} warm-up + "
                f"{first.steps} timed steps, at least one lazy window)" if first.variants else "no training")
    inference = (f"inference {', '.join(first.backends)} at batches {','.join(map(str, first.batches))}"
                 if first.backends else "no inference")
    overhead = "; host overhead (trainer, trainer without EMA, bare loop)" if first.host_overhead else ""
    return (f"plan: {_cases(len(cases))} ({', '.join(c.title for c in cases)}) on {device.type}; {training}; "
            f"{inference}{overhead}")


def run_suite(cases: list[Case], device: torch.device, record: dict | None = None, echo=print,
              save=lambda record: None, last: bool = True) -> dict:
    """Measure the cases one by one, printing an estimate first and each case's tables as soon as it is
    measured; ``save(record)`` after every case, so a run stopped part-way keeps what it measured.
    ``last``: nothing is measured after the cases (the feature-extraction section comes after them when
    not), so the record is marked complete."""
    record = new_record(device, cases) if record is None else record
    echo(describe_plan(cases, device))
    echo(f"estimating: one reference training step and one eager call per batch of each of {_cases(len(cases))} ...")
    probes = [probe(case, device) for case in cases]
    estimates = [count(case, found.window).seconds(found) for case, found in zip(cases, probes)]
    record["estimate_s"] = sum(estimates)
    probed = duration(sum(found.seconds for found in probes))
    echo(f"estimate: about {duration(sum(estimates))} (a quick measurement, {probed}, times the steps and calls "
         "planned, plus rough allowances for compiling and exporting)")
    for i, case in enumerate(cases):
        started = time.perf_counter()
        measured = measure_case(case, device, echo, prefix=f"[{i + 1}/{len(cases)}] ")
        measured["seconds"] = time.perf_counter() - started
        record["cases"].append(measured)
        save(record)
        echo("\n" + report.case_section(measured))
        left = sum(estimates[i + 1:])
        echo(f"[{i + 1}/{len(cases)}] {case.title} took {duration(measured['seconds'])} "
             f"(estimated {duration(estimates[i])})" + (f"; about {duration(left)} left\n" if left else "\n"))
    if last:
        record["complete"] = True
        save(record)
    return record
