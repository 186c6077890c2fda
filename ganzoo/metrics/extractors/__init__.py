"""Feature extractors behind one interface (``base.Extractor``), loaded by name.

Each module has ``load(device, weights=None, batch_size=...) -> Extractor``;
``weights`` is a local file (``--weights``); without it the module looks in
its caches and downloads when online, or raises a UserError naming the file to
put where. ``precision`` ("fp32" default, "bf16", "fp16") runs the network
under autocast (see ``base.network_precision``).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ...errors import UserError
from .base import PRECISIONS, Extractor, check_precision

EXTRACTORS = ("fmnist", "inception", "dinov2")


def load_extractor(name: str, device, weights: str | Path | None = None, batch_size: int = 64,
                   precision: str = "fp32") -> Extractor:
    if name not in EXTRACTORS:
        raise UserError(f"unknown feature extractor {name!r}; extractors: {', '.join(EXTRACTORS)}")
    check_precision(precision)
    module = importlib.import_module(f"{__name__}.{name}")
    return module.load(device, weights=Path(weights).expanduser() if weights else None, batch_size=batch_size,
                       precision=precision)


__all__ = ["EXTRACTORS", "PRECISIONS", "Extractor", "check_precision", "load_extractor"]
