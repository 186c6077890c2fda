"""Classes named by users: ``--class Trouser`` or ``--class 3``, and ``labels=`` of the runtime's ``sample``.

One reading for the CLI (run directories and ONNX models) and the Python API, so a
class means the same everywhere. Torch-free: the runtime and ``ganzoo sample
MODEL.onnx`` use it.

A text value is first a class name exactly as the run recorded it, then a class
index, then a name in any case: a folder class called "10" is that folder even
where index 10 exists, as the names are what ``ganzoo info`` and the grids show.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError


def default_names(count: int) -> list[str]:
    """The names of classes nobody named: their indices ("0".."N-1"), as ``ganzoo.rundir.run_classes`` gives."""
    return [str(i) for i in range(count)]


SHOWN = 20  # classes an error lists before "... and N more"


def listing(classes) -> str:
    """``0 T-shirt/top, 1 Trouser, ...``: what an error shows so the user can pick one (the first SHOWN)."""
    names = list(classes)
    if names == default_names(len(names)):
        return f"0 to {len(names) - 1} (unnamed)"
    shown = ", ".join(f"{index} {name}" for index, name in enumerate(names[:SHOWN]))
    return shown + (f", ... and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def unknown(value: str, classes, option: str, source: str) -> UserError:
    """A name that is no class: the run's classes, and the nearest names where a typo is likely."""
    import difflib

    near = difflib.get_close_matches(value, list(classes), n=3, cutoff=0.75)
    hint = f" (did you mean {' or '.join(repr(name) for name in near)}?)" if near else ""
    return UserError(f"{option} {value!r} is not a class of {source}{hint}; its classes: {listing(classes)}")


def class_index(value, classes, option: str = "--class", source: str = "this generator") -> int:
    """The index of one class given as a name or a number (int or text); a UserError naming what is allowed.

    ``classes`` are the names by index; ``source`` names where they come from (a run's config.json, a model).
    """
    if isinstance(value, (bool, np.bool_)):
        raise UserError(f"{option} takes a class name or index, got {value!r}")
    if isinstance(value, (int, np.integer)):
        index = int(value)
    elif isinstance(value, str):
        if value in classes:
            return list(classes).index(value)
        try:
            index = int(value.strip())
        except ValueError:
            folded = [i for i, name in enumerate(classes) if name.casefold() == value.strip().casefold()]
            if len(folded) == 1:
                return folded[0]
            raise unknown(value, classes, option, source) from None
    else:
        raise UserError(f"{option} takes a class name or index, got {type(value).__name__} {value!r}")
    if not 0 <= index < len(classes):
        raise UserError(f"{option} {index} is out of range: {source} has {len(classes)} classes, "
                        f"0 to {len(classes) - 1}")
    return index


def labels_for(labels, n: int, classes, option: str = "labels", source: str = "this generator") -> np.ndarray:
    """int64 (n,) class indices from one class (name or index) for every sample, or a sequence of n of them."""
    if isinstance(labels, (str, int, np.integer, bool, np.bool_)) or np.ndim(labels) == 0:
        index = class_index(labels.item() if isinstance(labels, np.ndarray) else labels, classes, option, source)
        return np.full(n, index, dtype=np.int64)
    values = list(labels)
    if len(values) != n:
        raise UserError(f"{option} must be one class or {n} of them (one per sample), got {len(values)}")
    return np.array([class_index(v.item() if isinstance(v, np.generic) else v, classes, option, source)
                     for v in values], dtype=np.int64)
