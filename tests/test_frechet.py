"""Frechet distance against closed forms, a slow general-sqrtm reference and scipy's sqrtm."""

from __future__ import annotations

import numpy as np
import pytest

from ganzoo.metrics import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
)


def random_spd(rng: np.random.Generator, dim: int, rank: int | None = None) -> np.ndarray:
    """A random symmetric PSD matrix; full rank unless ``rank`` is smaller than ``dim``."""
    x = rng.standard_normal((dim, rank if rank is not None else 2 * dim))
    return x @ x.T / x.shape[1]


def random_rotation(rng: np.random.Generator, dim: int) -> np.ndarray:
    """A random orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def reference_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """Textbook formula with sqrtm from eig of the non-symmetric product S1 @ S2."""
    eigenvalues, eigenvectors = np.linalg.eig(sigma1 @ sigma2)
    root = eigenvectors @ np.diag(np.sqrt(eigenvalues.astype(complex))) @ np.linalg.inv(eigenvectors)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root).real)


def test_identical_distributions_give_zero():
    rng = np.random.default_rng(0)
    for dim in (1, 5, 64):
        mu, sigma = rng.standard_normal(dim), random_spd(rng, dim)
        scale = np.trace(sigma)
        assert frechet_distance(mu, sigma, mu, sigma) <= 1e-8 * scale


def test_mean_shift_only_gives_squared_distance():
    rng = np.random.default_rng(1)
    sigma = random_spd(rng, 10)
    mu1, mu2 = rng.standard_normal(10), rng.standard_normal(10)
    expected = float(np.sum((mu1 - mu2) ** 2))
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(expected, rel=1e-8)


def test_diagonal_covariances_closed_form():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 4.0, 12), rng.uniform(0.1, 4.0, 12)
    mu1, mu2 = rng.standard_normal(12), rng.standard_normal(12)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu1 - mu2) ** 2)
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-10)


def test_one_dimensional_case():
    # For 1-D Gaussians the distance is (m1 - m2)^2 + (s1 - s2)^2 with s the std.
    got = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert got == pytest.approx(3.0**2 + (2.0 - 3.0) ** 2, rel=1e-12)


def test_commuting_covariances_closed_form():
    rng = np.random.default_rng(3)
    dim = 16
    q = random_rotation(rng, dim)
    a, b = rng.uniform(0.01, 5.0, dim), rng.uniform(0.01, 5.0, dim)
    sigma1, sigma2 = (q * a) @ q.T, (q * b) @ q.T
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu1 - mu2) ** 2)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)


def test_non_commuting_two_by_two_closed_form():
    # For 2x2 PSD matrices Tr((S1 S2)^{1/2}) = sqrt(Tr(S1 S2) + 2 sqrt(det S1 det S2)):
    # the square roots of the two eigenvalues of S1 S2, whose sum and product those are.
    sigma1 = np.array([[2.0, 0.9], [0.9, 1.0]])
    sigma2 = np.array([[0.5, -0.3], [-0.3, 3.0]])
    assert not np.allclose(sigma1 @ sigma2, sigma2 @ sigma1)
    mu1, mu2 = np.array([1.0, -1.0]), np.array([0.5, 2.0])
    trace_root = np.sqrt(np.trace(sigma1 @ sigma2) + 2 * np.sqrt(np.linalg.det(sigma1) * np.linalg.det(sigma2)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dim", [2, 16, 64])
def test_agrees_with_scipy_sqrtm(dim):
    # The route pytorch-fid takes: a general matrix square root of the non-symmetric product.
    from scipy import linalg

    rng = np.random.default_rng(200 + dim)
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    sigma1, sigma2 = random_spd(rng, dim), random_spd(rng, dim)
    assert not np.allclose(sigma1 @ sigma2, sigma2 @ sigma1)
    root = linalg.sqrtm(sigma1 @ sigma2)
    assert np.allclose(np.diagonal(root).imag, 0.0, atol=1e-3)
    diff = mu1 - mu2
    expected = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root.real)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)


def test_indefinite_covariance_is_refused_naming_its_eigenvalues():
    q = random_rotation(np.random.default_rng(9), 3)
    indefinite = (q * np.array([2.0, 1.0, -0.5])) @ q.T
    zeros = np.zeros(3)
    with pytest.raises(ValueError, match=r"sigma1 is not a covariance .* 1 negative eigenvalue\(s\) -0\.5,"):
        frechet_distance(zeros, indefinite, zeros, np.eye(3))
    with pytest.raises(ValueError, match=r"sigma2 is not a covariance .* -0\.5, .*magnitude 2\b"):
        frechet_distance(zeros, np.eye(3), zeros, indefinite)
    with pytest.raises(ValueError, match=r"sigma1 .* 2 negative eigenvalue\(s\) -2, -1,"):
        frechet_distance(np.zeros(2), -np.diag([1.0, 2.0]), np.zeros(2), np.eye(2))


def test_round_off_negative_eigenvalues_are_clipped():
    # A rank-deficient covariance stored in float32 has eigenvalues a hair below zero.
    rng = np.random.default_rng(10)
    sigma1, sigma2 = random_spd(rng, 64, rank=10), random_spd(rng, 64, rank=20)
    rounded = sigma1.astype(np.float32).astype(np.float64)
    assert np.linalg.eigvalsh((rounded + rounded.T) / 2).min() < 0
    mu = np.zeros(64)
    exact = frechet_distance(mu, sigma1, mu, sigma2)
    # Not closer: float32 moves the zero eigenvalues by ~1e-8, their roots by ~1e-4.
    assert frechet_distance(mu, rounded, mu, sigma2) == pytest.approx(exact, rel=1e-3)


def test_feature_statistics_are_unbiased():
    # Two samples 0 and 2: unbiased variance 2 (the biased one would be 1).
    _, sigma = feature_statistics(np.array([[0.0, 1.0], [2.0, 5.0]]))
    np.testing.assert_allclose(sigma, [[2.0, 4.0], [4.0, 8.0]], rtol=1e-15)


def test_symmetric_in_its_arguments():
    rng = np.random.default_rng(4)
    mu1, mu2 = rng.standard_normal(20), rng.standard_normal(20)
    sigma1, sigma2 = random_spd(rng, 20), random_spd(rng, 20)
    forward = frechet_distance(mu1, sigma1, mu2, sigma2)
    backward = frechet_distance(mu2, sigma2, mu1, sigma1)
    assert forward == pytest.approx(backward, rel=1e-10)


def test_singular_covariances_stay_finite():
    rng = np.random.default_rng(5)
    dim = 32
    sigma1 = random_spd(rng, dim, rank=5)  # fewer samples than dimensions
    sigma2 = random_spd(rng, dim, rank=7)
    mu = np.zeros(dim)
    value = frechet_distance(mu, sigma1, mu, sigma2)
    assert np.isfinite(value) and value > 0
    assert frechet_distance(mu, sigma1, mu, sigma1) <= 1e-8 * np.trace(sigma1)
    assert frechet_distance(mu, np.zeros((dim, dim)), mu, np.zeros((dim, dim))) == 0.0


def test_singular_diagonal_closed_form():
    a = np.array([0.0, 1.0, 0.0, 4.0])
    b = np.array([2.0, 0.0, 0.0, 1.0])
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(np.zeros(4), np.diag(a), np.zeros(4), np.diag(b))
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dim", [2, 8, 50])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_slow_reference(dim, seed):
    rng = np.random.default_rng(100 + seed)
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    sigma1, sigma2 = random_spd(rng, dim), random_spd(rng, dim)
    expected = reference_frechet(mu1, sigma1, mu2, sigma2)
    got = frechet_distance(mu1, sigma1, mu2, sigma2)
    assert got == pytest.approx(expected, rel=1e-6)


def test_accepts_float32_and_computes_in_float64():
    rng = np.random.default_rng(6)
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    sigma1, sigma2 = random_spd(rng, 8), random_spd(rng, 8)
    exact = frechet_distance(mu1, sigma1, mu2, sigma2)
    single = frechet_distance(*(x.astype(np.float32) for x in (mu1, sigma1, mu2, sigma2)))
    assert isinstance(single, float)
    assert single == pytest.approx(exact, rel=1e-5)


def test_feature_statistics_match_numpy():
    rng = np.random.default_rng(7)
    features = rng.standard_normal((200, 6)) @ rng.standard_normal((6, 6)) + 3.0
    mu, sigma = feature_statistics(features)
    np.testing.assert_allclose(mu, np.mean(features, axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(features, rowvar=False), rtol=1e-12)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64


def test_feature_statistics_single_column_gives_matrix():
    mu, sigma = feature_statistics(np.array([[1.0], [2.0], [4.0]]))
    assert mu.shape == (1,) and sigma.shape == (1, 1)
    assert sigma[0, 0] == pytest.approx(np.var([1.0, 2.0, 4.0], ddof=1))


def test_from_features_matches_from_statistics():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((300, 5))
    b = rng.standard_normal((250, 5)) * 2.0 + 1.0
    expected = frechet_distance(*feature_statistics(a), *feature_statistics(b))
    assert frechet_distance_from_features(a, b) == expected
    assert frechet_distance_from_features(a, a) <= 1e-8


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.zeros((2, 2)), np.eye(2), np.zeros(2), np.eye(2)), "mu1 must be a 1-D"),
        ((np.zeros(2), np.eye(2), np.zeros(3), np.eye(3)), "mu1 and mu2 differ"),
        ((np.zeros(2), np.ones((2, 3)), np.zeros(2), np.eye(2)), "sigma1 must be a square"),
        ((np.zeros(2), np.eye(2), np.zeros(2), np.ones(2)), "sigma2 must be a square"),
        ((np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)), "sigma1 has shape .* dimension 2"),
        ((np.array([np.nan, 0.0]), np.eye(2), np.zeros(2), np.eye(2)), "mu1 contains NaN"),
    ],
)
def test_bad_statistics_raise_clear_errors(args, message):
    with pytest.raises(ValueError, match=message):
        frechet_distance(*args)


@pytest.mark.parametrize(
    "features, message",
    [
        (np.zeros(10), "2-D"),
        (np.zeros((2, 3, 4)), "2-D"),
        (np.zeros((1, 4)), "at least 2 samples"),
        (np.zeros((5, 0)), "at least 1 dimension"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), "NaN or infinite"),
    ],
)
def test_bad_features_raise_clear_errors(features, message):
    with pytest.raises(ValueError, match=message):
        feature_statistics(features)


def test_feature_sets_of_different_width_raise():
    with pytest.raises(ValueError, match="differ in dimension: 3 vs 4"):
        frechet_distance_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
