"""One evaluation: real features (cached), generated features (streamed chunk by chunk), then every metric.

Shared by `ganzoo eval` and evaluation during training, so a number logged
while a run trains is the number `ganzoo eval` gives for that checkpoint with
the same n, seed and extractor.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import UserError

DEFAULT_N = 50_000


def sample_count(task, n: int | None, option: str, default: int = DEFAULT_N, metrics: list[str] = ()) -> int:
    """How many images a task compares: ``n``, or ``default`` capped at what exists; too many, or fewer than
    ``metrics`` can use, is one UserError."""
    from .suite import min_images, refuse_too_few

    available = len(task.real) if task.inputs is None else min(len(task.real), task.inputs)
    what = f"{task.label} " if task.label else ""
    if metrics and n is not None:
        refuse_too_few(n, list(metrics), option)
    if n is None:
        count = min(default, available)
        need, metric, why = min_images(list(metrics)) if metrics else (1, "", "")
        if count < need:
            held_out = f" and {task.inputs} held-out inputs" if task.inputs is not None else ""
            raise UserError(f"only {len(task.real)} real {what}images{held_out} to evaluate with; {metric} needs at "
                            f"least {need} ({why}): add images to the data")
        return count
    if n > len(task.real):
        raise UserError(f"{option} {n} is more than the {len(task.real)} real {what}images to compare with (the "
                        f"reference statistics need as many); use {option} {len(task.real)} or more data")
    if task.inputs is not None and n > task.inputs:
        raise UserError(f"{option} {n} is more than the {task.inputs} held-out images {task.label} can translate")
    return n


def subset_indices(count: int, n: int, seed: int) -> np.ndarray | None:
    """Which of ``count`` real images are compared: the first n of a seeded permutation, sorted (None: all)."""
    if n >= count:
        return None
    return np.sort(np.random.default_rng(seed).permutation(count)[:n])


def real_subset(real: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The first n of a seeded permutation, in their original order: the same for every run with this seed."""
    indices = subset_indices(len(real), n, seed)
    return np.asarray(real) if indices is None else np.asarray(real[indices])


@dataclass
class ClassLabels:
    """A conditional generator's evaluation: class names, the labels of the compared real images and of the
    generated ones (asked for), the classes the data has, and the classifier's predicted classes."""

    classes: list[str]
    real: np.ndarray
    generated: np.ndarray
    present: list[int]
    predicted: np.ndarray | None = None


def class_labels(task, n: int, seed: int) -> ClassLabels | None:
    """The labels of the n real and n generated images a task compares (None: an unconditional task)."""
    from .conditional import present_classes

    if task.labels is None:
        return None
    data = task.labels.real
    indices = subset_indices(len(data), n, seed)
    real = np.asarray(data if indices is None else data[indices], dtype=np.int64)
    return ClassLabels(list(task.labels.classes), real, task.labels.generated(n),
                       present_classes(data, len(task.labels.classes)))


def check_classes(task, metrics: list[str], n: int, seed: int, option: str) -> None:
    """Per-class metrics need 2 real and 2 generated images of each class among the n: one UserError if not
    (checked from the labels alone, before any image is made)."""
    from .conditional import refuse_small_classes
    from .suite import INTRA

    labels = class_labels(task, n, seed)
    for metric in (m for m in metrics if m in INTRA):
        refuse_small_classes(metric, labels.real, labels.generated, labels.present, labels.classes, option, n)


def evaluate_task(task, metrics: list[str], features: str, extractors: dict, n: int, seed: int,
                  progress: Callable[[str, int], object] | None = None) -> dict:
    """{"n", "real_images_sha256", "reference_cached", "values"} for one task, and for a conditional generator
    "classes" (names, real and generated images per class) and "per_class" ({metric: {class: value}});
    ``n`` already checked."""
    from .conditional import class_counts
    from .reference import reference_features
    from .suite import ACCURACY, ACCURACY_EXTRACTOR, compute

    bar = progress or (lambda label, total: nullcontext(None))
    what = f"{task.label} " if task.label else ""
    real = real_subset(task.real, n, seed)
    real_features, cached, images_hash = {}, {}, None
    for name, extractor in extractors.items():
        with bar(f"{what}real / {name}", len(real)) as update:
            real_features[name], images_hash, cached[name] = reference_features(real, extractor, update)
    fake_parts = {name: [] for name in extractors}
    with bar(f"{what}generated / {', '.join(extractors)}", n) as update:
        for chunk in task.fake(n):
            for name, extractor in extractors.items():
                fake_parts[name].append(extractor.features(chunk))
            if update is not None:
                update(len(chunk))
    fake_features = {name: np.concatenate(parts) for name, parts in fake_parts.items()}
    labels = class_labels(task, n, seed)
    if labels is not None and ACCURACY in metrics:
        labels.predicted = extractors[ACCURACY_EXTRACTOR].extra["predict"](fake_features[ACCURACY_EXTRACTOR])
    values, per_class = compute(metrics, features, real_features, fake_features, seed, labels)
    result = {"n": n, "real_images_sha256": images_hash, "reference_cached": cached, "values": values}
    if labels is not None:
        count = len(labels.classes)
        result["classes"] = {"names": labels.classes,
                             "real": class_counts(labels.real, count).tolist(),
                             "generated": class_counts(labels.generated, count).tolist()}
        result["per_class"] = per_class
    return result
