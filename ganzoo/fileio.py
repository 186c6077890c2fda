"""Atomic writes: a temporary file in the same folder, then os.replace.

A reader sees the old file or the new one, never half of one, and a crash
mid-write leaves the old file intact. The file gets the permissions a plain
``open(path, "w")`` would give (0666 less the umask), not mkstemp's private 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2, sort_keys=False) + "\n"), mode="w")


def write_png(path: Path, image) -> None:
    """Write a PIL image atomically."""
    atomic_write(path, lambda f: image.save(f, format="PNG"))
