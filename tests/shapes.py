"""A procedural unpaired dataset with a known translation: discs (A) <-> squares (B).

Each image holds one shape in red, green or blue on black. Domain A draws
discs, domain B squares, with the same colours and position distribution but
no pairing. The true translation keeps colour and position and changes the
shape, so a translated image can be scored: its shape's fill of its bounding
box (pi/4 = 0.785 for a disc, 1 for a square), its centroid and its colour
against the source image's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Colours keep every channel well above the black background (96, not 0): a generator channel that sits at
# tanh's floor everywhere gets no gradient and stays dead, which a pure-colour palette invites.
BACKGROUND = 0
LOW, HIGH = 96, 255
PALETTE = np.array([[HIGH, LOW, LOW], [LOW, HIGH, LOW], [LOW, LOW, HIGH]], dtype=np.uint8)


def draw(kind: str, size: int, cx: float, cy: float, half: float, colour) -> np.ndarray:
    """uint8 (3, size, size): a disc of radius ``half`` or a square of half-side ``half`` at (cx, cy)."""
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    if kind == "disc":
        inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= half**2
    else:
        inside = (np.abs(xs - cx) <= half) & (np.abs(ys - cy) <= half)
    image = np.full((3, size, size), BACKGROUND, dtype=np.uint8)
    image[:, inside] = np.asarray(colour, dtype=np.uint8)[:, None]
    return image


@dataclass
class Shapes:
    images: np.ndarray  # uint8 (N, 3, S, S)
    centres: np.ndarray  # float (N, 2): x, y in pixels
    colours: np.ndarray  # int (N,): index into PALETTE


def make_shapes(kind: str, n: int, size: int = 32, seed: int = 0, half=(4.0, 7.0)) -> Shapes:
    """n images of one kind at random positions (kept inside the frame), sizes and palette colours."""
    rng = np.random.default_rng(seed)
    halves = rng.uniform(*half, n)
    margin = halves + 1.0
    cx = rng.uniform(margin, size - margin)
    cy = rng.uniform(margin, size - margin)
    colours = rng.integers(0, len(PALETTE), n)
    images = np.stack([draw(kind, size, x, y, h, PALETTE[c]) for x, y, h, c in zip(cx, cy, halves, colours)])
    return Shapes(images, np.stack([cx, cy], axis=1), colours)


@dataclass
class ShapeScore:
    fill: float  # the shape's area over its bounding box's
    centroid: tuple[float, float]  # x, y in pixels
    colour: np.ndarray  # mean RGB of the shape's pixels
    area: int


def score(image: np.ndarray, threshold: int = 48) -> ShapeScore | None:
    """Measure the one shape in a uint8 (3, S, S) image on the background; None when nothing is drawn.

    The shape is every pixel that differs from the background by ``threshold`` in some channel.
    """
    mask = np.abs(image.astype(np.int16) - BACKGROUND).max(axis=0) >= threshold
    area = int(mask.sum())
    if area == 0:
        return None
    ys, xs = np.nonzero(mask)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    return ShapeScore(area / box, (xs.mean() + 0.5, ys.mean() + 0.5), image[:, mask].mean(axis=1), area)


def nearest_colour(rgb: np.ndarray) -> int:
    return int(np.argmin(((PALETTE.astype(float) - rgb[None]) ** 2).sum(axis=1)))
