"""Evaluation during training: every ``eval_every`` steps the EMA generators are scored and the best kept.

The number logged for step S is the number ``ganzoo eval RUN --step S`` gives
with the same metric, ``--n`` and ``--seed`` (the run's seed): the images come
from the same sources (``metrics.sources.from_nets``: fixed latent chunks from
the seed, held-out inputs for translators), the real features from the same
cache, the statistics from the same ``metrics.evaluate``. Ranking uses one
number: lower is better for a distance (a Frechet distance, KID, intra-class
FD), higher for class accuracy; for an image-to-image architecture it is the
mean over its directions.

A class-conditional run is asked for classes drawn from its data's labels, as
``ganzoo eval`` does; on the embedded data its evaluations also log
intra-fd-fmnist and class-accuracy, which reuse the fmnist features the default
metric already computed (they are logged, never ranked unless chosen).
"""

from __future__ import annotations

import json
import math
import time

import torch

from ..data import DEFAULT_DATASET
from ..errors import UserError
from ..metrics.evaluate import check_classes, evaluate_task, sample_count
from ..metrics.extractors import load_extractor
from ..metrics.sources import Source, from_nets
from ..metrics.suite import (CONDITIONAL, HIGHER_IS_BETTER, better, default_features, default_metrics,
                             extractor_of, extractors_needed, parse_metrics, ranking_key, refuse_inapplicable)

DEFAULT_N = 10_000  # images per evaluation when eval_n is 0 (capped at the real images there are)
BATCH = 64  # generator and extractor batch: results never depend on it (fixed latent chunks)


class TrainingEval:
    """The run's metric on its in-memory generators; built before the run folder is made, so missing
    extractor weights or too large an ``eval_n`` stop the command before anything is written.

    ``skip_bad_files`` (train --skip-bad-files) leaves unreadable real images out, as the training data did;
    held-out images the training data does not include (testA/testB) are reported as they are skipped."""

    def __init__(self, arch, cfg, opts, data: str | None, device: torch.device, nets: dict,
                 skip_bad_files: bool = False):
        embedded = (data or DEFAULT_DATASET) == DEFAULT_DATASET
        self.every = opts.eval_every
        self.seed = opts.seed
        self.metric = opts.eval_metric or ("fd-fmnist" if embedded else "fid")
        self.features = default_features(embedded)
        self.key = ranking_key(self.metric, self.features)
        self.device = device
        with self._own_randomness():  # building an extractor initialises a network: not from the run's RNG
            self.extractors = {name: load_extractor(name, device, weights=opts.eval_weights or None, batch_size=BATCH)
                               for name in extractors_needed([self.metric], self.features)}
            source = from_nets(arch, cfg, nets, data, device, BATCH, self.seed, Source("training", "run", None, data),
                               on_bad=_report_skipped if skip_bad_files else None)
        self.tasks = source.tasks
        for task in self.tasks:
            refuse_inapplicable([self.metric], task, "this run", option="--eval-metric")
        self.n = {task.label: sample_count(task, opts.eval_n or None, "--eval-n", default=DEFAULT_N,
                                                 metrics=[self.metric])
                  for task in self.tasks}
        for task in self.tasks:
            check_classes(task, [self.metric], self.n[task.label], self.seed, "--eval-n")
        self.metrics = [self.metric] + self._also_logged(embedded)

    def _also_logged(self, embedded: bool) -> list[str]:
        """The conditional metrics of the default set that apply to every task and need no other extractor than
        the ranking metric's (free: they reuse its features); none for an unconditional run."""
        extras = []
        for metric in parse_metrics(default_metrics(embedded, conditional=True)):
            if metric not in CONDITIONAL or metric == self.metric:
                continue
            if extractor_of(metric, self.features) not in extractors_needed([self.metric], self.features):
                continue
            try:
                for task in self.tasks:
                    refuse_inapplicable([metric], task, "this run")
                    check_classes(task, [metric], self.n[task.label], self.seed, "--eval-n")
            except UserError:  # not for this run (unconditional, other classes, too few images): not logged
                continue
            extras.append(metric)
        return extras

    def _own_randomness(self):
        """torch's global generators as they were afterwards: an evaluation never changes the training."""
        return torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [])

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def signature(self) -> str:
        """What a best-so-far value is comparable with: another metric, n, seed or extractor starts afresh."""
        extractors = {name: e.describe() | {"weights": None} for name, e in self.extractors.items()}
        return json.dumps({"metric": self.key, "n": self.n, "seed": self.seed, "extractors": extractors},
                          sort_keys=True)

    def better(self, score: float, than: float) -> bool:
        """Whether ``score`` beats the best so far ``than``: higher for class accuracy, lower for a distance."""
        return better(self.metric, score, than)

    def measure(self) -> tuple[float, dict[str, float]]:
        """(the ranking value, {metrics.jsonl key: value}); leaves every random number generator as it was.
        A value that is not finite ranks last."""
        started = time.perf_counter()
        record: dict[str, float] = {}
        scores = []
        with self._own_randomness():
            for task in self.tasks:
                result = evaluate_task(task, self.metrics, self.features, self.extractors, self.n[task.label],
                                       self.seed)
                prefix = f"eval/{task.label}/" if task.label else "eval/"
                record.update({prefix + key: value for key, value in result["values"].items()})
                scores.append(result["values"][self.key])
        record["eval/seconds"] = time.perf_counter() - started
        score = sum(scores) / len(scores)
        worst = -math.inf if self.metric in HIGHER_IS_BETTER else math.inf
        return (score if math.isfinite(score) else worst), record


def _report_skipped(error) -> None:
    """One line per unreadable real image the evaluation leaves out (its real images are loaded once)."""
    import sys

    print(f"evaluation skipped: {error}", file=sys.stderr, flush=True)
