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


@dataclass(frozen=True)
class OneHot:
    """A class label per sample as a one-hot vector of ``shape`` (num_classes,): a conditional generator's label
    input. Drawn uniformly over the classes; callers usually choose the classes instead (``labels=``)."""

    name: str
    shape: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return int(self.shape[0])

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return one_hot(rng.integers(0, self.num_classes, n), self.num_classes)


def one_hot(labels, num_classes: int) -> np.ndarray:
    """float32 (N, num_classes) one-hot rows for integer ``labels`` (N,)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    out = np.zeros((len(labels), num_classes), dtype=np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def class_rows(n: int, num_classes: int) -> tuple[np.ndarray, int]:
    """Labels for a grid of n images with one row per class, in class order, and the row length: rows of
    n // num_classes images (at least 1; with fewer images than classes, the first n classes)."""
    per_row = max(1, n // num_classes)
    return (np.arange(n) // per_row) % num_classes, per_row


KINDS = {"gaussian": Gaussian, "uniform": Uniform, "constant": Constant, "onehot": OneHot}


@dataclass(frozen=True)
class Latents:
    """``latents(n, seed)`` -> {input name: float32 array}; usable as ``Generator.latents``."""

    parts: tuple[Gaussian | Uniform | Constant | OneHot, ...]

    def __call__(self, n: int, seed: int, labels=None) -> dict[str, np.ndarray]:
        """The inputs of n samples for ``seed``; ``labels`` (N class indices) set the label input of a
        conditional generator. Every part is drawn either way, so the other inputs do not depend on labels."""
        rng = np.random.default_rng(seed)
        inputs = {part.name: part.draw(rng, n) for part in self.parts}
        if labels is not None:
            part = self.label_part
            if part is None:
                raise ValueError("these latents have no label input (the generator is not conditional)")
            labels = np.broadcast_to(np.asarray(labels, dtype=np.int64), (n,))
            inputs[part.name] = one_hot(labels, part.num_classes)
        return inputs

    @property
    def label_part(self) -> OneHot | None:
        """The one-hot label input of a conditional generator, else None."""
        return next((part for part in self.parts if isinstance(part, OneHot)), None)

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
