"""Images in and out of image-to-image generators, with numpy and pillow only.

`ganzoo translate` uses these for PyTorch generators, and the torch-free
runtime can use them for exported ones: inputs are gathered from files and
folders (keeping their names), scaled so the shorter side is ``size`` with both
sides a multiple of the generator's ``size_multiple`` (what its stride-2
downsamplings need; a generator without one gets its training size), and mapped
to [-1, 1] exactly as training data is.

Nothing is ever written over an input: output paths are checked against the
inputs (resolved paths and file identity) before anything is written, and
existing outputs are replaced only when asked, and only when they are earlier
translations (each carries ganzoo's mark, ``ganzoo.marks``); any other file,
and a run directory's own files, are never replaced. Every input's declared
size and the size it would be scaled to are checked against a pixel limit first.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UserError
from .image_files import DEFAULT_MAX_PIXELS, LISTED_BAD_FILES, check_pixels, not_a_regular_file

PIXELS_SETTING = "--max-pixels N"


def collect_inputs(inputs: list[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """(image file, output name relative to the output folder) for files and folders (recursively).

    A file keeps its name; a folder's images keep their paths below it. Two
    inputs that would write the same output are an error naming both, and so
    is anything that is not a regular file (a FIFO named x.png), never opened.
    """
    from .image_files import bad_files_error, scan_images

    if not inputs:
        raise UserError("no input images given")
    found: list[tuple[Path, Path]] = []
    odd: list[UserError] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            scan = scan_images(path)
            if not scan.files and not scan.not_regular:
                raise UserError(f"no images in folder {path}")
            found += [(file.path, file.relative) for file in scan.files]
            odd += [error for _, error in scan.not_regular]
        elif path.is_file():
            found.append((path, Path(path.name)))
        elif path.exists():
            odd.append(not_a_regular_file(path, os.stat(path).st_mode))
        else:
            raise UserError(f"no such file or folder: {path}")
    if odd:
        raise bad_files_error(odd, "nothing was translated; leave them out")
    seen: dict[Path, Path] = {}
    for source, name in found:
        if name in seen:
            raise UserError(f"{seen[name]} and {source} would both be written as {name}; translate them separately")
        seen[name] = source
    return found


def output_paths(files: list[tuple[Path, Path]], out: Path, overwrite: bool = False) -> list[Path]:
    """Where each of ``files`` (from collect_inputs) is written under ``out``, once that is known to be safe.

    Refused, naming the files, before anything is written: an output that is
    an input (the same resolved path, or the same file through a link); a run
    directory's own file; an existing file that is not an earlier translation
    (even with ``overwrite``); an earlier translation (unless ``overwrite``);
    a folder; an ``out`` (or a folder on the way) that is a file.
    """
    from .. import marks
    from ..outputs import TRANSLATION, run_file

    out = Path(out).expanduser()
    targets = [out / name for _, name in files]
    by_path = {source.resolve(): source for source, _ in files}
    by_identity = {_identity(source): source for source, _ in files}
    clashes, existing, foreign, blocked = [], [], [], []
    for target in targets:
        source = by_path.get(target.resolve())
        if source is None and os.path.lexists(target):
            source = by_identity.get(_identity(target))
        owned = run_file(target) if source is None else None
        if source is not None:
            clashes.append(f"{target} is the input {source}" if target != source else f"{target} is an input")
        elif owned is not None:
            blocked.append(f"{target} is the run's own {owned[1]} (run directory {owned[0]}), never written over")
        elif os.path.isdir(target):
            blocked.append(f"{target} is a folder")
        elif os.path.lexists(target):
            (existing if marks.read(target) == TRANSLATION else foreign).append(target)
        elif (parent := _file_on_the_way(target.parent, out)) is not None:
            blocked.append(f"{parent} is a file, not a folder")
    if clashes:
        raise UserError(f"refusing to write over the input images: {_listed(clashes)}; choose an --out folder "
                        "that holds none of the inputs at the names they would be written as")
    if blocked:
        raise UserError(f"cannot write the translations: {_listed(sorted(set(blocked)))}")
    if foreign:
        unmarkable = sorted({t.suffix.lower() for t in foreign if not _markable(t)})
        why = (f" ({', '.join(unmarkable)} files carry no mark, so no earlier translation in that format can be "
               "told from anyone else's file)") if unmarkable else ""
        raise UserError(f"{len(foreign)} of the {len(targets)} output file(s) already exist and are not translations "
                        f"ganzoo wrote: {_listed([str(t) for t in foreign])}; they are never replaced, even with "
                        f"--overwrite{why}: choose another --out or remove them")
    if existing and not overwrite:
        raise UserError(f"{len(existing)} of the {len(targets)} output file(s) already exist: "
                        f"{_listed([str(t) for t in existing])}; pass --overwrite to replace them, "
                        "or choose another --out")
    return targets


def _format(path: Path) -> str:
    """The Pillow format a translation is written in: its name's, PNG for a name Pillow does not know."""
    from PIL import Image

    return Image.registered_extensions().get(path.suffix.lower(), "PNG")


def _markable(path: Path) -> bool:
    from .. import marks

    return marks.image_save_options(_format(path), "translation") is not None


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _file_on_the_way(folder: Path, out: Path) -> Path | None:
    """The first existing non-folder among ``folder`` and its parents up to (and including) ``out``."""
    for candidate in [folder, *folder.parents]:
        if os.path.lexists(candidate) and not os.path.isdir(candidate):
            return candidate
        if candidate == out:
            return None
    return None


def _listed(items: list) -> str:
    shown = ", ".join(str(item) for item in items[:LISTED_BAD_FILES])
    more = len(items) - LISTED_BAD_FILES
    return shown + (f" and {more} more" if more > 0 else "")


def target_size(width: int, height: int, size: int | None, multiple: int) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to ``size`` (None: unchanged), both rounded to ``multiple``."""
    if size is not None:
        scale = size / min(width, height)
        width, height = width * scale, height * scale
    return (max(multiple, int(round(width / multiple)) * multiple),
            max(multiple, int(round(height / multiple)) * multiple))


def checked_size(path: Path, width: int, height: int, size: int | None, multiple: int | None, fixed: int | None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """The size ``path`` (declaring ``width`` x ``height``) is translated at, once both fit ``max_pixels``.

    ``multiple`` None means the network takes only ``fixed`` x ``fixed`` images.
    A UserError names the file, its declared size, and the size it would become.
    """
    check_pixels(path, width, height, max_pixels, PIXELS_SETTING)
    target = (fixed, fixed) if multiple is None else target_size(width, height, size, multiple)
    if target[0] * target[1] > max_pixels:
        scaled = ("at the network's fixed size" if multiple is None
                  else f"scaled to a shorter side of {size} (--size)" if size is not None
                  else f"rounded to multiples of {multiple}")
        raise UserError(f"{path} is {width}x{height}; {scaled} it would become {target[0]}x{target[1]} = "
                        f"{target[0] * target[1]:,} pixels, more than the limit of {max_pixels:,}: choose a smaller "
                        f"--size, or raise the limit with {PIXELS_SETTING}")
    return target


def declared_size(path: Path) -> tuple[int, int]:
    """The width and height ``path``'s header declares (nothing decoded); a file PIL cannot read is named."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None


def load_for_translation(path: Path, channels: int, size: int | None, multiple: int | None = 1,
                         fixed: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """One image as float32 (1, C, H, W) in [-1, 1]; a file PIL cannot read is named in the error.

    ``multiple`` None means the network takes only ``fixed`` x ``fixed`` images.
    The declared size and the scaled size are checked against ``max_pixels``
    (see checked_size) before any pixel is decoded.
    """
    from PIL import Image, ImageOps

    from .image_files import to_channels

    try:
        with Image.open(path) as image:
            checked_size(path, image.width, image.height, size, multiple, fixed, max_pixels)
            image = ImageOps.exif_transpose(image)
            image = to_channels(image, channels)
            if multiple is None:
                width = height = fixed
            else:
                width, height = target_size(image.width, image.height, size, multiple)
            if (width, height) != image.size:
                image = image.resize((width, height), Image.Resampling.BICUBIC)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return (array.astype(np.float32) / 127.5 - 1.0)[None]


def save_translation(image: np.ndarray, path: Path) -> None:
    """uint8 (C, H, W) written atomically in the format its name asks for (JPEG at quality 95), marked as a
    translation where the format has room for the mark (not BMP, PPM and the like)."""
    from PIL import Image

    from ..fileio import atomic_write
    from ..marks import image_save_options
    from ..outputs import TRANSLATION

    array = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    picture = Image.fromarray(np.ascontiguousarray(array))
    fmt = _format(path)
    options = {"quality": 95} if fmt == "JPEG" else {}
    options.update(image_save_options(fmt, TRANSLATION) or {})
    try:
        atomic_write(path, lambda f: picture.save(f, format=fmt, **options))
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
