"""The trainer's own per-step cost: the Trainer as users run it against a bare loop of the same work.

`ganzoo bench --host-overhead` (and `--smoke`) builds, for one case, the
Trainer with the default options (EMA on), the Trainer with the EMA off, and
the bare loop (ganzoo.bench.bare_loop: same networks, phases, losses and
optimizers; no guard, no logging, no EMA), all on the same config and data.
After a warm-up they run interleaved in blocks (trainer, trainer without EMA,
bare, then trainer without EMA, bare, trainer, ...: each first in turn) so a
machine that drifts slows all three alike. A block is
a whole number of lazy-regularisation windows, so every block does the same
work; a loop's ms/step is the median over its blocks of the block's mean step.
The ratios trainer/bare say what the trainer adds on the host (on a CPU, the
host is also the device); the EMA's share is their difference.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time

import torch

from .. import config
from ..testing import synthetic_data
from ..train.trainer import Trainer
from .bare_loop import BareLoop
from .timing import NOISY_SPREAD, spread, synchronizer
from .training import TrainingCase, lazy_window

LOOPS = ("trainer", "trainer-no-ema", "bare")
MIN_BLOCK_STEPS = 8  # a block of fewer steps would time the clock more than the step


def _resolved(case: TrainingCase, ema_kimg: float | None):
    """The case's config with the trainer's default options; ``ema_kimg`` replaces the default when given."""
    flags = {"device": str(case.device), "steps": 10**9, "log_every": 10**9, "sample_every": 10**9,
             "checkpoint_every": 10**9}
    if ema_kimg is not None:
        flags["ema_kimg"] = ema_kimg
    if case.batch_size:
        flags["batch_size"] = case.batch_size
    return config.resolve(case.arch, preset=case.preset, data=case.data, sets=case.sets, flags=flags)


def blocks(window: int, steps: int) -> tuple[int, int]:
    """(steps per block, blocks per loop): whole lazy windows, at least 2 blocks, at least ``steps`` steps.

    A spread (and the noisy flag) needs 3 blocks or more: ask for more steps than two blocks hold.
    """
    block = window * max(1, math.ceil(min(MIN_BLOCK_STEPS, steps) / window))
    return block, max(2, math.ceil(steps / block))


def measure_overhead(case: TrainingCase, warmup: int, steps: int, echo=print) -> dict:
    """The three loops of one case, interleaved; ``steps`` timed steps each at least, in whole blocks."""
    sync = synchronizer(case.device)
    default = _resolved(case, None)
    data = synthetic_data(case.arch, default.config, n=max(256, 2 * default.config.batch_size))
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        loops = {"trainer": Trainer(case.arch, default, data, first),
                 "trainer-no-ema": Trainer(case.arch, _resolved(case, 0.0), data, second),
                 "bare": BareLoop(case.arch, _resolved(case, 0.0), data)}
        block, rounds = blocks(lazy_window(loops["trainer"]), steps)
        seconds: dict[str, list[float]] = {name: [] for name in LOOPS}
        cpu: dict[str, list[float]] = {name: [] for name in LOOPS}
        with loops["trainer"].engine.numerics():
            for loop in loops.values():
                for _ in range(warmup):
                    loop.train_step()
            sync()
            for i in range(rounds):
                for name in LOOPS[i % len(LOOPS):] + LOOPS[:i % len(LOOPS)]:  # each loop first in turn
                    loop = loops[name]
                    start, start_cpu = time.perf_counter(), time.process_time()
                    for _ in range(block):
                        loop.train_step()
                    sync()
                    seconds[name].append((time.perf_counter() - start) / block)
                    cpu[name].append((time.process_time() - start_cpu) / block)
        for loop in loops.values():
            loop.feed.close()
    record = {"block_steps": block, "rounds": rounds, "warmup": warmup, "threads": torch.get_num_threads(),
              "ema_kimg": default.train.ema_kimg, "loops": {}}
    for name in LOOPS:
        ratio = spread(seconds[name])
        record["loops"][name] = {"median_s": statistics.median(seconds[name]), "block_mean_s": seconds[name],
                                 "cpu_median_s": statistics.median(cpu[name]),
                                 "spread": ratio, "noisy": ratio is not None and ratio > NOISY_SPREAD}
    bare = record["loops"]["bare"]["median_s"]
    record["ratio"] = record["loops"]["trainer"]["median_s"] / bare
    record["ratio_no_ema"] = record["loops"]["trainer-no-ema"]["median_s"] / bare
    bare_cpu = record["loops"]["bare"]["cpu_median_s"]
    record["cpu_ratio"] = record["loops"]["trainer"]["cpu_median_s"] / bare_cpu
    record["cpu_ratio_no_ema"] = record["loops"]["trainer-no-ema"]["cpu_median_s"] / bare_cpu
    echo(f"  host overhead: trainer {record['loops']['trainer']['median_s'] * 1e3:.2f} ms/step, without EMA "
         f"{record['loops']['trainer-no-ema']['median_s'] * 1e3:.2f}, bare loop {bare * 1e3:.2f}: "
         f"x{record['ratio']:.3f} (x{record['ratio_no_ema']:.3f} without EMA; CPU time x{record['cpu_ratio']:.3f}, "
         f"x{record['cpu_ratio_no_ema']:.3f}), {rounds} blocks of {block} steps, {record['threads']} thread(s)")
    return record


def overhead_table(section: dict) -> str:
    """The host-overhead section of a case, as markdown."""
    loops = section["loops"]
    bare = loops["bare"]["median_s"]
    lines = [f"Trainer against a bare loop of the same work ({section['rounds']} interleaved blocks of "
             f"{section['block_steps']} steps each after {section['warmup']} warm-up, {section['threads']} "
             f"thread(s); EMA half-life {section['ema_kimg']:g} kimg):", "",
             "| loop | ms/step (median of blocks) | vs bare | p90/p10 of blocks |", "| --- | --- | --- | --- |"]
    for name in LOOPS:
        row = loops[name]
        spread_text = "" if row["spread"] is None else f"{row['spread']:.2f}" + (" **noisy**" if row["noisy"] else "")
        lines.append(f"| {name} | {row['median_s'] * 1e3:.3f} | x{row['median_s'] / bare:.3f} | {spread_text} |")
    return "\n".join(lines)
