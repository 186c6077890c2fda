"""Frechet distance between Gaussians fitted to feature sets (the core of FID).

numpy only, float64 throughout. The trace of the matrix square root of
``S1 @ S2`` is taken from symmetric eigendecompositions instead of a general
``sqrtm``: ``S1 @ S2`` is not symmetric, but it is similar to the symmetric PSD
matrix ``sqrt(S1) @ S2 @ sqrt(S1)``, whose eigenvalues ``eigh`` finds stably and
whose tiny negative round-off we can clip. That avoids the complex parts and
NaNs that ``scipy.linalg.sqrtm`` produces for singular or near-singular
covariances (e.g. fewer samples than feature dimensions).
"""

from __future__ import annotations

import numpy as np

__all__ = ["feature_statistics", "frechet_distance", "frechet_distance_from_features"]


def _as_mean(mu: np.ndarray, name: str) -> np.ndarray:
    """A finite 1-D float64 mean vector, or a ValueError that says what is wrong."""
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 1:
        raise ValueError(f"{name} must be a 1-D mean vector, got shape {mu.shape}")
    if not np.all(np.isfinite(mu)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return mu


def _as_covariance(sigma: np.ndarray, dim: int, name: str) -> np.ndarray:
    """A finite, square, symmetrised float64 covariance of size ``dim``."""
    sigma = np.asarray(sigma, dtype=np.float64)
    if sigma.ndim != 2 or sigma.shape[0] != sigma.shape[1]:
        raise ValueError(f"{name} must be a square 2-D covariance matrix, got shape {sigma.shape}")
    if sigma.shape[0] != dim:
        raise ValueError(
            f"{name} has shape {sigma.shape} but the means have dimension {dim}"
        )
    if not np.all(np.isfinite(sigma)):
        raise ValueError(f"{name} contains NaN or infinite values")
    # Covariances from np.cov are symmetric only up to round-off; eigh needs exact.
    return (sigma + sigma.T) / 2.0


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative round-off clipped)."""
    eigenvalues, eigenvectors = np.linalg.eigh(sigma)
    root = np.sqrt(np.clip(eigenvalues, 0.0, None))
    return (eigenvectors * root) @ eigenvectors.T


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^{1/2}) computed as Tr((sqrt(S1) S2 sqrt(S1))^{1/2})."""
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    middle = (middle + middle.T) / 2.0
    eigenvalues = np.linalg.eigvalsh(middle)
    return float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, S1) and N(mu2, S2).

    ``||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2})``, never negative.
    """
    mu1 = _as_mean(mu1, "mu1")
    mu2 = _as_mean(mu2, "mu2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 differ in shape: {mu1.shape} vs {mu2.shape}")
    sigma1 = _as_covariance(sigma1, mu1.shape[0], "sigma1")
    sigma2 = _as_covariance(sigma2, mu2.shape[0], "sigma2")

    diff = mu1 - mu2
    distance = (
        float(diff @ diff)
        + float(np.trace(sigma1))
        + float(np.trace(sigma2))
        - 2.0 * _trace_sqrt_product(sigma1, sigma2)
    )
    # Identical inputs can land a hair below zero through cancellation.
    return max(distance, 0.0)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of a (samples, dims) feature matrix, in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(
            f"features must be a 2-D (samples, dims) array, got shape {features.shape}"
        )
    if features.shape[0] < 2:
        raise ValueError(
            f"features need at least 2 samples (rows) for a covariance, got {features.shape[0]}"
        )
    if features.shape[1] < 1:
        raise ValueError("features need at least 1 dimension (column), got 0")
    if not np.all(np.isfinite(features)):
        raise ValueError("features contain NaN or infinite values")
    mu = features.mean(axis=0)
    sigma = np.cov(features, rowvar=False, ddof=1)
    return mu, np.atleast_2d(sigma)


def frechet_distance_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two (samples, dims) feature sets."""
    mu_a, sigma_a = feature_statistics(a)
    mu_b, sigma_b = feature_statistics(b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(
            f"feature sets differ in dimension: {mu_a.shape[0]} vs {mu_b.shape[0]}"
        )
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
