"""Precision/recall (Kynkaanniemi et al. 2019) and density/coverage (Naeem et al. 2020)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch_fidelity.metric_prc import prc_features_to_metric

from ganzoo.metrics import precision_recall_density_coverage


def brute_force_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The papers' definitions, one distance at a time (closed balls)."""
    real, fake = real.tolist(), fake.tolist()

    def radius(points, i):
        return sorted(math.dist(points[i], points[j]) for j in range(len(points)) if j != i)[k - 1]

    real_radius = [radius(real, i) for i in range(len(real))]
    fake_radius = [radius(fake, j) for j in range(len(fake))]
    balls = [[math.dist(r, f) <= real_radius[i] for i, r in enumerate(real)] for f in fake]
    return {
        "precision": sum(any(row) for row in balls) / len(fake),
        "recall": sum(
            any(math.dist(r, f) <= fake_radius[j] for j, f in enumerate(fake)) for r in real
        ) / len(real),
        "density": sum(sum(row) for row in balls) / (k * len(fake)),
        "coverage": sum(any(row[i] for row in balls) for i in range(len(real))) / len(real),
    }


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_the_definition(k, seed):
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((23, 3))
    fake = rng.standard_normal((17, 3)) * 1.3 + 0.4
    got = precision_recall_density_coverage(real, fake, k=k)
    expected = brute_force_prdc(real, fake, k)
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name


def test_identical_sets():
    # Every real ball holds its own point and its k neighbours: density (k + 1) / k exactly.
    x = np.random.default_rng(2).standard_normal((60, 8))
    got = precision_recall_density_coverage(x, x.copy(), k=3)
    assert got == pytest.approx({"precision": 1.0, "recall": 1.0, "density": 4 / 3, "coverage": 1.0})


def test_disjoint_far_apart_sets_score_zero():
    x = np.random.default_rng(3).standard_normal((50, 8))
    got = precision_recall_density_coverage(x, x + 1000.0)
    assert got == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def two_modes(rng: np.random.Generator, n: int) -> np.ndarray:
    offset = np.array([50.0, 0.0, 0.0, 0.0])
    return np.concatenate([rng.standard_normal((n, 4)) + offset, rng.standard_normal((n, 4)) - offset])


def test_fake_copying_one_of_two_modes():
    rng = np.random.default_rng(4)
    real = two_modes(rng, 100)
    got = precision_recall_density_coverage(real, real[:100].copy(), k=3)
    assert got == pytest.approx({"precision": 1.0, "recall": 0.5, "density": 4 / 3, "coverage": 0.5})


def test_fake_sampling_one_of_two_modes():
    rng = np.random.default_rng(5)
    real = two_modes(rng, 200)
    fake = rng.standard_normal((200, 4)) + np.array([50.0, 0.0, 0.0, 0.0])
    got = precision_recall_density_coverage(real, fake, k=3)
    assert got["precision"] > 0.8
    assert 0.4 < got["recall"] <= 0.5
    assert 0.4 < got["coverage"] <= 0.5


def test_agrees_with_torch_fidelity():
    rng = np.random.default_rng(6)
    real = rng.standard_normal((80, 8))
    fake = rng.standard_normal((70, 8)) * 1.2 + 0.2
    ours = precision_recall_density_coverage(real, fake, k=3)
    theirs = prc_features_to_metric(  # torch-fidelity's input 1 is the generated set
        torch.from_numpy(fake), torch.from_numpy(real), prc_neighborhood=3, verbose=False
    )
    assert 0.0 < ours["precision"] < 1.0 and 0.0 < ours["recall"] < 1.0
    assert ours["precision"] == pytest.approx(theirs["precision"], abs=1e-6)
    assert ours["recall"] == pytest.approx(theirs["recall"], abs=1e-6)


def test_blocking_does_not_change_the_result():
    rng = np.random.default_rng(7)
    real, fake = rng.standard_normal((41, 5)), rng.standard_normal((37, 5)) + 0.3
    whole = precision_recall_density_coverage(real, fake)
    for block_elements in (1, 50, 100):  # one row, one row, two rows per block
        assert precision_recall_density_coverage(real, fake, block_elements=block_elements) == whole


def test_features_far_from_the_origin():
    # A common shift of 1e8 must not change which points are inside which balls.
    rng = np.random.default_rng(8)
    real, fake = rng.standard_normal((30, 4)), rng.standard_normal((30, 4)) * 1.1
    assert precision_recall_density_coverage(real + 1e8, fake + 1e8) == precision_recall_density_coverage(real, fake)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"real": np.zeros((3, 2))}, "k=3 needs more than 3 real samples, got 3"),
        ({"fake": np.zeros((2, 2))}, "k=3 needs more than 3 fake samples, got 2"),
        ({"fake": np.zeros((10, 3))}, "differ in dimension: 2 vs 3"),
        ({"real": np.full((10, 2), np.inf)}, "real features contain NaN or infinite"),
        ({"k": 0}, "k must be an integer >= 1, got 0"),
        ({"block_elements": 0}, "block_elements must be an integer >= 1"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    arguments = {"real": np.zeros((10, 2)), "fake": np.zeros((10, 2)), **kwargs}
    with pytest.raises(ValueError, match=message):
        precision_recall_density_coverage(**arguments)
