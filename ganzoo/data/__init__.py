"""Datasets: what ``--data`` names, as uint8 images the trainer feeds from.

``load_data(source, spec)`` is the one entry point: it gives an ImageSet for
single-domain architectures and an UnpairedSet (ganzoo.data.unpaired) for
two-domain ones. ``source`` is ``None`` (the embedded Fashion-MNIST data, held
in memory), a catalog name (downloaded into the cache on first use), a folder,
a stylegan2-ada zip, or a prepared dataset (ganzoo.data.prepared). Anything but
the embedded data is read from its prepared copy, made on first use
(ganzoo.data.prepared_cache), so its images are memory-mapped, never held
whole in a process. torch is imported inside functions so that
``import ganzoo.data`` stays cheap for commands that never touch data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..api import IMAGES, UNPAIRED, DataSpec
from ..errors import UserError
from ..runtime.image_files import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

DEFAULT_DATASET = "fashion-mnist"  # the embedded data: the one place its name is written
EMBEDDED_SOURCE = f"embedded:{DEFAULT_DATASET}-test"

# Fashion-MNIST is 28x28; two black pixels on every side give the 32x32 that
# DCGAN-style networks (powers of two) expect, as classic MNIST GAN setups do.
_PAD = 2
# Resize the embedded set in chunks of at most this many bytes of float32 pixels, so a large target
# resolution needs little float memory beside the uint8 result.
_RESIZE_CHUNK_BYTES = 256 * 1024 * 1024


@dataclass
class ImageSet:
    """Decoded images ready for a feed.

    images: uint8 (N, C, H, W), exactly the DataSpec's channels and resolution: a tensor in memory (the
        embedded data) or a PreparedImages read lazily from disk (everything else).
    labels: int64 (N,) class indices where the source gives every image a class, else None
        (ganzoo.data.class_labels: the embedded classes, class subfolders, stylegan2-ada's dataset.json).
    name: short label for logs and run names (DEFAULT_DATASET, a folder's name).
    source: where the images came from (an absolute folder path, or EMBEDDED_SOURCE).
    classes: the class names, index = label; None exactly when ``labels`` is None.
    """

    images: "torch.Tensor"
    labels: "torch.Tensor | None"
    name: str
    source: str
    classes: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.images)


def load_data(
    source: str | os.PathLike | None,
    spec: DataSpec,
    *,
    on_bad: Callable[[UserError], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
):
    """The dataset ``source`` names, shaped as ``spec`` asks: an ImageSet or an UnpairedSet.

    A known dataset name (embedded, in the catalog, then a prepared dataset's
    name) wins over a folder of the same name (write ./name for the folder).
    The bad files a prepare left out are settled by ``on_bad``: None stops with
    one error listing every bad file; a callable is told about each one and the
    file is skipped. An image whose header declares more than ``max_pixels``
    pixels is a bad file, never decoded.

    With ``spec.labels`` (a conditional run) the ImageSet has labels and
    classes, or one UserError says why not: data without labels, an image
    without a class, a class folder without images (class_labels.require_labels);
    a source is checked before it is prepared, so nothing is written then.
    """
    if spec.kind == UNPAIRED:
        from .unpaired import load_unpaired

        return load_unpaired(source, spec, on_bad=on_bad, max_pixels=max_pixels)
    return load_images(source, spec, on_bad=on_bad, max_pixels=max_pixels)


def load_images(
    source: str | os.PathLike | None,
    spec: DataSpec,
    *,
    on_bad: Callable[[UserError], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageSet:
    """Single-domain images from ``source`` (see load_data)."""
    if spec.kind != IMAGES:
        raise UserError(f"data kind {spec.kind!r} is not single-domain images; use load_data")
    if source is None or str(source) == DEFAULT_DATASET:
        return _embedded(spec)
    named = catalog_folder(source)
    if named is not None:
        entry, folder = named
        raise UserError(f"'{source}' is a two-domain ({entry.kind}) dataset; this architecture trains on "
                        f"one domain of images: pass one of its folders instead, e.g. --data {folder / 'trainA'}")
    from .prepared_cache import named_prepared

    prepared = named_prepared(source)
    if prepared is not None:
        return images_from_prepared(open_prepared_for(prepared, spec), on_bad, labels=spec.labels)
    from .sources import is_dataset_zip

    path = Path(source).expanduser()
    if path.is_dir() or is_dataset_zip(path):
        from .prepared_cache import ensure_prepared

        prepared = ensure_prepared(source, path, spec, max_pixels=max_pixels)
        return images_from_prepared(prepared, on_bad, labels=spec.labels)
    raise unknown_dataset(source)


def open_prepared_for(folder, spec: DataSpec):
    """A prepared dataset named by the user, refused when it was prepared at another size or kind than ``spec``."""
    from .prepared import IMAGES as ONE_DOMAIN, open_prepared

    prepared = open_prepared(folder)
    shape = (prepared.resolution, prepared.channels)
    if shape != (spec.decode_resolution, spec.channels):
        raise UserError(f"prepared dataset {prepared.path} holds {prepared.resolution}x{prepared.resolution}x"
                        f"{prepared.channels} images; this config needs {spec.decode_resolution}x"
                        f"{spec.decode_resolution}x{spec.channels}: prepare it again with --resolution "
                        f"{spec.decode_resolution} --channels {spec.channels}, or pass its source")
    wanted = ["A", "B"] if spec.kind == UNPAIRED else [ONE_DOMAIN]
    if sorted(prepared.domains) != wanted:
        have = "two domains (A, B)" if "A" in prepared.domains else "one domain of images"
        raise UserError(f"prepared dataset {prepared.path} holds {have}; this architecture trains on "
                        f"{'two unpaired domains' if spec.kind == UNPAIRED else 'one domain of images'}")
    return prepared


def settle_prepared_bad_files(prepared, on_bad) -> None:
    """The files the prepare left out, as the decoder reported them: one error listing all, or each to ``on_bad``."""
    from .folder import settle_bad_files

    settle_bad_files([UserError(message) for _, message in prepared.bad], on_bad)
    where = Path(prepared.manifest.get("source") or prepared.path)
    for domain, images in prepared.domains.items():
        if len(images) > 0:
            continue
        if domain in ("A", "B"):  # the words load_folder and the unpaired loader have always used
            raise UserError(f"domain {domain} has no readable images: every file in {where / f'train{domain}'} "
                            "is bad")
        raise UserError(f"no readable images in folder {where}: all {len(images.bad)} files are bad")


def images_from_prepared(prepared, on_bad, labels: bool = False) -> ImageSet:
    """The ImageSet of a prepared dataset: labels and classes where every image has a class; with ``labels``
    (a conditional run) those or one UserError (class_labels.require_labels), before its bad files are settled."""
    import torch

    from .prepared import IMAGES as ONE_DOMAIN

    images = prepared.domains[ONE_DOMAIN]
    source = str(prepared.manifest.get("source") or prepared.path)
    classes, values = prepared_labels(prepared)
    if labels:
        from .class_labels import require_labels

        require_labels(where=source, classes=classes, labels=values, unlabelled=images.unlabelled,
                       origin=prepared.classes_from, bad=[relative for relative, _ in images.bad],
                       why_none=_why_no_labels(prepared))
    settle_prepared_bad_files(prepared, on_bad)
    complete = values is not None and classes is not None and not images.unlabelled
    return ImageSet(images=images, labels=torch.from_numpy(values) if complete else None,
                    name=str(prepared.manifest.get("name") or prepared.path.name), source=source,
                    classes=tuple(classes) if complete else None)


def prepared_labels(prepared) -> tuple[tuple[str, ...] | None, "np.ndarray | None"]:
    """(class names, labels as an int64 array in memory) of a prepared dataset's images, checked against its
    manifest (labels from -1 to the class count, -1 exactly for its unlabelled images), or (None, None)."""
    import numpy as np

    from .class_labels import UNLABELLED
    from .prepared import IMAGES as ONE_DOMAIN, labels_name

    images = prepared.domains[ONE_DOMAIN]
    classes = prepared.classes
    if images.labels is None or classes is None:
        return None, None
    values = np.array(images.labels, dtype=np.int64)
    low, high = (int(values.min()), int(values.max())) if len(values) else (0, 0)
    unlabelled = int((values == UNLABELLED).sum())
    if low < UNLABELLED or high >= len(classes) or unlabelled != len(images.unlabelled):
        raise UserError(f"{prepared.path / labels_name(ONE_DOMAIN)} does not match manifest.json (labels "
                        f"{low}..{high}, {unlabelled} of them -1; the manifest names {len(classes)} classes and "
                        f"{len(images.unlabelled)} unlabelled images): the prepared dataset {prepared.path} is "
                        "damaged: prepare it again")
    return classes, values


def _why_no_labels(prepared) -> str:
    """What a conditional run is told about a prepared dataset without labels, beyond that it has none."""
    kind = prepared.manifest.get("source_kind")
    if prepared.manifest.get("version") == 1 and kind == "folder":
        return (f" (its copy in {prepared.path} was prepared by an older ganzoo, which kept no classes from "
                "subfolders: prepare it again)")
    if kind in ("stylegan-zip", "stylegan-folder"):
        return " (its dataset.json says \"labels\": null)"
    return ""


def catalog_folder(source, download: bool = False):
    """(catalog entry, its cache folder) when ``source`` is a catalog name, else None.

    With ``download``, the folder is fetched into the cache first when it is missing.
    """
    from .catalog import catalog, dataset_dir, ensure_dataset

    entry = catalog().get(str(source))
    if entry is None:
        return None
    return entry, (ensure_dataset(entry.name) if download else dataset_dir(entry.name))


def source_folder(source: str | os.PathLike | None, download: bool = False) -> Path | None:
    """The folder ``source`` names (a catalog name's cache folder, or the folder itself), or None for embedded data.

    Nothing is decoded; with ``download``, a catalog dataset missing from the cache is fetched first.
    """
    if source is None or str(source) == DEFAULT_DATASET:
        return None
    named = catalog_folder(source, download=download)
    if named is not None:
        return named[1]
    from .prepared_cache import named_prepared

    return named_prepared(source) or Path(source).expanduser()


def unknown_dataset(source) -> UserError:
    from .catalog import catalog

    names = [DEFAULT_DATASET, *sorted(catalog())]
    return UserError(f"unknown dataset '{source}': not an existing folder and not a known dataset name "
                     f"(known: {', '.join(names)}; see `ganzoo data list`)")


def embedded_images(spec: DataSpec, classes: tuple[int, ...] | None = None) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Fashion-MNIST test split as uint8 (N, C, R, R) at the spec's decode resolution, and labels.

    Padded to 32x32, resized, channels replicated to the spec's; with ``classes``, only the images of
    those classes (resized alone: the unpaired pair needs 2 of the 10). Refused before any resizing when
    the result would not fit in memory.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from .embedded import load_fashion_mnist
    from .memory import require_memory_for

    images, labels = load_fashion_mnist()
    if classes is not None:
        chosen = np.isin(labels, classes)
        images, labels = images[chosen], labels[chosen]
    if spec.channels not in (1, 3):
        raise ValueError(f"DataSpec.channels must be 1 or 3, got {spec.channels}")
    require_memory_for(len(images), spec.channels, spec.decode_resolution, f"the embedded {DEFAULT_DATASET} data")
    padded = F.pad(torch.from_numpy(images).unsqueeze(1), (_PAD,) * 4)
    resized = _resize_uint8(padded, spec.decode_resolution)
    if spec.channels == 3:
        resized = resized.repeat(1, 3, 1, 1)
    return resized.contiguous(), torch.from_numpy(labels).long()


def _embedded(spec: DataSpec) -> ImageSet:
    from .embedded import CLASS_NAMES

    images, labels = embedded_images(spec)
    return ImageSet(images=images, labels=labels, name=DEFAULT_DATASET, source=EMBEDDED_SOURCE, classes=CLASS_NAMES)


def _resize_uint8(images: "torch.Tensor", resolution: int) -> "torch.Tensor":
    """Bilinear resize of uint8 (N, C, H, W) squares; antialiased when shrinking so thin strokes survive."""
    import torch
    import torch.nn.functional as F

    if images.shape[-1] == resolution:
        return images
    if resolution < 1:
        raise ValueError(f"DataSpec.resolution must be positive, got {resolution}")
    shrinking = resolution < images.shape[-1]
    out = torch.empty((*images.shape[:2], resolution, resolution), dtype=torch.uint8)
    per_chunk = max(1, _RESIZE_CHUNK_BYTES // (4 * images.shape[1] * max(resolution, images.shape[-1]) ** 2))
    for start in range(0, len(images), per_chunk):
        resized = F.interpolate(images[start:start + per_chunk].float(), size=(resolution, resolution),
                                mode="bilinear", align_corners=False, antialias=shrinking)
        out[start:start + per_chunk] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


__all__ = ["DataSpec", "ImageSet", "load_data", "load_images", "DEFAULT_DATASET"]
