"""A small Fashion-MNIST classifier whose penultimate layer is a feature space.

Learning tests for GANs need a judge that runs offline on the CPU in seconds:
Inception weights are not available there. This classifier is trained inside
the test session from the embedded Fashion-MNIST data; Frechet distances in its
128-d feature space separate real digits of clothing from noise or from a
collapsed generator.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ganzoo.metrics import frechet_distance_from_features

FEATURE_DIM = 128
CLASSIFIER_TRAIN_SIZE = 8000  # the session fixture trains on images[:8000]


class SmallCNN(nn.Module):
    """Three conv blocks on 32x32 grey images, a 128-d ReLU embedding, 10 logits."""

    def __init__(self, feature_dim: int = FEATURE_DIM, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 16x16
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4x4
        )
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(x))


def load_fashion_mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """The embedded 10k Fashion-MNIST test split as uint8 (N,1,32,32) images and int64 labels."""
    from ganzoo.api import DataSpec
    from ganzoo.data import load_images

    data = load_images(None, DataSpec("images", 32, 1))
    return data.images, torch.as_tensor(data.labels).long()


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] images to float [-1, 1], the range generators produce."""
    return images.float() / 127.5 - 1.0


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    seed: int = 0,
    epochs: int = 4,
    batch_size: int = 64,
    lr: float = 2e-3,
) -> nn.Module:
    """Train SmallCNN on float [-1, 1] (N,1,32,32) images; deterministic for a seed.

    Global RNG state is forked so that training the judge does not shift the
    random streams of whatever test uses it.
    """
    images, labels = images.float().cpu(), labels.long().cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        steps = epochs * ((len(images) + batch_size - 1) // batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
        model.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(images)).split(batch_size):
                loss = F.cross_entropy(model(images[batch]), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """Predicted class indices for float [-1, 1] images."""
    model.eval()
    images = images.detach().float().cpu()
    return torch.cat([model(chunk).argmax(1) for chunk in images.split(batch_size)])


@torch.no_grad()
def features(model: nn.Module, images: torch.Tensor, batch_size: int = 250) -> np.ndarray:
    """Penultimate-layer (post-ReLU) features of float [-1, 1] images, float64 (N, 128)."""
    model.eval()
    images = images.detach().float().cpu()
    if images.ndim != 4 or images.shape[1:] != (1, 32, 32):
        raise ValueError(f"expected images of shape (N, 1, 32, 32), got {tuple(images.shape)}")
    chunks = [model.embedding(chunk) for chunk in images.split(batch_size)]
    return torch.cat(chunks).double().numpy()


def frechet_to_real(model: nn.Module, fake_images: torch.Tensor, real_images: torch.Tensor) -> float:
    """Frechet distance between fake and real images in the classifier's feature space.

    Use the same number of fake and real images when comparing scores: the
    estimate is biased upwards for small samples.
    """
    return frechet_distance_from_features(features(model, fake_images), features(model, real_images))
