"""The mark ganzoo writes into every result file it makes, and reading it back.

A result names its kind ("samples", "eval", "export", ...) inside the file,
where its format keeps such a note: a ``ganzoo_output`` key first in a JSON
record, an entry of that name in an .npz, ONNX metadata_props, a PNG text
chunk, EXIF's ImageDescription (JPEG, WebP, TIFF), a GIF or JPEG 2000 comment,
a comment on a markdown table's first line. ``ganzoo.outputs`` replaces an
existing file only when it carries the mark of the kind about to be written:
that is how a re-run tells its own earlier result from a user's file.

Reading never runs or decodes anything: the format is told from the first
bytes, an image's header is parsed but no pixel is decoded, an ONNX file's
top-level protobuf fields are walked and its graph skipped. Anything
unreadable simply has no mark. Torch-free (``sample`` and ``translate`` of an
ONNX model use it); numpy and pillow are imported where needed.
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from pathlib import Path

KEY = "ganzoo_output"

# The largest JSON record read in full to find its mark (bench records are a few MB).
_JSON_LIMIT = 256 * 2**20
_TEXT = re.compile(rf"^{KEY}=([\w-]+)$")


def text(kind: str) -> str:
    """The mark as one line of text, for a format's free-text field."""
    return f"{KEY}={kind}"


def json_record(kind: str, record: dict) -> dict:
    """``record`` with the mark as its first key."""
    return {KEY: kind, **{k: v for k, v in record.items() if k != KEY}}


def markdown_line(kind: str) -> str:
    """The first line of a marked markdown file (an HTML comment, invisible when rendered)."""
    return f"<!-- {text(kind)} -->"


def npz_entries(kind: str) -> dict:
    """An entry to save beside the arrays of an .npz (a 0-d string array: loads without pickle)."""
    import numpy as np

    return {KEY: np.array(kind)}


def onnx_props(kind: str) -> dict[str, str]:
    """metadata_props entries of an ONNX model."""
    return {KEY: kind}


def image_save_options(fmt: str, kind: str) -> dict | None:
    """Pillow ``save`` keyword arguments that mark an image written as ``fmt``; None for a format with no
    place for a note (BMP, PPM and the like): such a file cannot be told from anyone else's later."""
    from PIL import Image, PngImagePlugin

    fmt = fmt.upper()
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(KEY, kind)
        return {"pnginfo": info}
    if fmt in ("JPEG", "WEBP", "TIFF", "MPO"):
        exif = Image.Exif()
        exif[270] = text(kind)  # ImageDescription
        return {"exif": exif.tobytes()}
    if fmt in ("GIF", "JPEG2000"):
        return {"comment": text(kind)}
    return None


def read(path: str | os.PathLike) -> str | None:
    """The kind ``path``'s mark names, or None (no mark, not a regular file, unreadable, not a known format)."""
    path = Path(path)
    try:
        if not path.is_file():  # follows a link; a FIFO or a device is never opened
            return None
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    try:
        if head.startswith(b"PK\x03\x04"):
            return _npz(path)
        if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
            return _json(path)
        if head.startswith(b"<!--"):
            return _markdown(path)
        if path.suffix.lower() == ".onnx":
            return _onnx(path)
        return _image(path)
    except Exception:  # noqa: BLE001 - whatever a foreign file makes a parser raise, it carries no mark
        return None


def _valid(kind) -> str | None:
    return kind if isinstance(kind, str) and re.fullmatch(r"[\w-]+", kind) else None


def _json(path: Path) -> str | None:
    if path.stat().st_size > _JSON_LIMIT:
        return None
    record = json.loads(path.read_bytes().decode("utf-8"))
    return _valid(record.get(KEY)) if isinstance(record, dict) else None


def _markdown(path: Path) -> str | None:
    with open(path, "rb") as f:
        first = f.readline(256).decode("utf-8").strip()
    found = re.fullmatch(rf"<!-- {KEY}=([\w-]+) -->", first)
    return found.group(1) if found else None


def _npz(path: Path) -> str | None:
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path) as archive:
        name = f"{KEY}.npy"
        if name not in archive.namelist() or archive.getinfo(name).file_size > 4096:
            return None
        value = np.load(io.BytesIO(archive.read(name)), allow_pickle=False)
    return _valid(str(value)) if value.shape == () and value.dtype.kind == "U" else None


def _from_text(value) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    found = _TEXT.match(value.strip().rstrip("\x00")) if isinstance(value, str) else None
    return found.group(1) if found else None


def _image(path: Path) -> str | None:
    """A PNG text chunk, a comment or EXIF's ImageDescription, from the header alone (nothing decoded)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning: the pixels are never decoded here
        with Image.open(path) as image:
            if isinstance(image.info.get(KEY), str):
                return _valid(image.info[KEY])
            found = _from_text(image.info.get("comment"))
            if found is None and hasattr(image, "getexif"):
                found = _from_text(image.getexif().get(270))
    return found


def _varint(f) -> int:
    shift = result = 0
    while True:
        byte = f.read(1)
        if not byte or shift > 63:
            raise ValueError("truncated varint")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7


def onnx_metadata(path: str | os.PathLike, max_fields: int = 100_000) -> dict[str, str]:
    """An ONNX model's metadata_props, by walking ModelProto's top-level fields (the graph is skipped over).

    Raises ValueError on anything that is not a well-formed protobuf message.
    """
    props: dict[str, str] = {}
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        for _ in range(max_fields):
            if f.tell() >= size:
                return props
            tag = _varint(f)
            field, wire = tag >> 3, tag & 7
            if field == 0:
                raise ValueError("field number 0")
            if wire == 0:
                _varint(f)
            elif wire in (1, 5):
                f.seek(8 if wire == 1 else 4, io.SEEK_CUR)
            elif wire == 2:
                length = _varint(f)
                if f.tell() + length > size:
                    raise ValueError("a field runs past the end of the file")
                if field == 14 and length <= 2**20:  # ModelProto.metadata_props: StringStringEntryProto
                    key, value = _entry(f.read(length))
                    props[key] = value
                else:
                    f.seek(length, io.SEEK_CUR)
            else:
                raise ValueError(f"wire type {wire}")
        raise ValueError("too many fields")


def _entry(data: bytes) -> tuple[str, str]:
    """StringStringEntryProto: key (1) and value (2), both strings."""
    f, parts = io.BytesIO(data), {1: "", 2: ""}
    while f.tell() < len(data):
        tag = _varint(f)
        if tag & 7 != 2:
            raise ValueError("not a string entry")
        length = _varint(f)
        parts[tag >> 3] = f.read(length).decode("utf-8")
    return parts[1], parts[2]


def _onnx(path: Path) -> str | None:
    return _valid(onnx_metadata(path).get(KEY))
