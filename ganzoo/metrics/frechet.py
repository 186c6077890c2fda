"""Frechet distance between Gaussians fitted to feature sets (the core of FID).

FID: Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a
Local Nash Equilibrium", NeurIPS 2017. numpy only, float64 throughout; the
covariance is the unbiased one (``np.cov``, ddof=1), as in pytorch-fid and
torch-fidelity.

The trace of the matrix square root of ``S1 @ S2`` is taken from symmetric
eigendecompositions instead of a general ``sqrtm``: ``S1 @ S2`` is not
symmetric, but it is similar to the symmetric PSD matrix
``sqrt(S1) @ S2 @ sqrt(S1)``, whose eigenvalues ``eigh`` finds stably.

The checks the standard tools make, and what becomes of them here:

* pytorch-fid (after TTUR, the original TensorFlow code) takes
  ``scipy.linalg.sqrtm(S1 @ S2)``. When the product is singular sqrtm can come
  back non-finite; they then retry with ``1e-6 * I`` added to both covariances.
  Not needed here: ``eigh`` handles singular matrices exactly (a zero
  eigenvalue has root zero), and an offset would shift the result. Singular
  covariances are normal: fewer samples than feature dimensions.
* sqrtm of a real matrix can come back complex; pytorch-fid drops imaginary
  parts when those on the diagonal are below 1e-3 and raises otherwise.
  (torch-fidelity 0.4 sums the real parts of the complex square roots of
  ``eig(S1 @ S2)``, with no check.) ``eigh`` of a symmetric matrix has only
  real eigenvalues, so nothing imaginary arises here. What the imaginary part
  signals is a negative eigenvalue of ``S1 S2``, which for positive
  semi-definite ``S1`` and ``S2`` is only round-off, and otherwise means an
  input is not a covariance at all. We check that directly: each covariance's
  eigenvalues must not fall below ``-NEGATIVE_EIGENVALUE_TOLERANCE`` times its
  largest eigenvalue magnitude (a ValueError names the matrix and the
  eigenvalues); the smaller negatives left are round-off and are clipped to 0.
  The tolerance, 1e-6, is far above float64 round-off (about 1e-15 relative)
  and about 100 times above what storing a covariance in float32 costs
  (about 1e-8 relative for a rank-deficient 2048-d one), and far below any
  real indefiniteness.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "NEGATIVE_EIGENVALUE_TOLERANCE",
    "as_feature_matrix",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
]

NEGATIVE_EIGENVALUE_TOLERANCE = 1e-6
"""Negative eigenvalues of a covariance below this times its largest |eigenvalue| are an error."""


def as_feature_matrix(features: np.ndarray, name: str = "features") -> np.ndarray:
    """A finite float64 (samples, dims) matrix with at least one column, or a ValueError naming ``name``.

    Shared by the Frechet, KID and precision/recall code; each caller checks
    its own minimum number of rows.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples, dims) array, got shape {features.shape}")
    if features.shape[1] < 1:
        raise ValueError(f"{name} need at least 1 dimension (column), got 0")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return features


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


def _clipped_psd_eigenvalues(eigenvalues: np.ndarray, name: str) -> np.ndarray:
    """Eigenvalues of a covariance with round-off negatives set to 0; real negatives raise."""
    scale = float(np.max(np.abs(eigenvalues)))
    negative = np.sort(eigenvalues[eigenvalues < -NEGATIVE_EIGENVALUE_TOLERANCE * scale])
    if negative.size:
        shown = ", ".join(f"{value:.6g}" for value in negative[:5])
        more = f" and {negative.size - 5} more" if negative.size > 5 else ""
        raise ValueError(
            f"{name} is not a covariance matrix (not positive semi-definite): "
            f"{negative.size} negative eigenvalue(s) {shown}{more}, below "
            f"-{NEGATIVE_EIGENVALUE_TOLERANCE:g} x its largest eigenvalue magnitude {scale:.6g}"
        )
    return np.clip(eigenvalues, 0.0, None)


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^{1/2}) computed as Tr((sqrt(S1) S2 sqrt(S1))^{1/2}), both inputs checked PSD."""
    eigenvalues1, eigenvectors1 = np.linalg.eigh(sigma1)
    root1 = (eigenvectors1 * np.sqrt(_clipped_psd_eigenvalues(eigenvalues1, "sigma1"))) @ eigenvectors1.T
    _clipped_psd_eigenvalues(np.linalg.eigvalsh(sigma2), "sigma2")
    middle = root1 @ sigma2 @ root1
    middle = (middle + middle.T) / 2.0
    # With both inputs PSD up to the tolerance, negatives here are round-off.
    eigenvalues = np.linalg.eigvalsh(middle)
    return float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, S1) and N(mu2, S2).

    ``||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2})``, never negative.
    Raises ValueError if either covariance has clearly negative eigenvalues.
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
    """Mean and unbiased (ddof=1) covariance of a (samples, dims) feature matrix, in float64."""
    features = as_feature_matrix(features)
    if features.shape[0] < 2:
        raise ValueError(
            f"features need at least 2 samples (rows) for a covariance, got {features.shape[0]}"
        )
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
