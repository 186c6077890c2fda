"""Features of the real images, computed once per (image set, extractor) and cached under GANZOO_HOME.

The key is a sha256 of the decoded images themselves (every pixel, their
shape) and of the extractor's description (network, weights hash, resize), so
a changed folder, another resolution, a different subset or other weights can
never be served stale features. Features are stored rather than only means and
covariances because KID and precision/recall need them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..fileio import atomic_write


def cache_folder() -> Path:
    from ..data.catalog import ganzoo_home

    return ganzoo_home() / "eval-reference"


def image_set_hash(images) -> str:
    """sha256 of a uint8 (N, C, H, W) image set: its shape and every pixel, in order."""
    array = np.ascontiguousarray(np.asarray(images), dtype=np.uint8)
    digest = hashlib.sha256(json.dumps(list(array.shape)).encode())
    for start in range(0, len(array), 1024):
        digest.update(array[start:start + 1024].tobytes())
    return digest.hexdigest()


def reference_features(images, extractor, progress=None) -> tuple[np.ndarray, str, bool]:
    """(features, the image set's hash, whether they came from the cache)."""
    images_hash = image_set_hash(images)
    description = json.dumps(extractor.describe() | {"weights": None}, sort_keys=True)
    key = hashlib.sha256(f"{images_hash}\n{description}".encode()).hexdigest()[:32]
    path = cache_folder() / f"{extractor.name}-{key}.npy"
    if path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == (len(images), extractor.feature_dim):
                return cached.astype(np.float64), images_hash, True
        except (OSError, ValueError):
            pass  # a damaged cache file is recomputed and replaced
    # stored as float32; the first run uses the same rounding, so cached and fresh numbers agree exactly
    features = extractor.features(images, progress=progress).astype(np.float32).astype(np.float64)
    try:
        atomic_write(path, lambda f: np.save(f, features.astype(np.float32), allow_pickle=False))
    except Exception:  # a cache that cannot be written only costs time next run
        pass
    return features, images_hash, False
