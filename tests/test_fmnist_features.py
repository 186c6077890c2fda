"""The test-time Fashion-MNIST judge: accurate, and its feature space is meaningful."""

from __future__ import annotations

import numpy as np
import torch

from fmnist_features import CLASSIFIER_TRAIN_SIZE, FEATURE_DIM, features, frechet_to_real, predict
from ganzoo.metrics import frechet_distance_from_features

N = 1000  # images per side of every Frechet comparison; equal sizes keep the bias equal


def test_classifier_is_accurate_on_held_out_images(fmnist_data, trained_fmnist_classifier):
    images, labels = fmnist_data
    held_images, held_labels = images[CLASSIFIER_TRAIN_SIZE:], labels[CLASSIFIER_TRAIN_SIZE:]
    accuracy = (predict(trained_fmnist_classifier, held_images) == held_labels).float().mean().item()
    assert accuracy > 0.80, f"held-out accuracy {accuracy:.3f}"


def test_features_are_deterministic_and_shaped(fmnist_data, trained_fmnist_classifier):
    images = fmnist_data[0][:50]
    first = features(trained_fmnist_classifier, images)
    assert first.shape == (50, FEATURE_DIM) and first.dtype == np.float64
    assert np.all(first >= 0), "features are taken after a ReLU"
    np.testing.assert_array_equal(first, features(trained_fmnist_classifier, images))


def test_real_halves_are_close_and_noise_or_one_class_are_far(fmnist_data, trained_fmnist_classifier):
    images, labels = fmnist_data
    model = trained_fmnist_classifier
    real, other_real = images[0::2][:N], images[1::2][:N]
    noise = torch.rand(N, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1

    same = frechet_to_real(model, other_real, real)
    to_noise = frechet_to_real(model, noise, real)
    real_features = features(model, real)  # extracted once for the ten class comparisons
    to_one_class = {
        c: frechet_distance_from_features(features(model, images[labels == c][:N]), real_features)
        for c in range(10)
    }

    assert same < to_noise / 20, (same, to_noise)
    worst = min(to_one_class.values())
    assert same < worst / 20, (same, to_one_class)
