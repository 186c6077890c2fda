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
from typing import Callable

import numpy as np

from ..errors import UserError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

# Decoding is mostly inside PIL's C code, which releases the GIL, so threads scale.
MAX_WORKERS = 8

# Formats that decode at a reduced scale for free (JPEG's DCT scaling); asking for
# at least twice the target size keeps the final Lanczos resize doing the real work.
_DRAFT_FACTOR = 2


def find_images(path: str | os.PathLike) -> list[Path]:
    """Image files under ``path`` at any depth, in a stable order (sorted by relative path parts).

    Extensions match in any case (.PNG, .Jpg). Hidden files and folders (a name
    starting with ".") are skipped: they are editor, OS or notebook droppings
    such as macOS "._x.jpg" resource forks, never training data.
    """
    root = _existing_folder(path)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in EXTENSIONS:
                found.append(Path(dirpath, name))
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def _existing_folder(path: str | os.PathLike) -> Path:
    """``path`` as a Path, or a UserError naming it when it is missing or not a folder."""
    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(f"no such folder: {root}")
    if not root.is_dir():
        raise UserError(f"not a folder: {root}")
    return root


def decode_image(path: str | os.PathLike, resolution: int, channels: int) -> np.ndarray:
    """One image file as uint8 (channels, resolution, resolution); UserError naming the file if unreadable."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            image.draft(None, (_DRAFT_FACTOR * resolution, _DRAFT_FACTOR * resolution))
            image.load()
            # Photos store their rotation in EXIF; apply it so portraits stay upright.
            image = ImageOps.exif_transpose(image)
            image = to_channels(image, channels)
            image = _resize_center_crop(image, resolution)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise UserError(f"cannot read image {path}: {error}") from None
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1).copy()


def to_channels(image, channels: int):
    """Convert any PIL mode to 8-bit 'L' (channels=1) or 'RGB' (channels=3), one rule per family."""
    from PIL import Image

    mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        # Alpha (or a palette with a transparent index): composite onto white, as a
        # viewer shows it; dropping alpha would expose arbitrary colours under it.
        image = _on_white(image)
    elif mode == "P" or mode == "1":
        # Palette without transparency: look the colours up. Bilevel: 0/255.
        image = image.convert("RGB" if mode == "P" else "L")
    elif mode.startswith("I") or mode == "F":
        # 16-bit and 32-bit greyscale (I;16*, I, F): scale the range to 8 bits.
        # PIL's own convert('L') clips values above 255, turning most 16-bit
        # images white, so we scale instead (see _scale_to_8bit for the ranges).
        image = Image.fromarray(_scale_to_8bit(image), "L")
    elif mode in ("CMYK", "YCbCr", "HSV", "RGBX"):
        # Other colour models: PIL's conversion to RGB.
        image = image.convert("RGB")
    # Finally the requested channels: luma (ITU-R 601-2) for 1, grey replicated for 3.
    return image.convert("L" if channels == 1 else "RGB")


def _on_white(image):
    """Alpha-composite the image onto an opaque white background; returns RGB."""
    from PIL import Image

    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _scale_to_8bit(image) -> np.ndarray:
    """High-bit-depth greyscale to uint8 by scaling, never clipping.

    I;16 (16-bit, any byte order): v * 255 / 65535, so 65535 -> 255 and 257*k -> k.
    I (32-bit int): 16-bit files decode to it too, so values within 0..65535 are
    scaled as 16-bit; any other range is stretched from its min..max to 0..255.
    F (float): values within 0..1 are multiplied by 255; otherwise min..max stretched.
    """
    values = np.asarray(image).astype(np.float64)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if image.mode.startswith("I;16"):
        scaled = values * (255.0 / 65535.0)
    elif image.mode == "I" and low >= 0 and high <= 65535:
        scaled = values * (255.0 / 65535.0)
    elif image.mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0
    elif high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(values)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


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


def _decode_or_error(path: Path, resolution: int, channels: int) -> np.ndarray | UserError:
    """decode_image for the thread pool: a bad file comes back as a value, so the others still finish."""
    try:
        return decode_image(path, resolution, channels)
    except UserError as error:
        return error


def load_folder(
    path: str | os.PathLike,
    resolution: int,
    channels: int,
    *,
    on_bad: Callable[[UserError], None] | None = None,
) -> np.ndarray:
    """Every image under ``path`` as uint8 (N, channels, resolution, resolution), in find_images order.

    A bad file raises a UserError naming it (the first one in order), unless
    ``on_bad`` is given: then each bad file's error is passed to it and the file
    is skipped (the "skip and report" choice).
    """
    files = find_images(path)
    if not files:
        raise UserError(f"no images in folder {path} (looked for {', '.join(EXTENSIONS)}, any case, in subfolders too)")
    out = np.empty((len(files), channels, resolution, resolution), dtype=np.uint8)
    keep = np.ones(len(files), dtype=bool)
    pool = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, os.cpu_count() or 1, len(files)))
    try:
        results = pool.map(_decode_or_error, files, [resolution] * len(files), [channels] * len(files))
        for index, result in enumerate(results):
            if isinstance(result, UserError):
                if on_bad is None:
                    raise result
                on_bad(result)
                keep[index] = False
            else:
                out[index] = result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if not keep.all():
        out = out[keep]
        if len(out) == 0:
            raise UserError(f"no readable images in folder {path}: all {len(files)} files failed to decode")
    return out
