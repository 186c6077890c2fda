"""Image files with pillow alone: finding them in folders and bringing any mode to grey or RGB.

Training data (``ganzoo.data.folder``) and the torch-free translation helpers
read images through these, so a picture becomes the same pixels in both.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UserError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


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
