"""Sample-quality metrics: Frechet distance, KID, precision/recall/density/coverage.

Everything here works on plain numpy feature matrices (rows are samples), so
any feature extractor (Inception, DINOv2, a small test classifier) can feed the
same implementation.
"""

from ganzoo.metrics.frechet import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
)
from ganzoo.metrics.kid import kernel_inception_distance
from ganzoo.metrics.prdc import precision_recall_density_coverage

__all__ = [
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "kernel_inception_distance",
    "precision_recall_density_coverage",
]
