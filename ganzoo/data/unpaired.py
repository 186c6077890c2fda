"""Two unpaired image domains, A and B, as CycleGAN trains on them.

A folder holds ``trainA/`` and ``trainB/`` (and usually ``testA/``, ``testB/``,
which training ignores), the layout of the official CycleGAN datasets. The
domains may differ in size. Without ``--data``, the embedded Fashion-MNIST test
split gives a pair: its sneakers as A and its ankle boots as B.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..api import DataSpec
from ..errors import UserError
from ..runtime.image_files import DEFAULT_MAX_PIXELS, scan_images

if TYPE_CHECKING:  # pragma: no cover
    import torch

DOMAINS = ("A", "B")
# Fashion-MNIST classes of the embedded pair (see embedded.CLASS_NAMES).
EMBEDDED_PAIR = {"A": 7, "B": 9}  # Sneaker -> Ankle boot


@dataclass
class UnpairedSet:
    """Domains as uint8 (N_A, C, R, R) and (N_B, C, R, R) at the spec's decode resolution: tensors in memory (the
    embedded pair) or PreparedImages read lazily from disk."""

    A: "torch.Tensor"
    B: "torch.Tensor"
    name: str
    source: str  # where the images came from: a folder, or "embedded:..."
    folders: dict[str, str] | None = None  # domain -> the folder its images came from

    def __len__(self) -> int:
        """Images per epoch, as the reference counts them: the larger domain's size."""
        return max(len(self.A), len(self.B))

    def describe(self) -> str:
        where = self.folders or {d: self.source for d in DOMAINS}
        return "; ".join(f"{d}: {len(getattr(self, d))} images ({where[d]})" for d in DOMAINS)


def load_unpaired(source: str | os.PathLike | None, spec: DataSpec, *,
                  on_bad: Callable[[UserError], None] | None = None,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> UnpairedSet:
    """The embedded pair, a catalog dataset (downloaded on first use) or a trainA/trainB folder."""
    from . import DEFAULT_DATASET, catalog_folder, unknown_dataset

    if source is None or str(source) == DEFAULT_DATASET:
        return embedded_pair(spec)
    from . import open_prepared_for
    from .prepared_cache import named_prepared

    named = catalog_folder(source, download=True)
    if named is not None:
        return load_unpaired_folder(named[1], spec, on_bad=on_bad, name=named[0].name, max_pixels=max_pixels,
                                    source=source)
    prepared = named_prepared(source)
    if prepared is not None:
        return unpaired_from_prepared(open_prepared_for(prepared, spec), on_bad)
    path = Path(source).expanduser()
    if path.is_dir():
        return load_unpaired_folder(path, spec, on_bad=on_bad, max_pixels=max_pixels, source=source)
    raise unknown_dataset(source)


def embedded_pair(spec: DataSpec) -> UnpairedSet:
    """Sneakers (A) and ankle boots (B) of the embedded test split, 1,000 each."""
    from . import DEFAULT_DATASET, EMBEDDED_SOURCE, embedded_images
    from .embedded import CLASS_NAMES

    images, labels = embedded_images(spec, classes=tuple(EMBEDDED_PAIR.values()))
    domains = {d: images[labels == cls].contiguous() for d, cls in EMBEDDED_PAIR.items()}
    names = {d: CLASS_NAMES[cls].lower() for d, cls in EMBEDDED_PAIR.items()}
    return UnpairedSet(domains["A"], domains["B"], DEFAULT_DATASET, EMBEDDED_SOURCE,
                       folders={d: f"embedded {names[d]}s" for d in DOMAINS})


def load_unpaired_folder(root: Path, spec: DataSpec, *, on_bad=None, name: str | None = None,
                         max_pixels: int = DEFAULT_MAX_PIXELS, source=None) -> UnpairedSet:
    """``root/trainA`` and ``root/trainB`` from their prepared copy (made now if missing); a missing or empty
    domain names its folder.

    Bad files of both domains are settled together (folder.settle_bad_files):
    one message lists them all, or each goes to ``on_bad``. ``source`` is what
    --data said (a catalog name, or the folder), for the copy's fingerprint.
    """
    from .prepared_cache import ensure_prepared

    root = Path(root).resolve()
    for domain in DOMAINS:
        folder = root / f"train{domain}"
        if not folder.is_dir():
            raise UserError(f"unpaired dataset {root} has no folder train{domain}/ (expected {folder}); "
                            "an unpaired dataset holds trainA/ and trainB/ (testA/ and testB/ optional)")
        scan = scan_images(folder)
        if not scan.files and not scan.not_regular:
            raise UserError(f"domain {domain} is empty: no images in {folder}")
    prepared = ensure_prepared(source if source is not None else root, root, spec, max_pixels=max_pixels,
                               name=name or root.name)
    return unpaired_from_prepared(prepared, on_bad, name=name or root.name, root=root)


def unpaired_from_prepared(prepared, on_bad, name: str | None = None, root: Path | None = None) -> UnpairedSet:
    """An UnpairedSet over a prepared dataset's domains A and B, its bad files settled first."""
    from . import settle_prepared_bad_files

    settle_prepared_bad_files(prepared, on_bad)
    root = root or Path(prepared.manifest.get("source") or prepared.path)
    domains = prepared.domains
    return UnpairedSet(domains["A"], domains["B"], name or str(prepared.manifest.get("name") or root.name),
                       str(root), folders={d: str(root / f"train{d}") for d in DOMAINS})
