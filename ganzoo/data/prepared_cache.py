"""Where prepared datasets live, and the prepared copy of a ``--data`` source, made on its first use.

``--data`` keeps meaning what it meant: a folder, a catalog name or a
stylegan2-ada zip is decoded once into ``$GANZOO_PREPARED`` (default
``$GANZOO_HOME/prepared``), under a name keyed by the source's path and
fingerprint and by the resolution, channels and pixel limit asked for; the
next run, a resume and every rank of a torchrun job open that copy in place
instead of decoding again. Changed data has another fingerprint, so it is
prepared afresh and never mixed with the old copy. A prepared dataset can also
be named directly: its folder, or its name under ``$GANZOO_PREPARED``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

from ..api import IMAGES
from .class_labels import class_folders
from .prepared import VERSION, is_prepared
from .sources import LABELS_FILE

PREPARED_ENV = "GANZOO_PREPARED"
# A prepare of this many files or more is announced (a few seconds or more); smaller ones pass silently
# unless stderr is a terminal, where the progress bar shows anyway.
NOTED_FILES = 1000


def prepared_home() -> Path:
    """$GANZOO_PREPARED, else $GANZOO_HOME/prepared: prepared data may need a larger disk than the other caches."""
    from .catalog import ganzoo_home

    configured = os.environ.get(PREPARED_ENV)
    return Path(configured).expanduser() if configured else ganzoo_home() / "prepared"


def named_prepared(source) -> Path | None:
    """The prepared dataset ``source`` names (a folder holding one, or a name under prepared_home()), or None."""
    if source is None:
        return None
    text = str(source)
    path = Path(text).expanduser()
    if is_prepared(path):
        return path
    if "/" not in text and text not in ("", ".", "..") and is_prepared(prepared_home() / text):
        return prepared_home() / text
    return None


def cache_folder(source: Path, kind: str, resolution: int, channels: int, max_pixels: int, fingerprint) -> Path:
    """The prepared copy's folder: readable name, then a key of everything that decides its pixels and labels.

    The format version is in the key (copies made before class subfolders were read are not used: a version-1
    copy of a class-folder dataset holds no labels), and so are a folder's top-level subfolder names, its
    candidate classes: an empty class folder changes no image, so no fingerprint, but it is a class.
    """
    parts = [VERSION, str(source), kind, resolution, channels, max_pixels, fingerprint]
    if kind == IMAGES and source.is_dir() and not (source / LABELS_FILE).exists():
        parts.append(class_folders(source))
    key = json.dumps(parts, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", source.name or "data").strip("._") or "data"
    return prepared_home() / f"{stem[:48]}-{resolution}px-{channels}ch-{digest}"


def ensure_prepared(source, root: Path, spec, *, max_pixels: int, progress: bool = True, name: str | None = None):
    """The prepared copy of ``source`` (whose files are at ``root``) for ``spec``, prepared now if missing.

    A copy being made by another process is waited for (prepare_dataset's lock); an interrupted one continues.
    With ``spec.labels`` a source that cannot give a conditional run its labels is refused before anything is
    prepared.
    """
    from .fingerprint import fingerprint_data
    from .prepare import prepare_dataset
    from .prepared import open_prepared

    root = Path(root).resolve()
    fingerprint = fingerprint_data(source, spec)
    folder = cache_folder(root, spec.kind, spec.decode_resolution, spec.channels, max_pixels, fingerprint)
    if not is_prepared(folder):
        noted = progress and (sys.stderr.isatty() or _files(fingerprint) >= NOTED_FILES)
        announce = (f"preparing {root} at {spec.decode_resolution}px into {folder} (once: later runs, resumes and "
                    "every rank read it from there)") if noted else None
        prepare_dataset(root, spec.kind, spec.decode_resolution, spec.channels, folder, max_pixels=max_pixels,
                        progress=noted, name=name or root.name, require_labels=spec.labels, announce=announce)
    return open_prepared(folder)


def _files(fingerprint) -> int:
    """Image files a fingerprint counts (per domain for two domains)."""
    if "files" in fingerprint:
        return int(fingerprint["files"])
    return sum(int(part.get("files", 0)) for part in fingerprint.values() if isinstance(part, dict))
