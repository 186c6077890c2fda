"""KID against its definition (a double-loop MMD^2), closed forms and torch-fidelity's own function."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_kid import kid_features_to_metric

from ganzoo.metrics import kernel_inception_distance


def brute_force_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 (Binkowski et al. 2018) with k(a, b) = (a.b / d + 1)^3, one pair at a time."""
    m, d = len(x), x.shape[1]

    def k(a, b):
        return (sum(float(p) * float(q) for p, q in zip(a, b)) / d + 1.0) ** 3

    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    cross = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return within / (m * (m - 1)) - 2.0 * cross / (m * m)


@pytest.mark.parametrize("seed", [0, 1])
def test_one_full_subset_equals_the_definition(seed):
    # subset_size = n draws every row once: a permutation, which MMD^2 does not see.
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((9, 4))
    fake = rng.standard_normal((9, 4)) * 1.5 + 0.5
    mean, std = kernel_inception_distance(real, fake, subsets=1, subset_size=9)
    assert mean == pytest.approx(brute_force_mmd2(real, fake), rel=1e-12)
    assert std == 0.0


def test_identical_sets_give_the_small_negative_closed_form():
    # With X = Y the unbiased estimate is (2/m)(mean off-diagonal k - mean diagonal k) < 0.
    x = np.random.default_rng(2).standard_normal((40, 6))
    kernel = (x @ x.T / 6 + 1.0) ** 3
    m = len(x)
    off_diagonal = (kernel.sum() - np.trace(kernel)) / (m * (m - 1))
    expected = 2.0 / m * (off_diagonal - np.mean(np.diag(kernel)))
    mean, _ = kernel_inception_distance(x, x, subsets=1, subset_size=m)
    assert expected < 0
    assert mean == pytest.approx(expected, rel=1e-10)


def test_same_distribution_near_zero_and_shifted_distribution_large():
    rng = np.random.default_rng(3)
    real, same = rng.standard_normal((300, 16)), rng.standard_normal((300, 16))
    shifted = rng.standard_normal((300, 16)) + 1.0
    near, near_std = kernel_inception_distance(real, same, subsets=20, subset_size=100)
    far, _ = kernel_inception_distance(real, shifted, subsets=20, subset_size=100)
    assert abs(near) < 2 * near_std
    assert far > 100 * abs(near) and far > 1.0


def test_disjoint_sets_give_large_kid():
    rng = np.random.default_rng(4)
    real = rng.standard_normal((50, 8))
    mean, _ = kernel_inception_distance(real, real + 10.0, subsets=5, subset_size=20)
    assert mean > 1000.0


@pytest.mark.parametrize("subsets, subset_size", [(1, 50), (20, 25)])
def test_agrees_with_torch_fidelity_on_the_same_subsets(subsets, subset_size):
    rng = np.random.default_rng(5)
    real = rng.standard_normal((60, 16))
    fake = rng.standard_normal((50, 16)) * 0.8 + 0.3
    ours = kernel_inception_distance(real, fake, subsets=subsets, subset_size=subset_size, seed=7)
    theirs = kid_features_to_metric(
        torch.from_numpy(fake),  # torch-fidelity's input 1 is the generated set
        torch.from_numpy(real),
        kid_subsets=subsets,
        kid_subset_size=subset_size,
        rng_seed=7,
        verbose=False,
    )
    assert ours[0] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-6)
    assert ours[1] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-6)


def test_seeded():
    rng = np.random.default_rng(6)
    real, fake = rng.standard_normal((40, 5)), rng.standard_normal((40, 5)) + 0.2
    first = kernel_inception_distance(real, fake, subsets=4, subset_size=10, seed=3)
    assert kernel_inception_distance(real, fake, subsets=4, subset_size=10, seed=3) == first
    assert kernel_inception_distance(real, fake, subsets=4, subset_size=10, seed=4) != first


def test_accepts_float32_and_returns_floats():
    rng = np.random.default_rng(8)
    real, fake = rng.standard_normal((20, 5)), rng.standard_normal((20, 5))
    exact = kernel_inception_distance(real, fake, subsets=3, subset_size=10)
    single = kernel_inception_distance(real.astype(np.float32), fake.astype(np.float32), subsets=3, subset_size=10)
    assert all(isinstance(value, float) for value in single)
    assert single[0] == pytest.approx(exact[0], rel=1e-5, abs=1e-6)


def test_subset_larger_than_a_set_names_both_numbers():
    real, fake = np.zeros((1200, 3)), np.zeros((500, 3))
    with pytest.raises(ValueError, match=r"subset_size 1000 .*1200 real, 500 fake.*<= 500"):
        kernel_inception_distance(real, fake)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"real": np.zeros((10, 3)), "fake": np.zeros((10, 4))}, "differ in dimension: 3 vs 4"),
        ({"real": np.zeros(10), "fake": np.zeros((10, 4))}, "real features must be a 2-D"),
        ({"fake": np.full((10, 3), np.nan)}, "fake features contain NaN"),
        ({"subsets": 0}, "subsets must be an integer >= 1, got 0"),
        ({"subset_size": 1}, "subset_size must be an integer >= 2, got 1"),
        ({"subset_size": 2.5}, "subset_size must be an integer"),
        ({"seed": -1}, "seed must be an integer in"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    arguments = {"real": np.zeros((10, 3)), "fake": np.zeros((10, 3)), "subset_size": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        kernel_inception_distance(**arguments)
