"""Images in and out of image-to-image generators, with numpy and pillow only.

`ganzoo translate` uses these for PyTorch generators, and the torch-free
runtime can use them for exported ones: inputs are gathered from files and
folders (keeping their names), scaled so the shorter side is ``size`` with both
sides a multiple of the generator's ``size_multiple`` (what its stride-2
downsamplings need; a generator without one gets its training size), and mapped
to [-1, 1] exactly as training data is.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UserError


def collect_inputs(inputs: list[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """(image file, output name relative to the output folder) for files and folders (recursively).

    A file keeps its name; a folder's images keep their paths below it. Two
    inputs that would write the same output are an error naming both.
    """
    from .image_files import find_images

    if not inputs:
        raise UserError("no input images given")
    found: list[tuple[Path, Path]] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            images = find_images(path)
            if not images:
                raise UserError(f"no images in folder {path}")
            found += [(image, image.relative_to(path)) for image in images]
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            raise UserError(f"no such file or folder: {path}")
    seen: dict[Path, Path] = {}
    for source, name in found:
        if name in seen:
            raise UserError(f"{seen[name]} and {source} would both be written as {name}; translate them separately")
        seen[name] = source
    return found


def target_size(width: int, height: int, size: int | None, multiple: int) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to ``size`` (None: unchanged), both rounded to ``multiple``."""
    if size is not None:
        scale = size / min(width, height)
        width, height = width * scale, height * scale
    return (max(multiple, int(round(width / multiple)) * multiple),
            max(multiple, int(round(height / multiple)) * multiple))


def load_for_translation(path: Path, channels: int, size: int | None, multiple: int | None = 1,
                         fixed: int | None = None) -> np.ndarray:
    """One image as float32 (1, C, H, W) in [-1, 1]; a file PIL cannot read is named in the error.

    ``multiple`` None means the network takes only ``fixed`` x ``fixed`` images.
    """
    from PIL import Image, ImageOps

    from .image_files import to_channels

    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image = to_channels(image, channels)
            if multiple is None:
                width = height = fixed
            else:
                width, height = target_size(image.width, image.height, size, multiple)
            if (width, height) != image.size:
                image = image.resize((width, height), Image.Resampling.BICUBIC)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return (array.astype(np.float32) / 127.5 - 1.0)[None]


def save_translation(image: np.ndarray, path: Path) -> None:
    """uint8 (C, H, W) written atomically in the format its name asks for (JPEG at quality 95)."""
    from PIL import Image

    from ..fileio import atomic_write

    array = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    picture = Image.fromarray(np.ascontiguousarray(array))
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    options = {"quality": 95} if fmt == "JPEG" else {}
    atomic_write(path, lambda f: picture.save(f, format=fmt, **options))
