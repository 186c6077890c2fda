"""A run directory: config.json, checkpoints/, samples/, metrics.jsonl.

It is all that `sample`, `info` and `--resume` need: networks are rebuilt
through the registry from config.json and filled from safetensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import __version__, registry
from .config import Resolved, from_dict
from .errors import UserError
from .fileio import NotRegularFile, read_regular, write_json

CONFIG = "config.json"


def write_config(run_dir: Path, resolved: Resolved, entry, data_fingerprint: dict | None = None,
                 classes: list[str] | None = None) -> None:
    """A new run's config.json; ``data_fingerprint`` (ganzoo.data.fingerprint) lets a resume notice changed data;
    ``classes`` (a conditional run's class names, by index) is what ``--class`` and the grids name."""
    record = {"ganzoo_version": __version__,
              "plugin": {"distribution": entry.distribution, "version": entry.version, "entry_point": entry.value},
              **resolved.to_dict()}
    if data_fingerprint is not None:
        record["data_fingerprint"] = data_fingerprint
    if classes is not None:
        record[CLASSES] = list(classes)
    write_json(Path(run_dir) / CONFIG, record)


CLASSES = "classes"  # config.json's key for a conditional run's class names, index i naming label i


def run_classes(run: "Run") -> list[str] | None:
    """A conditional run's class names (index = label), or None for an unconditional run. A run whose
    config.json lacks them (older, or written by hand) gets "0".."N-1"; a list that disagrees with the
    config's class count is one UserError naming config.json."""
    count = run.arch.num_classes(run.resolved.config)
    if count == 0:
        return None
    names = run.record.get(CLASSES)
    if names is None:
        return [str(i) for i in range(count)]
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)) or len(names) != count:
        raise UserError(f"{run.path / CONFIG}: {CLASSES!r} must list the {count} class names of "
                        f"{run.arch.class_count_key}={count} as strings")
    return names


def record_train_options(run: "Run", resolved: Resolved) -> None:
    """On resume, config.json keeps its plugin record and takes the new trainer options (and overrides)."""
    fresh = resolved.to_dict()
    write_json(run.path / CONFIG, {**run.record, "overrides": fresh["overrides"], "train": fresh["train"]})


def read_config(run_dir: Path) -> dict:
    """config.json as a dict with a string ``architecture`` and a ``config`` object; any damage is one UserError."""
    path = Path(run_dir) / CONFIG
    if not Path(run_dir).is_dir():
        raise UserError(f"no such run directory: {run_dir}")
    try:
        record = json.loads(read_regular(path).decode("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{run_dir} is not a run directory: {CONFIG} is missing") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"cannot read {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"cannot read {path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise UserError(f"cannot read {path}: nested too deeply to be a ganzoo config") from None
    except NotRegularFile as exc:
        raise UserError(f"cannot read {exc}") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(record, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(record).__name__}")
    for key, kind in (("architecture", str), ("config", dict)):
        if key not in record:
            raise UserError(f"{path}: missing key {key!r}")
        if not isinstance(record[key], kind):
            raise UserError(f"{path}: {key!r} must be a{'n object' if kind is dict else ' string'}, "
                            f"got {type(record[key]).__name__}")
    return record


METRICS = "metrics.jsonl"


def refuse_odd_run_files(run_dir: Path) -> None:
    """Before a resume touches anything: metrics.jsonl, when present, is a regular file (a FIFO would hang
    the resume's rewrite of it, a folder would fail it halfway); one UserError saying what it is instead."""
    import os
    import stat

    from .fileio import not_regular_message

    path = Path(run_dir) / METRICS
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"cannot read {not_regular_message(path, mode)}")


@dataclass
class Run:
    path: Path
    arch: object
    resolved: Resolved
    record: dict


def open_run(run_dir: Path) -> Run:
    """The architecture and resolved config of a run, rebuilt through the registry."""
    record = read_config(run_dir)
    try:
        arch = registry.get(record["architecture"])
    except UserError as exc:
        raise UserError(f"{Path(run_dir) / CONFIG}: {exc}") from None
    resolved = from_dict(arch, record, origin=str(Path(run_dir) / CONFIG))
    return Run(Path(run_dir), arch, resolved, record)


def imported_roles(run: Run) -> list[str] | None:
    """The roles an imported run's files held (``ganzoo import``), or None for a trained run."""
    record = run.record.get("imported")
    if not isinstance(record, dict):
        return None
    roles = record.get("roles")
    if not (isinstance(roles, list) and all(isinstance(r, str) for r in roles)):
        raise UserError(f"{run.path / CONFIG}: 'imported' must list its 'roles' as strings")
    return roles


def refuse_resuming_import(run: Run) -> None:
    """An imported run has no trainer state to continue: say how to start a new run from its weights."""
    from .train.checkpoint import NO_TRAINER_STATE

    if imported_roles(run) is not None:
        raise UserError(NO_TRAINER_STATE.format(arch=run.arch.name, run_dir=run.path))


class ImportedNets(dict):
    """The networks of an imported run: asking for a role its files did not hold is one UserError naming it."""

    def __init__(self, nets: dict, run: Run):
        super().__init__(nets)
        self.run = run

    def __missing__(self, role):
        files = ", ".join(self.run.record["imported"].get("files", {})) or "its files"
        raise UserError(f"{self.run.path} was imported from {files}, which hold {', '.join(self) or 'nothing'} "
                        f"but no {role}: import the reference's file for {role} as well")


def load_sampling_nets(run: Run, device, step: int | str | None = None):
    """Networks of the newest intact checkpoint (or that of ``step``, or "best") in eval mode, EMA weights in place of live ones.

    Newer damaged checkpoints are named on stderr and skipped; generator
    weights holding NaN or inf are refused (they cannot make images), naming the tensor.
    """
    from .train import checkpoint as ckpt

    if step == "best":
        source = ckpt.best_checkpoint(run.path)
        if source is None:
            raise UserError(f"{run.path}: no best checkpoint ({run.path / 'checkpoints' / ckpt.BEST} is made by "
                            "training with --eval-every)")
    elif step is not None:
        source = run.path / "checkpoints" / f"step-{step:07d}"
        problem = ckpt.problem(source) if source.is_dir() else "no such checkpoint"
        if problem is not None:
            steps = ", ".join(str(ckpt.step_of(d)) for d in ckpt.checkpoint_dirs(run.path)) or "none"
            raise UserError(f"{run.path}: cannot use the checkpoint of step {step} ({problem}); steps kept: {steps}")
    else:
        source, damaged = ckpt.newest_intact(run.path)
        if source is None:
            raise UserError(f"{run.path}: no checkpoint yet (nothing in {run.path / 'checkpoints'})")
        ckpt.report(ckpt.fallback_warnings(source, damaged))
    nets = run.arch.build(run.resolved.config)
    roles = imported_roles(run)
    if roles is not None:  # a generator-only import (CycleGAN's horse2zebra.pth) has no discriminators
        nets = {role: module for role, module in nets.items() if role in roles}
    weights = ckpt.load_networks(source)
    names = {role: f"{role}_ema" if f"{role}_ema" in weights else role for role in nets}
    chosen = {names[role]: weights[names[role]] for role in nets if names[role] in weights}
    generator_roles = sorted({g.role for g in run.arch.generators(run.resolved.config).values() if g.role in nets})
    sampling = {names[role] for role in generator_roles}
    bad = ckpt.first_nonfinite({name: chosen[name] for name in sorted(sampling) if name in chosen})
    if bad is not None:
        older = ckpt.newest_finite(run.path, before=ckpt.step_of(source))
        hint = (f"; the newest checkpoint with finite weights is step {ckpt.step_of(older)}: pass --step "
                f"{ckpt.step_of(older)}" if older is not None else "")
        raise UserError(f"{source / ckpt.NETWORKS}: tensor {bad} holds NaN or inf; refusing to use these "
                        f"weights (they cannot make images){hint}")
    ckpt.report(_missing_ema(run, source, [role for role in generator_roles if names[role] == role], roles))
    ckpt.load_into({names[role]: module for role, module in nets.items()}, chosen, source)
    loaded = {role: m.to(device).eval() for role, m in nets.items()}
    return (ImportedNets(loaded, run) if roles is not None else loaded), ckpt.step_of(source)


def _missing_ema(run: Run, source: Path, roles: list[str], imported: list[str] | None) -> list[str]:
    """A warning when a trained run's checkpoint lacks a generator's EMA copy, which sampling then replaces
    with the live weights: training with ema_kimg > 0 always saves ``<role>_ema``, so its absence means the
    file was changed. Imports (many references publish no EMA) and runs trained without EMA say nothing."""
    from .train import checkpoint as ckpt

    if not roles or imported is not None or run.resolved.train.ema_kimg <= 0:
        return []
    missing = ", ".join(f"{role}_ema" for role in roles)
    return [f"warning: {source / ckpt.NETWORKS} has no {missing}, which training with ema_kimg="
            f"{run.resolved.train.ema_kimg:g} always saves; using the live weights ({', '.join(roles)}) instead"]
