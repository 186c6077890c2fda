"""Feature extractors behind one interface (``base.Extractor``), loaded by name.

Each module has ``load(device, weights=None, batch_size=...) -> Extractor``;
``weights`` is a local file (``--weights``); without it the module looks in
its caches and downloads when online, or raises a UserError naming the file to
put where.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ...errors import UserError
from .base import Extractor

EXTRACTORS = ("fmnist", "inception", "dinov2")


def load_extractor(name: str, device, weights: str | Path | None = None, batch_size: int = 64) -> Extractor:
    if name not in EXTRACTORS:
        raise UserError(f"unknown feature extractor {name!r}; extractors: {', '.join(EXTRACTORS)}")
    module = importlib.import_module(f"{__name__}.{name}")
    return module.load(device, weights=Path(weights).expanduser() if weights else None, batch_size=batch_size)


__all__ = ["EXTRACTORS", "Extractor", "load_extractor"]
