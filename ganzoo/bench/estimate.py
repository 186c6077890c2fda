"""How long a bench run will take, said before it starts: a quick measurement times an exact count.

For each case the probe builds the reference Trainer twice and times the
second build (the first Trainer of a process pays one-off costs; the build
stands for every variant's), times its second training step (the first pays
one-off costs too) and one eager generator call at each inference batch size
after a first untimed one. The plan is then counted exactly: warm-up, timed,
split and FLOP-counting steps per variant; warm-up, timed, first and parity
calls per backend and batch. What a probe cannot see is added by rule:
``COMPILE_S`` per torch.compile (variant or backend), and per verified ONNX
export ``EXPORT_S`` plus ``EXPORT_CALLS`` eager calls at the first batch size
(exports measured 0.06 to 4.8 s on the 2-core CPU, 15 to 80 calls of their
generator). Variants (the reference loop too) and backends are assumed to cost
what the reference step and the eager call cost, so the estimate is rough (a factor of about two
either way); the line after each case says what the case took against its
estimate, and what the cases left are estimated at.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field

import torch

from .overhead import LOOPS, blocks as overhead_blocks
from .plan import Case
from .timing import synchronizer
from ..config import TrainOptions
from .training import REFERENCE, REFERENCE_LOOP, lazy_window, make_trainer

COMPILE_S = 30.0  # one cold torch.compile: 11 to 43 s measured on the 2-core CPU (docs/benchmarks.md)
EXPORT_S = 0.2  # one verified ONNX export: a fixed part ...
EXPORT_CALLS = 20  # ... and a part that grows with the generator, in eager calls at the first batch size
FLOP_COUNTING = 3.0  # a step under torch.utils.flop_counter costs about this many plain steps


@dataclass
class Probe:
    build_s: float = 0.0  # building one variant's Trainer (synthetic data included)
    step_s: float = 0.0  # one reference training step
    window: int = 1  # the lazy-regularisation window
    call_s: dict[str, dict[int, float]] = field(default_factory=dict)  # eager call by generator, batch
    seconds: float = 0.0  # what the probe itself took


def probe(case: Case, device: torch.device) -> Probe:
    """A quick measurement of one case: a Trainer build, a step, a generator call per batch (each the second)."""
    started = time.perf_counter()
    sync = synchronizer(device)
    found = Probe()
    if case.variants or case.host_overhead:
        with tempfile.TemporaryDirectory() as first_dir:
            make_trainer(case.training, dict(REFERENCE), first_dir)  # one-off costs, untimed
        with tempfile.TemporaryDirectory() as run_dir:
            start = time.perf_counter()
            trainer = make_trainer(case.training, dict(REFERENCE), run_dir)
            found.build_s = time.perf_counter() - start
            found.window = lazy_window(trainer)
            with trainer.engine.numerics():
                trainer.train_step()
                sync()
                start = time.perf_counter()
                trainer.train_step()
                sync()
                found.step_s = time.perf_counter() - start
            del trainer
    if case.backends:
        torch.manual_seed(0)
        nets = case.arch.build(case.resolved.config)
        with torch.no_grad():
            for name, gen in case.arch.generators(case.resolved.config).items():
                net = nets[gen.role].to(device).eval()
                found.call_s[name] = {}
                for batch in case.batches:
                    inputs = gen.latents(batch, 0)
                    args = [torch.from_numpy(inputs[key]).to(device) for key in gen.inputs]
                    net(*args)
                    sync()
                    start = time.perf_counter()
                    net(*args)
                    sync()
                    found.call_s[name][batch] = time.perf_counter() - start
        del nets
    found.seconds = time.perf_counter() - started
    return found


@dataclass
class Count:
    """The work of a case in steps, calls and fixed costs; ``seconds(probe)`` prices it."""

    steps: float = 0.0  # training steps (FLOP-counted ones weighted)
    builds: int = 0  # Trainers built
    calls: dict[tuple[str, int], int] = field(default_factory=dict)  # generator calls by (generator, batch)
    compiles: int = 0
    exports: int = 0

    def seconds(self, found: Probe) -> float:
        return (self.steps * found.step_s + self.builds * found.build_s + self.compiles * COMPILE_S +
                self.exports * EXPORT_S + sum(n * found.call_s[g][b] for (g, b), n in self.calls.items()))


def _calls(work: Count, generator: str, batch: int, n: int) -> None:
    work.calls[(generator, batch)] = work.calls.get((generator, batch), 0) + n


def count(case: Case, window: int) -> Count:
    """Exactly what ``measure_case`` will run for this case (see training.run_variant and
    inference.bench_generator, whose loops this mirrors)."""
    work = Count()
    for name, options in case.variants.items():
        work.builds += 1
        if name == REFERENCE_LOOP:  # warm-up and timed steps only (training.run_reference_loop)
            work.steps += case.warmup + case.steps
            continue
        work.steps += case.warmup + max(case.steps, window) + window
        work.compiles += bool(options.get("compile", TrainOptions.compile))
    if case.variants:
        work.steps += window * FLOP_COUNTING
    if case.host_overhead:  # three loops (see overhead.measure_overhead), each warmed up then timed in blocks
        block, rounds = overhead_blocks(window, case.steps)
        work.steps += len(LOOPS) * (case.warmup + block * rounds)
        work.builds += len(LOOPS)
    for name in case.arch.generators(case.resolved.config):
        if any(b.startswith("onnxruntime") for b in case.backends):
            work.exports += 1
            _calls(work, name, case.batches[0], EXPORT_CALLS)
        for backend in case.backends:
            work.compiles += backend == "compiled"
            for i, batch in enumerate(case.batches):
                timed = case.repeats if i == 0 else max(3, case.repeats // 4)
                _calls(work, name, batch, 2 + timed + (3 if i == 0 else 0))  # warm-up, timed, first and parity
    return work


@dataclass
class ExtractionProbe:
    """Seconds of one ``features`` call at the section's batch, by (extractor, precision, resolution)."""

    call_s: dict[tuple[str, str, str], float] = field(default_factory=dict)
    seconds: float = 0.0  # what the probe itself took


def probe_extraction(loaded: dict, batches: dict[str, torch.Tensor], device: torch.device) -> ExtractionProbe:
    """For every extractor (``loaded``: name -> extraction.Loaded), precision and resolution: an untimed call
    on one image (one-off costs), then one timed call on the full batch."""
    started = time.perf_counter()
    sync = synchronizer(device)
    found = ExtractionProbe()
    for name, item in loaded.items():
        for precision, extractor in item.by_precision.items():
            for label, batch in batches.items():
                extractor.features(batch[:1])
                sync()
                start = time.perf_counter()
                extractor.features(batch)
                sync()
                found.call_s[(name, precision, label)] = time.perf_counter() - start
    found.seconds = time.perf_counter() - started
    return found


def extraction_seconds(plan, found: ExtractionProbe, name: str, precision: str) -> float:
    """What ``extraction.measure`` will take for one (extractor, precision), counted as it runs: warm-up and
    timed calls at each resolution, then the FD pairs' three sets of n images at the first resolution."""
    first = next(iter(label for (n, p, label) in found.call_s if (n, p) == (name, precision)))
    calls = sum((plan.warmup + plan.repeats) * seconds for (n, p, _), seconds in found.call_s.items()
                if (n, p) == (name, precision))
    return calls + 3 * plan.n / plan.batch * found.call_s[(name, precision, first)]
