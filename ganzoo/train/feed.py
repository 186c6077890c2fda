"""Batches from a dataset decoded once and kept on the device.

The order is a fresh permutation per epoch drawn from (seed, epoch), so the
position (epoch, index) is all that resume needs to continue exactly.
"""

from __future__ import annotations

import torch

from ..errors import UserError

# Datasets up to this size live on the accelerator; larger ones stay in host memory
# and each batch is copied over.
DEVICE_RESIDENT_BYTES = 4 << 30


class ImageFeed:
    """Yields {"image": float (B, C, H, W) in [-1, 1]} batches, dropping the ragged last batch."""

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int, device: torch.device, name: str = "data"):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 tensor (N, C, H, W)")
        if batch_size < 1:
            raise UserError(f"batch_size must be positive, got {batch_size}")
        if batch_size > len(images):
            raise UserError(f"batch_size {batch_size} is larger than {name} ({len(images)} images)")
        self.device = device
        self.batch_size = batch_size
        self.seed = seed
        resident = device.type != "cpu" and images.numel() <= DEVICE_RESIDENT_BYTES
        self.images = images.to(device) if resident else images
        self.epoch = 0
        self.index = 0
        self._order: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.images)

    def _epoch_order(self) -> torch.Tensor:
        if self._order is None:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._order = torch.randperm(len(self.images), generator=generator).to(self.images.device)
        return self._order

    def next_indices(self) -> torch.Tensor:
        if self.index + self.batch_size > len(self.images):
            self.epoch, self.index, self._order = self.epoch + 1, 0, None
        indices = self._epoch_order()[self.index:self.index + self.batch_size]
        self.index += self.batch_size
        return indices

    def next(self) -> dict[str, torch.Tensor]:
        raw = self.images[self.next_indices()].to(self.device)
        return {"image": raw.float().div_(127.5).sub_(1.0)}

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.index, self._order = int(state["epoch"]), int(state["index"]), None


def make_feed(dataset, batch_size: int, seed: int, device: torch.device):
    """The feed for a dataset object from ganzoo.data (one domain of images for now)."""
    return ImageFeed(dataset.images, batch_size, seed, device, name=getattr(dataset, "source", "data"))
