"""Images from generators: latents by seed, outputs to uint8, grids to PNG.

Latents come from the generator's own `latents(n, seed)` (numpy PCG64), so a
seed names the same image in training grids, `ganzoo sample` and ONNX exports.
"""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8, the mapping every Generator declares (``ganzoo.runtime.images.PIXELS``)."""
    return ((images.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


@torch.no_grad()
def generate(net: torch.nn.Module, spec, n: int, seed: int, device: torch.device, chunk: int = 256,
             values=None, labels=None) -> torch.Tensor:
    """n images (uint8, N x C x H x W, on the CPU) from generator `net` described by `spec`.

    ``values`` sets per-sample scalar inputs for every image (``{"truncation": 0.7}``); ``labels`` (one class
    index, or N of them) the class of each image of a conditional generator (None: drawn with the latents).
    """
    inputs = spec.latents(n, seed) if labels is None else spec.latents(n, seed, labels=labels)
    for name, value in (values or {}).items():
        inputs[name] = np.full_like(inputs[name], value)
    out = []
    for start in range(0, n, chunk):
        args = [torch.from_numpy(np.ascontiguousarray(inputs[name][start:start + chunk])).to(device)
                for name in spec.inputs]
        out.append(to_uint8(net(*args)).cpu())
    return torch.cat(out)


def grid(images: torch.Tensor, nrow: int | None = None):
    """A PIL image of a grid of uint8 images (N, C, H, W), white gutters (``ganzoo.runtime.images.grid``)."""
    from .runtime.images import grid as numpy_grid

    return numpy_grid(images.numpy(), nrow)
