"""Which checkpoints a run has, and the newest one that is intact (readers fall back past damaged ones)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ...errors import UserError
from ...fileio import not_regular_message
from .layout import BEST, FILES, NETWORKS, STEP_DIR, DamagedCheckpoint, step_of
from .reading import finite_record, is_weights_only, load_networks, load_trainer_state, nonfinite_in, read_header


def _step_folders(run_dir: Path) -> list[Path]:
    """Every `step-N` folder, complete or not, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES) or is_weights_only(folder)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run (both files present, or a weights-only one), oldest first."""
    return [p for p in _step_folders(run_dir) if _complete(p)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def best_checkpoint(run_dir: Path) -> Path | None:
    """The folder `checkpoints/best` links to, when it is a complete step-N folder of this run; else None."""
    link = Path(run_dir) / "checkpoints" / BEST
    if not link.is_symlink():
        return None
    target = Path(link.readlink())
    if target.is_absolute() or len(target.parts) != 1 or not STEP_DIR.match(target.name):
        return None  # only a sibling step-N folder is ours; anything else is never followed
    folder = link.parent / target.name
    return folder if folder.is_dir() and _complete(folder) else None


def newest_intact(run_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint that reads, and the newer ones skipped with why: (path, [(damaged, reason)]).

    Reads headers and the trainer state's structure, not the tensors. (None, [])
    when the run has no checkpoint; a UserError naming each one when none is intact.
    """
    damaged = []
    for folder in reversed(_step_folders(run_dir)):
        reason = problem(folder)
        if reason is None:
            return folder, damaged
        damaged.append((folder, reason))
    if damaged:
        raise UserError(f"no intact checkpoint in {Path(run_dir) / 'checkpoints'}: "
                        + "; ".join(reason for _, reason in damaged))
    return None, []


def fallback_warnings(chosen: Path, damaged: list[tuple[Path, str]]) -> list[str]:
    """One line per skipped checkpoint, naming it, why, and the one used instead (for stderr)."""
    return [f"warning: skipping damaged checkpoint {folder.name} ({reason}); using {chosen}"
            for folder, reason in damaged]


def problem(folder: Path) -> str | None:
    """Why a checkpoint folder cannot be used (naming the file), or None when it is intact.

    A weights-only (imported) checkpoint is intact for reading; training refuses it at resume.
    """
    if is_weights_only(folder):
        return None
    for name in FILES:  # a FIFO, folder or device in a file's place is said as such, never opened
        mode = _mode(folder / name)
        if mode is not None and not stat.S_ISREG(mode):
            return not_regular_message(folder / name, mode)
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        return f"{folder}: {' and '.join(missing)} missing" + (" (empty folder)" if len(missing) == len(FILES) else "")
    try:
        read_header(folder / NETWORKS)
        load_trainer_state(folder, mmap=True)
    except DamagedCheckpoint as exc:
        return str(exc)
    return None


def _mode(path: Path) -> int | None:
    try:
        return os.stat(path).st_mode
    except OSError:
        return None


def start_refusal(bad: str, checkpoint: Path, run_dir: Path | None = None) -> UserError:
    """The one line refusing to start a run (resume, --init, rollback) from ``checkpoint``, whose weights
    ``bad`` describes (nonfinite_in: the file and the tensor), naming the newest older checkpoint of
    ``run_dir`` with finite weights, if any, to start from instead."""
    checkpoint = Path(checkpoint)
    root = checkpoint.parent
    if run_dir is None:
        return UserError(f"{bad}; a run cannot start from weights that are not finite")
    older = newest_finite(run_dir, before=step_of(checkpoint))
    hint = (f"the newest checkpoint with finite weights is {older}: move the newer ones out of {root} to start "
            "from it" if older is not None else f"no earlier checkpoint in {root} has finite weights")
    return UserError(f"{bad}; a run cannot start from weights that are not finite ({hint})")


def refuse_nonfinite_resume(run_dir: Path) -> None:
    """start_refusal when the checkpoint a resume of ``run_dir`` would start from holds NaN or inf.

    For the --nproc-per-node launcher, which refuses before any process starts; the trainer itself checks
    the tensors it loads (Trainer._load), so one process reads them once.
    """
    source, _ = newest_intact(run_dir)
    if source is None or is_weights_only(source):
        return
    bad = nonfinite_in(source, load_networks(source), load_trainer_state(source))
    if bad is not None:
        raise start_refusal(bad, source, run_dir)


def newest_finite(run_dir: Path, before: int | None = None) -> Path | None:
    """The newest intact checkpoint a run can continue from: every tensor it would start from is finite.

    Its record (written at save, read from the header) decides; a checkpoint written before the record
    existed is read and checked (networks and trainer state). What a rollback returns to, and what a
    refusal to start from non-finite weights names as the alternative (``before``: older than that step).
    """
    for folder in reversed(_step_folders(run_dir)):
        if (before is not None and step_of(folder) >= before) or problem(folder) is not None:
            continue
        recorded = finite_record(folder)
        if recorded is None:
            state = None if is_weights_only(folder) else load_trainer_state(folder)
            recorded = nonfinite_in(folder, load_networks(folder), state) is None
        if recorded:
            return folder
    return None
