"""What every feature extractor is: a network, its input convention, and the weights file it came from.

Metrics compare feature matrices; which network made them (and from which
weights) decides whether two numbers are comparable at all, so an extractor
carries its name, input size, feature width and the sha256 of its weights, and
``ganzoo eval`` records them beside every result.

``precision`` ("fp32", "bf16" or "fp16") is the arithmetic of the network
alone: each module runs its network under ``torch.autocast`` on the
extractor's device (``network_precision``), while resize and normalisation
stay float32 and features come back as float64. Reduced precision changes the
features, so it is part of ``describe()``: cached reference features and
results of different precisions never mix.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ...errors import UserError

PRECISIONS = ("fp32", "bf16", "fp16")
"""Network arithmetic an extractor can run in; fp32 is the default and the reference tools'."""


def check_precision(precision: str) -> str:
    """``precision`` if it is one of PRECISIONS, else one UserError listing them."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; precisions: {', '.join(PRECISIONS)}")
    return precision


def network_precision(device, precision: str):
    """The context to run an extractor's network in: nothing for fp32, else ``torch.autocast`` to bf16/fp16
    on ``device``'s type (only the network goes inside it; resize and normalisation stay float32)."""
    import torch

    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(torch.device(device).type, dtype=dtype)


@dataclass
class Extractor:
    """``features(uint8 (N, C, H, W))`` -> float64 (N, feature_dim), batched on ``device``.

    name: "inception", "dinov2", "fmnist".
    input_size: the square side the network sees after its own resize.
    resize: how images reach input_size (said in the docs, recorded with results).
    normalisation: what is done to [0, 255] pixels before the network.
    weights: the file loaded; weights_sha256: its hash.
    precision: the network's arithmetic ("fp32", or "bf16"/"fp16" autocast), applied by ``embed``.
    """

    name: str
    input_size: int
    feature_dim: int
    resize: str
    normalisation: str
    weights: Path | None
    weights_sha256: str
    batch_size: int
    embed: Callable  # torch uint8 (n, C, H, W) on the device -> float (n, feature_dim); one batch
    device: object = None
    extra: dict = field(default_factory=dict)
    precision: str = "fp32"

    def features(self, images, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Features of every image, in order; grey images are replicated to RGB by ``embed`` where needed."""
        import torch

        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"{self.name}: expected uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
        out = np.empty((len(images), self.feature_dim), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = images[start:start + self.batch_size].to(self.device)
                out[start:start + len(batch)] = self.embed(batch).double().cpu().numpy()
                if progress is not None:
                    progress(len(batch))
        return out

    def describe(self) -> dict:
        """What makes two results comparable: recorded in every eval JSON."""
        return {"extractor": self.name, "input_size": self.input_size, "feature_dim": self.feature_dim,
                "resize": self.resize, "normalisation": self.normalisation,
                "weights": str(self.weights) if self.weights else None, "weights_sha256": self.weights_sha256,
                "precision": self.precision}
