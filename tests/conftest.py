"""Shared pytest fixtures.

Heavy imports (torch) happen inside fixtures, so test modules that check what
ganzoo imports are not affected merely by this file being collected.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def prepared_data_home(tmp_path_factory):
    """Prepared copies of the tests' data folders go to a session folder, not the user's cache
    (ganzoo.data.prepared_cache); subprocesses inherit it."""
    import os

    folder = tmp_path_factory.mktemp("prepared-home")
    old = os.environ.get("GANZOO_PREPARED")
    os.environ["GANZOO_PREPARED"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("GANZOO_PREPARED", None)
    else:
        os.environ["GANZOO_PREPARED"] = old


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


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """A smoke DCGAN run trained once per session with checkpoints at steps 1 and 2 (both finite, both with
    EMA); tests that damage a run take a copy (``run_copy`` in helpers)."""
    from helpers import SMOKE, ganzoo

    run = tmp_path_factory.mktemp("smoke-run") / "run"
    result = ganzoo("train", "dcgan", *SMOKE, "--sample-every", "100", "--checkpoint-every", "1", "--set",
                    "keep_checkpoints=10", "--steps", 2, "--out", run, timeout=300)
    assert result.returncode == 0, result.stderr
    return run
