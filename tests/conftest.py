"""Shared pytest fixtures.

Heavy imports (torch) happen inside fixtures, so test modules that check what
ganzoo imports are not affected merely by this file being collected.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def fmnist_data():
    """The 10k Fashion-MNIST images as float [-1, 1] (N,1,32,32) and their labels."""
    from fmnist_features import load_fashion_mnist, to_unit_range

    images, labels = load_fashion_mnist()
    return to_unit_range(images), labels


@pytest.fixture(scope="session")
def trained_fmnist_classifier(fmnist_data):
    """Feature-space judge for learning tests, trained once per session (~10 s CPU).

    Trained on the first ``CLASSIFIER_TRAIN_SIZE`` images; the rest are held out.
    """
    from fmnist_features import CLASSIFIER_TRAIN_SIZE, train_classifier

    images, labels = fmnist_data
    return train_classifier(images[:CLASSIFIER_TRAIN_SIZE], labels[:CLASSIFIER_TRAIN_SIZE], seed=0)
