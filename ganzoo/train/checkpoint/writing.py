"""Writing checkpoints atomically, pruning old ones safely, and cleaning up after killed processes."""

from __future__ import annotations

import io
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save as safetensors_bytes

from ... import run_lock
from ...errors import UserError
from .layout import BEST, BEST_SCRATCH, FINITE, NETWORKS, NONFINITE, SCRATCH_DIR, TRAINER_STATE, step_of
from .listing import _complete, _step_folders, best_checkpoint, checkpoint_dirs, latest_checkpoint
from .reading import finite_record, state_tensors


def flatten_networks(nets: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """{'G': module} -> {'G/main.0.weight': tensor}; contiguous CPU copies for safetensors."""
    return {f"{role}/{key}": value.detach().contiguous().cpu()
            for role, module in nets.items() for key, value in module.state_dict().items()}


def save_checkpoint(run_dir: Path, step: int, nets: dict[str, torch.nn.Module], state: dict,
                    metadata: dict[str, str] | None = None, keep: int = 2) -> Path:
    """Write networks and trainer state for `step` atomically; keep the newest `keep` (and the best).

    A write that fails (a full disk, a read-only folder) removes its temporary
    folder and raises one UserError naming the path; earlier checkpoints are untouched.
    """
    root = Path(run_dir) / "checkpoints"
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.tmp-{os.getpid()}"
    finiteness = finiteness_record(nets, state)
    metadata = {**(metadata or {}), **finiteness}
    writers: dict[str, Callable] = {
        NETWORKS: lambda f: f.write(safetensors_bytes(flatten_networks(nets), metadata=metadata)),
        TRAINER_STATE: lambda f: f.write(_torch_bytes(state)),
    }
    target = root
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove(tmp)
        tmp.mkdir()
        for name, write in writers.items():
            target = final / name
            _write_synced(tmp / name, write)
        target = final
        if final.exists():  # the same step saved again: move the old one aside, never delete it first
            old = root / f".step-{step:07d}.old-{os.getpid()}"
            _remove(old)
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
        _fsync(root)
    except OSError as exc:
        _remove(tmp)
        kept = [p for p in checkpoint_dirs(run_dir) if step_of(p) < step]
        previous = f"the previous checkpoint {kept[-1]} is kept" if kept else "no earlier checkpoint exists"
        raise UserError(f"cannot write checkpoint {target}: {exc.strerror or exc}; {previous}") from None
    prune(run_dir, keep, step)
    if finiteness[FINITE] == "false":
        finite = newest_finite_recorded(run_dir)
        kept = (f"the newest checkpoint with finite weights, {finite}, is kept" if finite is not None else
                "no checkpoint of this run is recorded with finite weights")
        report([f"warning: checkpoint {final} holds NaN or inf (tensor {finiteness[NONFINITE]}): a run cannot "
                f"continue from it; {kept}"])
    return final


def finiteness_record(nets: dict[str, torch.nn.Module], state: dict) -> dict[str, str]:
    """The FINITE (and NONFINITE) metadata of a checkpoint about to be written from ``nets`` and ``state``.

    Decided on the device the tensors live on: one isfinite-all per tensor, stacked, and one read per device
    (a checkpoint is a permitted host-read point: ganzoo.train.host_reads), before anything is copied.
    """
    named = [(f"{role}/{key}", value) for role, module in nets.items() for key, value in module.state_dict().items()]
    named += [(f"{TRAINER_STATE}:{key}", value) for key, value in state_tensors(state)]
    named = [(name, value) for name, value in named if value.is_floating_point()]
    by_device: dict[torch.device, list[int]] = {}
    for index, (_, value) in enumerate(named):
        by_device.setdefault(value.device, []).append(index)
    finite = [True] * len(named)
    for device, indices in by_device.items():
        flags = torch.stack([torch.isfinite(named[i][1]).all() for i in indices]).tolist()
        for i, flag in zip(indices, flags):
            finite[i] = flag
    bad = next((named[i][0] for i, ok in enumerate(finite) if not ok), None)
    return {FINITE: "true"} if bad is None else {FINITE: "false", NONFINITE: bad}


def prune(run_dir: Path, keep: int, newest: int) -> Path | None:
    """Keep the newest `keep` checkpoints up to step `newest`, and the one `best` links to besides.

    Never for weights that are not finite: while no checkpoint kept is recorded finite (a run that diverged
    into NaN weights), the newest older one that may be finite stays too, and is returned. Only headers are
    read (finite_record). A checkpoint without the record (written before it existed) counts as possibly
    finite: it is spared like a finite one, but never stands in for one.
    """
    best = best_checkpoint(run_dir)
    complete = checkpoint_dirs(run_dir)
    older = [p for p in complete if step_of(p) < newest]  # never the newest
    doomed = [p for p in older[:max(len(older) - (keep - 1), 0)] if p != best]
    kept = [p for p in complete if p not in doomed]
    spared = None
    if doomed and not any(finite_record(p) is True for p in kept):
        spared = next((p for p in reversed(doomed) if finite_record(p) is not False), None)
    for old in doomed:
        if old != spared:
            _discard(old)
    return spared


def newest_finite_recorded(run_dir: Path) -> Path | None:
    """The newest complete checkpoint recorded finite at save (headers only), or None."""
    return next((p for p in reversed(checkpoint_dirs(run_dir)) if finite_record(p) is True), None)


def mark_best(run_dir: Path, step: int | None) -> None:
    """Point `checkpoints/best` at `step-N` (relative, atomically replaced); None removes the link."""
    root = Path(run_dir) / "checkpoints"
    link = root / BEST
    if step is None:
        if link.is_symlink():
            link.unlink()
        return
    tmp = root / f".best.tmp-{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(f"step-{step:07d}", tmp)
        os.replace(tmp, link)
        _fsync(root)
    except OSError as exc:
        raise UserError(f"cannot link {link} to step-{step:07d}: {exc.strerror or exc}") from None


def _torch_bytes(state: dict) -> memoryview:
    """torch.save into memory: written to the file by Python, a failed write (ENOSPC) stays a plain OSError."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer()


def _write_synced(path: Path, write: Callable) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _fsync(folder: Path) -> None:
    """Make a rename inside `folder` durable (a power loss keeps the new name)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _discard(folder: Path) -> None:
    """Delete a checkpoint folder under a hidden name, so a kill midway never leaves a half `step-N`."""
    hidden = folder.with_name(f".{folder.name}.del-{os.getpid()}")
    _remove(hidden)
    try:
        os.replace(folder, hidden)
    except OSError:
        return
    _remove(hidden)


def remove_stale(run_dir: Path) -> list[Path]:
    """At a run's start: remove what killed processes left in checkpoints/; returns what was cleaned.

    Hidden temporary, set-aside and half-deleted folders of writers that are
    gone are removed, except that a set-aside checkpoint whose replacement
    never arrived is renamed back. Holding the run's lock (ganzoo.run_lock),
    this process is the folder's only writer: every such folder is a dead
    writer's, whatever process now has the id in its name (ids are reused, and
    on shared storage name another machine's processes). Without the lock (a
    Trainer used directly), a folder whose process is alive is left alone; this
    process's own id counts as gone, since nothing of ours is in flight yet.
    `step-N` folders missing a file (half deleted by older versions) older than
    the newest complete checkpoint are removed too.
    """
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    sole_writer = run_lock.holds(run_dir)

    def gone(pid: int) -> bool:
        return sole_writer or not _alive(pid)

    cleaned = []
    for path in sorted(root.iterdir()):
        m = BEST_SCRATCH.match(path.name)
        if m and path.is_symlink() and gone(int(m.group(1))):
            path.unlink()
            cleaned.append(path)
            continue
        m = SCRATCH_DIR.match(path.name)
        if not m or not path.is_dir() or not gone(int(m.group(3))):
            continue
        final = root / f"step-{m.group(1)}"
        if m.group(2) == "old" and not final.exists() and _complete(path):
            os.replace(path, final)
        else:
            _remove(path)
        cleaned.append(path)
    newest = latest_checkpoint(run_dir)
    for folder in _step_folders(run_dir):
        if newest is not None and step_of(folder) < step_of(newest) and not _complete(folder):
            _discard(folder)
            cleaned.append(folder)
    return cleaned


def clean_up(run_dir: Path) -> None:
    """remove_stale, each folder named on stderr."""
    report(f"removed unfinished checkpoint folder {path}" for path in remove_stale(run_dir))


def report(lines) -> None:
    """Warnings for the user, on stderr (the CLI's own output stays on stdout)."""
    for line in lines:
        print(line, file=sys.stderr, flush=True)


def _alive(pid: int) -> bool:
    """Whether another process with this id runs (our own id counts as gone: called before we save)."""
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except (OverflowError, OSError):
        return False
    return True
