"""Batches from datasets decoded once and kept on the device.

The order is a fresh permutation per epoch drawn from (seed, epoch); random
crops, flips and CycleGAN's random B images come from the feed's own seeded
generator. Position (epoch, index) and that generator's state are all resume
needs to continue exactly.

Batches reach the device without a host sync: indices and host-resident
images are copied from pinned memory with ``non_blocking=True``.

Under torchrun every rank runs the same feed (same seed, same draws) over the
global batch and keeps only its own rows (``rank``, ``world_size``): it decodes
and copies just those, so N processes see exactly the batches one process sees.
"""

from __future__ import annotations

import torch

from ..api import UNPAIRED
from ..errors import UserError

# Datasets up to this size live on the accelerator; larger ones stay in host memory
# and each batch is copied over.
DEVICE_RESIDENT_BYTES = 4 << 30


def _resident(images: torch.Tensor, device: torch.device, budget: int = DEVICE_RESIDENT_BYTES) -> torch.Tensor:
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError("images must be a uint8 tensor (N, C, H, W)")
    return images.to(device) if device.type != "cpu" and images.numel() <= budget else images


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device`` without making the host wait: a host tensor bound for a GPU goes through pinned
    memory with ``non_blocking=True`` (a plain copy from pageable memory synchronises the stream)."""
    if t.device == device or device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(127.5).sub_(1.0)


class _Feed:
    """Epochs of `length` items in a per-epoch order, plus crop/flip augmentation."""

    def __init__(self, length: int, batch_size: int, seed: int, device: torch.device, spec, name: str,
                 rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise UserError(f"batch_size must be positive, got {batch_size}")
        if batch_size > length:
            raise UserError(f"batch_size {batch_size} is larger than {name} ({length} images)")
        self.length, self.batch_size, self.seed, self.device = length, batch_size, seed, device
        self.rank, self.world_size = rank, world_size
        self.resolution = spec.resolution if spec is not None else None
        self.flip = bool(spec is not None and spec.flip)
        self.rng = torch.Generator().manual_seed(seed * 1_000_003 + 7)  # augmentation and random draws
        self.epoch = 0
        self.index = 0
        self._order: torch.Tensor | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self.length // self.batch_size

    def _epoch_order(self) -> torch.Tensor:
        if self._order is None:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._order = torch.randperm(self.length, generator=generator)
        return self._order

    def next_indices(self) -> torch.Tensor:
        if self.index + self.batch_size > self.length:
            self.epoch, self.index, self._order = self.epoch + 1, 0, None
        indices = self._epoch_order()[self.index:self.index + self.batch_size]
        self.index += self.batch_size
        return indices

    def local(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global-batch tensor (all of it with one process)."""
        if self.world_size == 1:
            return t
        n = len(t) // self.world_size
        return t[self.rank * n:(self.rank + 1) * n]

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """Random crops to the spec's resolution and random left-right flips, per image, in one gather.

        ``images`` are this rank's rows; the draws are made for the global batch and sliced.
        """
        size = images.shape[-1]
        target = self.resolution or size
        if target == size and not self.flip:
            return images
        n = len(images)
        total = n * self.world_size
        ys = self.local(torch.randint(0, size - target + 1, (total,), generator=self.rng))
        xs = self.local(torch.randint(0, size - target + 1, (total,), generator=self.rng))
        flips = (self.local(torch.rand(total, generator=self.rng) < 0.5) if self.flip
                 else torch.zeros(n, dtype=torch.bool))
        span = torch.arange(target)
        rows = ys[:, None] + span
        cols = torch.where(flips[:, None], xs[:, None] + span.flip(0), xs[:, None] + span)
        rows, cols = _to(rows, images.device), _to(cols, images.device)
        batch = torch.arange(n, device=images.device)
        picked = images[batch[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (N, R, R, C)
        return picked.permute(0, 3, 1, 2).contiguous()

    def center(self, images: torch.Tensor) -> torch.Tensor:
        size, target = images.shape[-1], self.resolution or images.shape[-1]
        top = (size - target) // 2
        return images[..., top:top + target, top:top + target]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index, self._order = int(state["epoch"]), int(state["index"]), None
        if "rng" in state:
            self.rng.set_state(state["rng"])


def _evenly_spaced(count: int, n: int) -> torch.Tensor:
    return torch.linspace(0, count - 1, min(n, count)).round().long()


class ImageFeed(_Feed):
    """Yields {"image": float (B, C, H, W) in [-1, 1]} batches, dropping the ragged last batch."""

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int, device: torch.device,
                 name: str = "data", spec=None, resident: bool = True, rank: int = 0, world_size: int = 1):
        super().__init__(len(images), batch_size, seed, device, spec, name, rank, world_size)
        self.images = _resident(images, device, DEVICE_RESIDENT_BYTES if resident else 0)

    def __len__(self) -> int:
        return len(self.images)

    def next(self) -> dict[str, torch.Tensor]:
        raw = _to(self.images[_to(self.local(self.next_indices()), self.images.device)], self.device)
        return {"image": _to_unit(self.augment(raw))}

    def fixed_batch(self, n: int) -> dict[str, torch.Tensor]:
        """Up to n images spread over the dataset, centre-cropped: the same at every call."""
        raw = self.images[_evenly_spaced(len(self.images), n).to(self.images.device)]
        return {"image": _to_unit(self.center(raw).to(self.device))}


class UnpairedFeed(_Feed):
    """Yields {"A": ..., "B": ...} batches as the CycleGAN reference draws them.

    An epoch has max(|A|, |B|) items in a shuffled order; A takes that index
    modulo |A| and B an index drawn at random per image (the reference's
    unaligned dataset with shuffling on), so domains of different sizes mix.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor, batch_size: int, seed: int, device: torch.device,
                 name: str = "data", spec=None, resident: bool = True, rank: int = 0, world_size: int = 1):
        super().__init__(max(len(a), len(b)), batch_size, seed, device, spec, name, rank, world_size)
        fits = resident and a.numel() + b.numel() <= DEVICE_RESIDENT_BYTES
        budget = DEVICE_RESIDENT_BYTES if fits else 0
        self.A, self.B = _resident(a, device, budget), _resident(b, device, budget)

    def __len__(self) -> int:
        return self.length

    def next(self) -> dict[str, torch.Tensor]:
        index_a = self.local(self.next_indices()) % len(self.A)
        index_b = self.local(torch.randint(0, len(self.B), (self.batch_size,), generator=self.rng))
        a = _to(self.A[_to(index_a, self.A.device)], self.device)
        b = _to(self.B[_to(index_b, self.B.device)], self.device)
        return {"A": _to_unit(self.augment(a)), "B": _to_unit(self.augment(b))}

    def fixed_batch(self, n: int) -> dict[str, torch.Tensor]:
        out = {}
        for key, images in (("A", self.A), ("B", self.B)):
            raw = images[_evenly_spaced(len(images), n).to(images.device)]
            out[key] = _to_unit(self.center(raw).to(self.device))
        return out


def make_feed(dataset, batch_size: int, seed: int, device: torch.device, spec, resident: bool = True,
              rank: int = 0, world_size: int = 1):
    """The feed for ``spec.kind``: an ImageFeed over an ImageSet, an UnpairedFeed over an UnpairedSet.

    ``resident=False`` keeps the images in host memory and copies each batch over. ``batch_size`` is
    global; ``rank`` of ``world_size`` gets its slice of every batch.
    """
    from ..data import ImageSet
    from ..data.unpaired import UnpairedSet

    expected = UnpairedSet if spec.kind == UNPAIRED else ImageSet
    if not isinstance(dataset, expected):
        raise TypeError(f"DataSpec kind {spec.kind!r} needs an {expected.__name__}, got {type(dataset).__name__}")
    if spec.kind == UNPAIRED:
        return UnpairedFeed(dataset.A, dataset.B, batch_size, seed, device, name=dataset.source, spec=spec,
                            resident=resident, rank=rank, world_size=world_size)
    return ImageFeed(dataset.images, batch_size, seed, device, name=dataset.source, spec=spec, resident=resident,
                     rank=rank, world_size=world_size)
