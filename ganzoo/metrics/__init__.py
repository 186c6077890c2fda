"""Sample-quality metrics: Frechet distance now; KID and precision/recall later.

Everything here works on plain numpy feature matrices, so any feature extractor
(Inception, DINOv2, a small test classifier) can feed the same implementation.
"""

from ganzoo.metrics.frechet import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
)

__all__ = ["feature_statistics", "frechet_distance", "frechet_distance_from_features"]
