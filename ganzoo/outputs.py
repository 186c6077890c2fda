"""Where a command may write: results never replace anything but an earlier result of their own kind.

Every command that writes a result (sample, eval, export, translate, bench)
calls ``claim`` for each output path before it does any work. A path that
does not exist yet is free. An existing file is replaced only when it carries
ganzoo's mark for the same kind of result (``ganzoo.marks``): the grid a
re-run of ``ganzoo sample`` made, the eval/step-N.json of an earlier ``ganzoo
eval``. Anything else (a run's config.json, a checkpoint, a user's photo, a
folder, a FIFO, a result of another kind) is refused in one line naming the
file and what to do, and is left untouched.

A run directory's own files (config.json, metrics.jsonl, checkpoints/,
tensorboard/, the training previews samples/step-N.png) are never an output,
marked or not; its results folders (eval/, export/, samples/ beside the
previews, translations/) are where results belong. A new run (``ganzoo
import``, ``ganzoo train``, ``ganzoo pretrained get``) never goes inside
another run, where every command would take it for part of that run
(``refuse_inside_run``).

Torch-free: ``sample`` and ``translate`` of an ONNX model use it.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from . import marks
from .errors import UserError
from .fileio import kind_of

CONFIG = "config.json"  # ganzoo.rundir.CONFIG, not imported: rundir loads the registry and config modules

SAMPLES, EVAL, EXPORT, TRANSLATION = "samples", "eval", "export", "translation"
BENCH, BENCH_TABLES, BENCH_PLOT = "bench", "bench-tables", "bench-plot"

# The command each kind comes from, for messages.
KINDS = {
    SAMPLES: "ganzoo sample",
    EVAL: "ganzoo eval",
    EXPORT: "ganzoo export",
    TRANSLATION: "ganzoo translate",
    BENCH: "ganzoo bench",
    BENCH_TABLES: "ganzoo bench --markdown",
    BENCH_PLOT: "ganzoo bench --plot",
}
# A plugin command's kind (StyleGAN-lite's "style-mix") is named by its command: "ganzoo style-mix".
_REPLACES = "ganzoo replaces only its own earlier outputs of the same kind, never other files"

# A run directory's own entries (first path part below it); never an output.
RUN_OWNED = ("config.json", "metrics.jsonl", "checkpoints", "tensorboard")
_PREVIEW = re.compile(r"step-\d+\.png", re.IGNORECASE)  # samples/step-N.png: the trainer's previews


def _shown(folder: Path) -> str:
    """A run directory as the user likely wrote it: relative to the current folder when inside it."""
    try:
        relative = os.path.relpath(folder)
    except ValueError:
        return str(folder)
    return str(folder) if relative.startswith("..") else relative


def _candidates(path: Path) -> list[Path]:
    """The path as given (absolute, '..' folded) and with every link resolved: both are checked."""
    plain = Path(os.path.abspath(os.path.expanduser(path)))
    real = Path(os.path.realpath(plain))
    return [plain] if real == plain else [plain, real]


def is_run_dir(folder: Path) -> bool:
    """A folder holding config.json that is a run's: beside checkpoints/ or metrics.jsonl, or itself a ganzoo
    record (a project's own config.json for some other tool does not make its folder a run).

    Damaged run files count: a config.json that is a FIFO is never opened, and its checkpoints/ still tell.
    """
    config = folder / CONFIG
    if not os.path.lexists(config):
        return False
    if os.path.isdir(folder / "checkpoints") or os.path.lexists(folder / "metrics.jsonl"):
        return True
    try:
        if not config.is_file() or config.stat().st_size > 2**20:
            return False
        record = json.loads(config.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(record, dict) and ("architecture" in record or "ganzoo_version" in record)


def run_file(path: str | os.PathLike) -> tuple[Path, Path] | None:
    """(run directory, path below it) when ``path`` is one of a run's own files or inside one of its own folders."""
    for candidate in _candidates(Path(path)):
        for run in candidate.parents:
            if is_run_dir(run):
                below = candidate.relative_to(run)
                parts = below.parts
                if parts[0] in RUN_OWNED or (len(parts) == 2 and parts[0] == "samples" and _PREVIEW.fullmatch(parts[1])):
                    return run, below
    return None


def enclosing_run(path: str | os.PathLike) -> Path | None:
    """The run directory (a folder holding config.json) that ``path`` lies inside, if any (links resolved too)."""
    for candidate in _candidates(Path(path)):
        for folder in candidate.parents:
            if is_run_dir(folder):
                return folder
    return None


def refuse_inside_run(path: str | os.PathLike, option: str = "--out") -> None:
    """A new run directory may not lie inside another run: that run's commands would find it in their folders."""
    run = enclosing_run(path)
    if run is not None:
        raise UserError(f"{path} is inside the run directory {_shown(run)}: a new run cannot live inside another "
                        f"run (its checkpoints, exports and evaluations would be taken for that run's); pick another "
                        f"{option} outside {_shown(run)}")


def _command(kind: str) -> str:
    return KINDS.get(kind, f"ganzoo {kind}")


def _what_is_there(path: Path) -> str | None:
    """Why ``path`` cannot be replaced regardless of marks: a folder, a FIFO, a dangling link..."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "a link to nothing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    return None if stat.S_ISREG(info.st_mode) else kind_of(info.st_mode)


def claim(path: str | os.PathLike, kind: str, option: str = "--out") -> None:
    """Refuse (one UserError naming ``path``) unless a result of ``kind`` may be written at ``path`` now.

    Free: a path that does not exist, or a file marked as an earlier result of
    ``kind``. Never: a run's own files, folders, anything not a regular file,
    unmarked files, results of another kind. Nothing is written or changed.
    """
    path = Path(path)
    owned = run_file(path)
    if owned is not None:
        run, below = owned
        raise UserError(f"{path} is the run's own {below} (run directory {_shown(run)}): ganzoo never writes a "
                        f"result over or among a run's own files; pick another {option}")
    if not os.path.lexists(path):
        return
    problem = _what_is_there(path)
    if problem is not None:
        raise UserError(f"{path} already exists and is {problem}, not an output of {_command(kind)}: pick another "
                        f"{option} or remove it")
    found = marks.read(path)
    if found == kind:
        return
    what = f"an output of {_command(found)}, not of {_command(kind)}" if found is not None else \
        f"not an output of {_command(kind)}"
    raise UserError(f"{path} already exists and is {what} ({_REPLACES}): pick another {option} or remove it")
