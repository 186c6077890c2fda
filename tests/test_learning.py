"""DCGAN learns the embedded data: the Frechet distance to real images falls to <= 0.3 of its start.

The distance is measured in the feature space of a small classifier trained
inside the test session on the same embedded data (no downloaded Inception).
"""

import json

import numpy as np
import pytest
import torch

from fmnist_features import frechet_to_real
from ganzoo import config, registry
from ganzoo.data import load_images
from ganzoo.sampling import generate
from ganzoo.train.trainer import Trainer

N_IMAGES = 2000


CLASS_LABELS = np.repeat(np.arange(10), N_IMAGES // 10)  # a conditional run draws each class alike


def generated_images(trainer, arch, cfg) -> torch.Tensor:
    spec = arch.generators(cfg)["G"]
    nets = trainer.sampling_nets()
    modes = {role: m.training for role, m in nets.items()}
    for m in nets.values():
        m.eval()
    labels = CLASS_LABELS if arch.num_classes(cfg) else None
    images = generate(nets[spec.role], spec, N_IMAGES, seed=123, device=torch.device("cpu"), labels=labels)
    for role, m in nets.items():
        m.train(modes[role])
    return images.float() / 127.5 - 1


def train_and_measure(name: str, flags: dict, classifier, fmnist_data, run_dir,
                      sets: dict | None = None) -> tuple[float, float, list, float | None]:
    """Frechet distance before and after a CPU run of ``name`` on the embedded data, its metrics, and, for a
    conditional run, the share of images the classifier puts in the class asked for (None otherwise)."""
    arch = registry.get(name)
    resolved = config.resolve(arch, sets=sets, flags={"device": "cpu", "seed": 0, "sample_every": flags["steps"],
                                                      "log_every": 50, **flags})
    trainer = Trainer(arch, resolved, load_images(None, arch.data_spec(resolved.config)), run_dir)
    real_images = fmnist_data[0]
    real = real_images[torch.randperm(len(real_images), generator=torch.Generator().manual_seed(1))[:N_IMAGES]]

    before = frechet_to_real(classifier, generated_images(trainer, arch, resolved.config), real)
    trainer.run()
    images = generated_images(trainer, arch, resolved.config)
    after = frechet_to_real(classifier, images, real)
    print(f"\n{name}: Frechet distance (classifier features): step 0 {before:.1f}, step {flags['steps']} "
          f"{after:.1f}, ratio {after / before:.3f}")
    accuracy = None
    if arch.num_classes(resolved.config):
        with torch.no_grad():
            predicted = torch.cat([classifier(images[i:i + 500]).argmax(1) for i in range(0, N_IMAGES, 500)])
        accuracy = float((predicted.numpy() == CLASS_LABELS).mean())
        print(f"{name} conditional: class accuracy {accuracy:.3f}")
    return before, after, records_of(run_dir), accuracy


def records_of(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


DCGAN_FLAGS = {"steps": 500, "batch_size": 64}


@pytest.fixture(scope="module")
def dcgan_unconditional(trained_fmnist_classifier, fmnist_data, tmp_path_factory):
    """The unconditional DCGAN run, measured once: its own test and the conditional run's baseline."""
    return train_and_measure("dcgan", DCGAN_FLAGS, trained_fmnist_classifier, fmnist_data,
                             tmp_path_factory.mktemp("dcgan") / "run")


@pytest.mark.slow
def test_dcgan_frechet_distance_falls_on_embedded_data(dcgan_unconditional):
    before, after, records, _ = dcgan_unconditional
    assert after <= 0.3 * before
    assert len(records) == DCGAN_FLAGS["steps"] // 50 and all("loss/D" in r and "loss/G" in r for r in records)


@pytest.mark.slow
def test_conditional_dcgan_draws_the_class_asked_for_as_well_as_unconditional(
        dcgan_unconditional, trained_fmnist_classifier, fmnist_data, tmp_path):
    """``--cond`` (num_classes 10, DCGAN's default "concat" conditioning), the same run otherwise: the classifier
    finds the class asked for in most images, and the images are as close to the real ones as the
    unconditional run's (issue 25's bound: Frechet distance at most 10% above it).

    Measured (seed 0, 2-core EPYC): class accuracy 0.69 at 500 steps, 0.78 at 1,000, 0.80 at 1,500 by the
    shipped fmnist classifier (benchmarks/conditional_dcgan.py); the projection pair ("projection") had 0.10
    at 500 steps and 0.38 at 1,500. This test's own classifier gave 0.793, and Frechet distance 44.9 against
    the unconditional run's 160.0."""
    _, uncond_after, _, _ = dcgan_unconditional
    before, after, records, accuracy = train_and_measure("dcgan", DCGAN_FLAGS, trained_fmnist_classifier,
                                                         fmnist_data, tmp_path / "run", sets={"num_classes": 10})
    print(f"Frechet distance: conditional {after:.1f}, unconditional {uncond_after:.1f}")
    assert accuracy >= 0.6  # chance is 0.1
    assert after <= 1.1 * uncond_after
    assert after <= 0.3 * before



@pytest.mark.slow
def test_stylegan_lite_frechet_distance_falls_on_embedded_data(trained_fmnist_classifier, fmnist_data, tmp_path):
    """The fashion-mnist preset (CPU-sized widths; path length off, as the reference's CIFAR config).

    One thread measured: ratio 0.83 at 500 steps (the generator still draws one shape), 0.37 at 1,000,
    0.32 at 1,500, 0.27 at 2,000 and 0.22 at 2,500.
    """
    steps = 2500
    before, after, records, _ = train_and_measure("stylegan-lite", {"steps": steps}, trained_fmnist_classifier,
                                                  fmnist_data, tmp_path / "run")
    assert after <= 0.3 * before
    assert len(records) == steps // 50
    assert {"loss/G", "loss/D", "loss/D_r1"} <= set().union(*records)
