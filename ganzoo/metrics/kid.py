"""Kernel Inception Distance (KID) on feature matrices.

Binkowski, Sutherland, Arbel and Gretton, "Demystifying MMD GANs", ICLR 2018.
KID is the squared maximum mean discrepancy (MMD^2) between the two feature
distributions under the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3``
(d the feature width), estimated without bias on random subsets and averaged.
Unlike FID it has an unbiased estimator, so it can be slightly negative when
the two sets come from the same distribution.

Computed as torch-fidelity does (``metric_kid.kid_features_to_metric``, itself
adapted from Binkowski's code), in float64:

* the estimator per subset of m rows from each set: within-set kernel sums
  without their diagonals over ``m (m - 1)``, minus twice the cross-set sum
  over all ``m^2`` pairs (Binkowski's ``mmd_est="unbiased"``);
* ``subsets`` subsets, each drawn without replacement with numpy's legacy
  ``RandomState(seed)``: first the fake rows, then the real rows. These are
  exactly the draws torch-fidelity makes for
  ``kid_features_to_metric(fake, real, rng_seed=seed)`` (its input 1 is the
  generated set), so for the same seed the numbers agree to round-off
  (torch-fidelity's default seed is 2020, ours 0; it computes in the features'
  own dtype, float32 for its Inception, we always in float64);
* the result: mean and population standard deviation (ddof=0) over subsets;
* a ``subset_size`` larger than either set is refused, as torch-fidelity does
  (Binkowski's code fails there too; clean-fid instead shrinks the subset to
  the smaller set). A caller that wants the shrink passes
  ``subset_size=min(1000, n_real, n_fake)`` itself, so it is visible in what
  it records.

Cost per subset: three m x m kernel matrices (m x d products), 24 MB at m = 1000.
"""

from __future__ import annotations

import numpy as np

from ganzoo.metrics.frechet import as_feature_matrix

__all__ = ["kernel_inception_distance", "polynomial_mmd2"]


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The KID kernel matrix ``(x.y / d + 1)^3`` between the rows of x and y."""
    kernel = x @ y.T
    kernel /= x.shape[1]
    kernel += 1.0
    return kernel**3


def polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between two equally sized float64 row sets under the KID kernel."""
    m = x.shape[0]
    k_xx = _polynomial_kernel(x, x)
    k_yy = _polynomial_kernel(y, y)
    k_xy = _polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def _positive_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"KID {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def kernel_inception_distance(
    real: np.ndarray,
    fake: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID between real and fake (samples, dims) features: (mean, standard deviation) over subsets."""
    real = as_feature_matrix(real, "real features")
    fake = as_feature_matrix(fake, "fake features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"real and fake features differ in dimension: {real.shape[1]} vs {fake.shape[1]}"
        )
    subsets = _positive_int(subsets, "subsets", 1)
    subset_size = _positive_int(subset_size, "subset_size", 2)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"KID seed must be an integer in [0, 2**32), got {seed!r}")
    n_real, n_fake = real.shape[0], fake.shape[0]
    if subset_size > min(n_real, n_fake):
        raise ValueError(
            f"KID subset_size {subset_size} is larger than the samples available "
            f"({n_real} real, {n_fake} fake); use subset_size <= {min(n_real, n_fake)} or more samples"
        )

    rng = np.random.RandomState(int(seed))
    values = np.empty(subsets)
    for i in range(subsets):
        fake_rows = rng.choice(n_fake, subset_size, replace=False)
        real_rows = rng.choice(n_real, subset_size, replace=False)
        values[i] = polynomial_mmd2(fake[fake_rows], real[real_rows])
    return float(values.mean()), float(values.std())
