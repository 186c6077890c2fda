"""DiffAugment: Zhao, Liu, Lin, Zhu and Han, "Differentiable Augmentation for
Data-Efficient GAN Training", NeurIPS 2020 (arXiv:2006.10738).

The same random, differentiable transforms are applied to every image the
discriminator sees, real or generated, so D cannot memorise a small training
set and G still gets gradients through them. The three policies of the paper,
with its parameters: colour (brightness +-0.5, saturation x[0, 2], contrast
x[0.5, 1.5]), translation (up to 1/8 of the image, zero fill) and cutout (a
square of half the image's side, zeroed). Randomness comes from the trainer's
seeded generator, so resume stays exact; nothing here synchronises with the host.

Every draw is per sample and goes through a draw function ``rand(n, *shape)``:
in training it is ``LossContext.rand``, which draws for the global batch and
keeps this rank's rows, so an image is augmented the same whether one process
or several compute its batch. A ``torch.Generator`` is accepted too (the plain
draw ``torch.rand(n, *shape, generator=...)``, what ``ctx.rand`` is on one process).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

from . import DIFFAUGMENT_POLICIES as POLICIES


def parse_policy(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    return names


Draw = Callable[..., torch.Tensor]  # rand(n, *shape): uniform [0, 1) float32, n rows for n samples


def as_draw(rand: Draw | torch.Generator) -> Draw:
    """``rand`` itself, or the plain per-sample draw from a torch.Generator (on the generator's device)."""
    if not isinstance(rand, torch.Generator):
        return rand
    generator = rand
    return lambda n, *shape: torch.rand((n, *shape), generator=generator, device=generator.device)


def _rand(n: int, rand: Draw, like: torch.Tensor) -> torch.Tensor:
    return rand(n, 1, 1, 1).to(like.dtype)


def color(x: torch.Tensor, rand: Draw | torch.Generator) -> torch.Tensor:
    rand, n = as_draw(rand), x.shape[0]
    x = x + (_rand(n, rand, x) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(n, rand, x) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(n, rand, x) + 0.5) + mean


def _randint(low: int, high: int, n: int, rand: Draw) -> torch.Tensor:
    """Integers in [low, high] per sample, (n, 1, 1), drawn on the device."""
    u = rand(n, 1, 1)
    return (low + (u * (high - low + 1)).floor().clamp(max=high - low)).long()


def translation(x: torch.Tensor, rand: Draw | torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ratio of its size, filling with zeros (one gather for the batch)."""
    rand = as_draw(rand)
    n, _, h, w = x.shape
    shift_y, shift_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = _randint(-shift_y, shift_y, n, rand)
    tx = _randint(-shift_x, shift_x, n, rand)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + ty + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + tx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, rand: Draw | torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ratio x the image's side per image, centred anywhere (clipped at the border)."""
    rand = as_draw(rand)
    n, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = _randint(0, h - (size_y % 2), n, rand)
    cx = _randint(0, w - (size_x % 2), n, rand)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    top, left = cy - size_y // 2, cx - size_x // 2
    inside = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)
    return x * (~inside).unsqueeze(1).to(x.dtype)


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...], rand: Draw | torch.Generator) -> torch.Tensor:
    """``x`` through each transform of ``policy``; ``rand`` is the per-sample draw (``ctx.rand``)."""
    rand = as_draw(rand)
    for name in policy:
        x = TRANSFORMS[name](x, rand)
    return x
