"""Metrics of a class-conditional generator: the labels it is asked for, intra-class FD, class accuracy.

Labels. A conditional generator is evaluated on labels drawn from the real
data's labels, as stylegan2-ada-pytorch's metrics draw them
(``metrics/metric_utils.py``: ``c = dataset.get_label(np.random.randint(len(dataset)))``
per generated image): a uniformly drawn real image's label, so classes come in
the data's proportions. The draw is numpy's, per chunk of generated images from
the evaluation seed and the chunk's index (a stream of its own, apart from the
latents'), so a run and its ONNX export are asked for the same classes and draw
the same latents whatever the batch size.

Intra-class FD (Miyato & Koyama 2018, "cGANs with Projection Discriminator",
as PyTorch-StudioGAN reports it: ``calculate_intra_class_fid`` in its
``src/worker.py``): for each class, the Frechet distance between the features of
real images of that class and of images generated for it, with as many
generated images as real ones; the score is the plain mean over the classes.
StudioGAN takes every real image of the class and generates that many; here the
real images are the ``--n`` compared (split by their labels), the generated ones
the ``--n`` made (split by the labels asked for), and each class keeps the first
``min(real, generated)`` of both, so every class compares equal counts.

Class accuracy (the "classifier accuracy" of conditional GAN papers, e.g.
Odena et al. 2017's AC-GAN, and StudioGAN's): the fraction of generated images
the shipped Fashion-MNIST classifier puts in the class they were asked for. Its
eleventh class, "not Fashion-MNIST", counts as wrong, so noise is never right by
chance. It applies only to generators of Fashion-MNIST's ten classes.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError

LABEL_STREAM = 1  # the labels' numpy seed is (seed, chunk index, LABEL_STREAM); the latents' is (seed, chunk index)


def chunk_labels(data_labels: np.ndarray, count: int, seed: int, index: int) -> np.ndarray:
    """int64 (count,) labels for chunk ``index``: the labels of ``count`` real images drawn uniformly with
    replacement (stylegan2-ada's ``np.random.randint(len(dataset))``), from numpy's PCG64 seeded by
    (seed, index, LABEL_STREAM)."""
    rng = np.random.default_rng([seed, index, LABEL_STREAM])
    return np.asarray(data_labels, dtype=np.int64)[rng.integers(len(data_labels), size=count)]


def generated_labels(data_labels: np.ndarray, n: int, seed: int, chunk: int) -> np.ndarray:
    """The labels of the first n generated images, chunk by chunk of ``chunk`` as the generator is called."""
    parts = [chunk_labels(data_labels, min(chunk, n - start), seed, index)
             for index, start in enumerate(range(0, n, chunk))]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)[:num_classes]


def present_classes(data_labels: np.ndarray, num_classes: int) -> list[int]:
    """The classes the data has images of: the only ones ever asked for, and the ones intra-class FD averages."""
    return [c for c, count in enumerate(class_counts(data_labels, num_classes)) if count]


def compared_counts(real_labels: np.ndarray, fake_labels: np.ndarray, present: list[int]) -> dict[int, int]:
    """{class: images of it compared}: ``min(real, generated)`` for each class in ``present``."""
    top = max(present, default=-1) + 1
    real, fake = class_counts(real_labels, top), class_counts(fake_labels, top)
    return {c: int(min(real[c], fake[c])) for c in present}


def refuse_small_classes(metric: str, real_labels, fake_labels, present: list[int], classes: list[str],
                         option: str, n: int) -> None:
    """One UserError when a class of the data has fewer than 2 real or 2 generated images among the n compared
    (a covariance needs two), naming the class, both counts and what to do; checked before anything is made."""
    real, fake = (class_counts(x, len(classes)) for x in (real_labels, fake_labels))
    for c, count in compared_counts(real_labels, fake_labels, present).items():
        if count < 2:
            raise UserError(f"{metric} needs at least 2 real and 2 generated images of every class; among the {n} "
                            f"compared ({option} {n}), class {c} ({classes[c]}) has {real[c]} real and {fake[c]} "
                            f"generated: use a larger {option}")


def intra_class_frechet(real: np.ndarray, real_labels: np.ndarray, fake: np.ndarray, fake_labels: np.ndarray,
                        present: list[int]) -> tuple[float, dict[int, float], dict[int, int]]:
    """(mean over the classes ``present``, {class: Frechet distance}, {class: images compared}) of feature
    matrices split by class, each class keeping the first min(real, generated) rows of both."""
    from .frechet import frechet_distance_from_features

    real_labels, fake_labels = np.asarray(real_labels), np.asarray(fake_labels)
    counts = compared_counts(real_labels, fake_labels, present)
    per_class = {c: float(frechet_distance_from_features(real[real_labels == c][:count],
                                                         fake[fake_labels == c][:count]))
                 for c, count in counts.items()}
    return float(np.mean(list(per_class.values()))), per_class, counts


def class_accuracy(predicted: np.ndarray, asked: np.ndarray, num_classes: int) -> tuple[float, dict[int, float]]:
    """(the fraction of images predicted as the class asked for, {class: that fraction among its images})."""
    predicted, asked = np.asarray(predicted), np.asarray(asked)
    right = predicted == asked
    per_class = {c: float(right[asked == c].mean()) for c in range(num_classes) if (asked == c).any()}
    return float(right.mean()), per_class
