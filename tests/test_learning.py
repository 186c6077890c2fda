"""DCGAN learns the embedded data: the Frechet distance to real images falls to <= 0.3 of its start.

The distance is measured in the feature space of a small classifier trained
inside the test session on the same embedded data (no downloaded Inception).
"""

import json

import pytest
import torch

from fmnist_features import frechet_to_real
from ganzoo import config, registry
from ganzoo.data import load_images
from ganzoo.sampling import generate
from ganzoo.train.trainer import Trainer

STEPS = 500
N_IMAGES = 2000


def generated_images(trainer, arch, cfg) -> torch.Tensor:
    spec = arch.generators(cfg)["G"]
    nets = trainer.sampling_nets()
    modes = {role: m.training for role, m in nets.items()}
    for m in nets.values():
        m.eval()
    images = generate(nets[spec.role], spec, N_IMAGES, seed=123, device=torch.device("cpu"))
    for role, m in nets.items():
        m.train(modes[role])
    return images.float() / 127.5 - 1


@pytest.mark.slow
def test_dcgan_frechet_distance_falls_on_embedded_data(trained_fmnist_classifier, fmnist_data, tmp_path):
    arch = registry.get("dcgan")
    resolved = config.resolve(arch, flags={"steps": STEPS, "batch_size": 64, "device": "cpu", "seed": 0,
                                           "sample_every": STEPS, "log_every": 50})
    trainer = Trainer(arch, resolved, load_images(None, arch.data_spec(resolved.config)), tmp_path / "run")
    real_images = fmnist_data[0]
    real = real_images[torch.randperm(len(real_images), generator=torch.Generator().manual_seed(1))[:N_IMAGES]]

    before = frechet_to_real(trained_fmnist_classifier, generated_images(trainer, arch, resolved.config), real)
    trainer.run()
    after = frechet_to_real(trained_fmnist_classifier, generated_images(trainer, arch, resolved.config), real)

    print(f"\nFrechet distance (classifier features): step 0 {before:.1f}, step {STEPS} {after:.1f}, "
          f"ratio {after / before:.3f}")
    (tmp_path / "fd.json").write_text(json.dumps({"before": before, "after": after}))
    assert after <= 0.3 * before
    losses = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == STEPS // 50 and all("loss/D" in r and "loss/G" in r for r in losses)
