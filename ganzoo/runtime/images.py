"""Generator outputs to pixels and grids with numpy and pillow only.

PyTorch sampling and the torch-free ONNX runtime both go through these, so
the same images give the same PNG in both paths. The grid is torchvision's
``make_grid(padding=2, pad_value=255)`` layout (a test checks it against
torchvision), written in numpy because the runtime must not import torch.
"""

from __future__ import annotations

import math

import numpy as np

PIXELS = "uint8 = round((x + 1) * 127.5), clamped to [0, 255]"


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] float32 -> uint8 by ``PIXELS`` (round half to even, as torch.round)."""
    scaled = (np.asarray(images, dtype=np.float32) + np.float32(1.0)) * np.float32(127.5)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def grid(images: np.ndarray, nrow: int | None = None, padding: int = 2, pad_value: int = 255):
    """A PIL image tiling uint8 images (N, C, H, W) in rows of ``nrow``, with white gutters."""
    from PIL import Image

    images = np.asarray(images)
    n, channels, height, width = images.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    cols = min(nrow, n)
    rows = int(math.ceil(n / cols))
    if n == 1:  # as make_grid: one image has no gutters
        padding = 0
    cell_h, cell_w = height + padding, width + padding
    canvas = np.full((channels, rows * cell_h + padding, cols * cell_w + padding), pad_value, dtype=np.uint8)
    for index, image in enumerate(images):
        y, x = divmod(index, cols)
        top, left = y * cell_h + padding, x * cell_w + padding
        canvas[:, top:top + height, left:left + width] = image
    return Image.fromarray(canvas[0] if channels == 1 else np.ascontiguousarray(canvas.transpose(1, 2, 0)))
