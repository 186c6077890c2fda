"""Generator inputs drawn by seed, declared as data so an exported model can redraw them.

A :class:`Latents` is a list of parts drawn in order from one numpy PCG64
generator seeded with ``seed``. Because it is data (``to_json``/``from_json``)
and needs only numpy, `ganzoo export` writes it into the ONNX file and the
torch-free runtime draws exactly the inputs PyTorch sampling draws: a seed names
the same image everywhere.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Gaussian:
    """N(0, I) values of ``shape`` per sample."""

    name: str
    shape: tuple[int, ...]

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.standard_normal((n, *self.shape), dtype=np.float32)


@dataclass(frozen=True)
class Uniform:
    """Uniform values in [low, high) of ``shape`` per sample (example images for translators)."""

    name: str
    shape: tuple[int, ...]
    low: float = -1.0
    high: float = 1.0

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, (n, *self.shape)).astype(np.float32)


@dataclass(frozen=True)
class Constant:
    """A per-sample setting with a default (a truncation psi); draws nothing from the generator."""

    name: str
    shape: tuple[int, ...]
    value: float

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full((n, *self.shape), self.value, dtype=np.float32)


KINDS = {"gaussian": Gaussian, "uniform": Uniform, "constant": Constant}


@dataclass(frozen=True)
class Latents:
    """``latents(n, seed)`` -> {input name: float32 array}; usable as ``Generator.latents``."""

    parts: tuple[Gaussian | Uniform | Constant, ...]

    def __call__(self, n: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {part.name: part.draw(rng, n) for part in self.parts}

    def to_json(self) -> str:
        kind_of = {cls: kind for kind, cls in KINDS.items()}
        return json.dumps([{"kind": kind_of[type(p)], **asdict(p)} for p in self.parts])

    @classmethod
    def from_json(cls, text: str) -> "Latents":
        parts = []
        for item in json.loads(text):
            item = dict(item)
            kind = KINDS[item.pop("kind")]
            item["shape"] = tuple(item["shape"])
            parts.append(kind(**item))
        return cls(tuple(parts))
