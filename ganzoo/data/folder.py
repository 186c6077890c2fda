"""A folder of images (searched recursively) decoded to one uint8 (N, C, H, W) array.

Every image becomes a square of ``resolution`` pixels: the shorter side is
resized to ``resolution`` with an antialiasing (Lanczos) filter and the centre
square is kept, the convention of DCGAN's CelebA/LSUN preprocessing. Any file
PIL cannot decode is reported by its path.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from ..errors import UserError
from .memory import require_memory_for
from ..runtime.image_files import (DEFAULT_MAX_PIXELS, EXTENSIONS, bad_files_error, check_pixels, find_images,
                                   scan_images, to_channels)

# Decoding is mostly inside PIL's C code, which releases the GIL, so threads scale.
MAX_WORKERS = 8

# Formats that decode at a reduced scale for free (JPEG's DCT scaling); asking for
# at least twice the target size keeps the final Lanczos resize doing the real work.
_DRAFT_FACTOR = 2

# What the one message for bad files suggests; the CLI's flag and the Python API's argument.
SKIP_HINT = "fix or remove them, or skip them with --skip-bad-files; on_bad= in Python"
PIXELS_SETTING = "--set max_image_pixels=N"


def decode_image(path: str | os.PathLike | BinaryIO, resolution: int, channels: int,
                 max_pixels: int = DEFAULT_MAX_PIXELS, *, name: str | None = None) -> np.ndarray:
    """One image file as uint8 (channels, resolution, resolution); UserError naming the file if unreadable.

    The size its header declares is checked against ``max_pixels`` before any pixel is decoded. ``path`` may
    be an open binary file (a member of a zip, ganzoo.data.sources); ``name`` is then what messages call it.
    """
    shown = name if name is not None else path
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            check_pixels(shown, *image.size, max_pixels, PIXELS_SETTING)
            image.draft(None, (_DRAFT_FACTOR * resolution, _DRAFT_FACTOR * resolution))
            image.load()
            # Photos store their rotation in EXIF; apply it so portraits stay upright.
            image = ImageOps.exif_transpose(image)
            image = to_channels(image, channels)
            image = _resize_center_crop(image, resolution)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        # Pillow repeats the name as a Python literal ('cannot identify image file 'x.png''): said once is
        # enough, and a name that is not UTF-8 would show its bytes two different ways.
        detail = str(error).replace(f" {path!r}", "")
        if isinstance(path, (str, os.PathLike)):
            detail = detail.replace(f" {str(path)!r}", "").replace(f" {os.fspath(path)!r}", "")
        raise UserError(f"cannot read image {shown}: {detail}") from None
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1).copy()


def _resize_center_crop(image, resolution: int):
    """Shorter side to ``resolution`` (Lanczos), then the centred square.

    Done as one resize of the centre square of the source (PIL's ``box``), which
    is the same geometry as resize-then-crop but samples the source only once.
    """
    from PIL import Image

    width, height = image.size
    side = min(width, height)
    if width == height == resolution:
        return image
    left, top = (width - side) / 2, (height - side) / 2
    box = (left, top, left + side, top + side)
    return image.resize((resolution, resolution), Image.Resampling.LANCZOS, box=box)


def _decode_or_error(path: Path, resolution: int, channels: int, max_pixels: int) -> np.ndarray | UserError:
    """decode_image for the thread pool: a bad file comes back as a value, so the others still finish."""
    try:
        return decode_image(path, resolution, channels, max_pixels)
    except UserError as error:
        return error


def decode_folder(path: str | os.PathLike, resolution: int, channels: int,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, list[UserError]]:
    """Every readable image under ``path`` as uint8 (N, channels, resolution, resolution), and an error per bad file.

    Images keep find_images order; a bad file (undecodable, over ``max_pixels``,
    not a regular file) is left out of the array. No images at all is an error.
    """
    scan = scan_images(path)
    if not scan.files and not scan.not_regular:
        raise UserError(f"no images in folder {path} (looked for {', '.join(EXTENSIONS)}, any case, in subfolders too)")
    files = [file.path for file in scan.files]
    require_memory_for(len(files), channels, resolution, f"folder {path}")
    out = np.empty((len(files), channels, resolution, resolution), dtype=np.uint8)
    keep = np.ones(len(files), dtype=bool)
    bad = list(scan.not_regular)  # (path, error), then sorted so the message follows find_images order
    if files:
        pool = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, os.cpu_count() or 1, len(files)))
        try:
            n = len(files)
            for index, result in enumerate(pool.map(_decode_or_error, files, [resolution] * n, [channels] * n,
                                                    [max_pixels] * n)):
                if isinstance(result, UserError):
                    bad.append((files[index], result))
                    keep[index] = False
                else:
                    out[index] = result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    root = Path(path).expanduser()
    bad.sort(key=lambda item: item[0].relative_to(root).parts)
    return (out if keep.all() else out[keep]), [error for _, error in bad]


def settle_bad_files(bad: list[UserError], on_bad: Callable[[UserError], None] | None) -> None:
    """``on_bad`` None: one UserError listing every bad file; else each is passed to ``on_bad`` (and skipped)."""
    if not bad:
        return
    if on_bad is None:
        raise bad_files_error(bad, SKIP_HINT)
    for error in bad:
        on_bad(error)


def load_folder(
    path: str | os.PathLike,
    resolution: int,
    channels: int,
    *,
    on_bad: Callable[[UserError], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Every image under ``path`` as uint8 (N, channels, resolution, resolution), in find_images order.

    Bad files raise one UserError listing them all, unless ``on_bad`` is given:
    then each bad file's error is passed to it and the file is skipped (the
    "skip and report" choice). ``max_pixels`` bounds what a header may declare.
    """
    images, bad = decode_folder(path, resolution, channels, max_pixels)
    settle_bad_files(bad, on_bad)
    if len(images) == 0:
        raise UserError(f"no readable images in folder {path}: all {len(bad)} files are bad")
    return images
