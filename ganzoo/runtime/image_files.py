"""Image files with pillow alone: finding them in folders and bringing any mode to grey or RGB.

Training data (``ganzoo.data.folder``) and the torch-free translation helpers
read images through these, so a picture becomes the same pixels in both. Only
regular files are ever opened (a FIFO named x.png would block its reader
forever), and an image's declared size is checked against a pixel limit before
it is decoded (a small file can declare a huge image: a decompression bomb).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..fileio import not_regular_message

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

# The default most pixels an image may declare (width x height) before it is decoded:
# 4096 x 4096, about 1/5 of Pillow's own bomb limit; TrainOptions.max_image_pixels and
# `ganzoo translate --max-pixels` start from it.
DEFAULT_MAX_PIXELS = 4096 * 4096

# One message lists at most this many bad files, then says how many more there are.
LISTED_BAD_FILES = 20


@dataclass(frozen=True)
class ImageFile:
    """A regular image file found in a folder, with what a fingerprint needs (no decoding)."""

    path: Path
    relative: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class FolderScan:
    """What a folder holds under image names: regular files, and the rest as errors naming them."""

    files: list[ImageFile]
    not_regular: list[tuple[Path, UserError]]  # (path, the error naming it)


def scan_images(path: str | os.PathLike) -> FolderScan:
    """Files under ``path`` with image names at any depth, in a stable order (sorted by relative path parts).

    Extensions match in any case (.PNG, .Jpg). Hidden files and folders (a name
    starting with ".") are skipped: they are editor, OS or notebook droppings
    such as macOS "._x.jpg" resource forks, never training data. Each name is
    stat()ed, never opened: one that is not a regular file (a FIFO, socket or
    device, through a link or not, or a broken link) is returned with an error naming it.
    """
    root = _existing_folder(path)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in EXTENSIONS:
                found.append(Path(dirpath, name))
    found.sort(key=lambda p: p.relative_to(root).parts)
    files, not_regular = [], []
    for file in found:
        try:
            info = os.stat(file)
        except OSError as error:
            not_regular.append((file, UserError(f"cannot read image {file}: {_stat_problem(file, error)}")))
            continue
        if stat.S_ISREG(info.st_mode):
            files.append(ImageFile(file, file.relative_to(root), info.st_size, info.st_mtime_ns))
        else:
            not_regular.append((file, not_a_regular_file(file, info.st_mode)))
    return FolderScan(files, not_regular)


def find_images(path: str | os.PathLike) -> list[Path]:
    """The regular image files under ``path`` (see scan_images); anything else is left out, unopened."""
    return [file.path for file in scan_images(path).files]


def not_a_regular_file(path: Path, mode: int) -> UserError:
    """The error for a name that is not a regular file; it says what it is instead (as run files do: fileio)."""
    return UserError(f"cannot read image {not_regular_message(path, mode)}")


def _stat_problem(path: Path, error: OSError) -> str:
    if path.is_symlink() and not path.exists():
        return f"a broken symbolic link (to {os.readlink(path)})"
    return error.strerror or str(error)


def bad_files_error(errors: list[UserError], hint: str) -> UserError:
    """One error listing bad files (the first LISTED_BAD_FILES, then how many more) and what to do."""
    shown = [str(error) for error in errors[:LISTED_BAD_FILES]]
    if len(errors) > LISTED_BAD_FILES:
        shown.append(f"and {len(errors) - LISTED_BAD_FILES} more")
    count = "1 bad image file" if len(errors) == 1 else f"{len(errors)} bad image files"
    return UserError(f"{count} ({hint}):\n  " + "\n  ".join(shown))


def check_pixels(path, width: int, height: int, max_pixels: int, setting: str) -> None:
    """UserError naming ``path`` when its declared width x height exceeds ``max_pixels`` (``setting`` raises it)."""
    if width * height > max_pixels:
        raise UserError(f"cannot read image {path}: its header declares {width}x{height} = {width * height:,} "
                        f"pixels, more than the limit of {max_pixels:,} (a decompression bomb, or a huge image: "
                        f"raise the limit with {setting})")


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
