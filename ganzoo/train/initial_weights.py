"""`ganzoo train ARCH --init RUN_DIR`: a new run whose networks start from another run's weights.

Fine-tuning a published (imported) or earlier model: the source's newest
checkpoint whose networks.safetensors reads (a full checkpoint, or a
weights-only one that ``ganzoo import`` writes, without trainer.pt) fills the
new run's networks; optimizers, schedules, RNG and the step start fresh at 0.
EMA copies start from the source's ``<role>_ema`` weights where it has them,
else from the weights just loaded. This is what stylegan2-ada-pytorch's
``--resume=PKL`` does (training/training_loop.py: ``copy_params_and_buffers``
of G, D and G_ema from the pickle, fresh optimizers, cur_nimg from 0). Roles
the source lacks (a generator-only import has no D) keep their fresh
initialisation, and the caller says so in one line.

The new run's config starts from the source's: the keys the architecture's
``build`` reads (found by watching it build) shape the networks and must stay
as the source has them; anything else (lr, batch size, trainer options) is
free. config.json records the source and the sha256 of its weights file.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import UserError
from ..fileio import sha256_of

INIT_KEY = "init"  # config.json's record of the source
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass(frozen=True)
class InitSource:
    """The weights a run starts from: the source run, its checkpoint folder and that file's sha256."""

    run: Path
    checkpoint: Path
    sha256: str

    @property
    def weights(self) -> Path:
        from .checkpoint import NETWORKS

        return self.checkpoint / NETWORKS

    def record(self) -> dict[str, Any]:
        from .checkpoint import step_of

        return {"run": str(self.run.resolve()), "checkpoint": str(self.checkpoint.resolve()),
                "step": step_of(self.checkpoint), "sha256": self.sha256}


def find_source(run_dir: Path) -> tuple[InitSource, list[str]]:
    """The newest checkpoint of ``run_dir`` whose weights read, and one warning per newer one skipped.

    trainer.pt is not needed: only the networks are taken, so a weights-only
    checkpoint counts as one.
    """
    from .checkpoint import NETWORKS, DamagedCheckpoint, read_header

    root = Path(run_dir) / "checkpoints"
    folders = sorted((int(m.group(1)), p) for p in (root.iterdir() if root.is_dir() else ())
                     if (m := _STEP_DIR.match(p.name)) and p.is_dir())
    skipped: list[str] = []
    for _, folder in reversed(folders):
        try:
            read_header(folder / NETWORKS)
        except DamagedCheckpoint as exc:
            skipped.append(str(exc))
            continue
        warnings = [f"warning: skipping {reason}; using {folder}" for reason in skipped]
        return InitSource(Path(run_dir), folder, sha256_of(folder / NETWORKS)), warnings
    detail = f" ({'; '.join(skipped)})" if skipped else ""
    raise UserError(f"--init {run_dir}: no checkpoint with readable weights in {root}{detail}")


def recorded_source(record: Mapping[str, Any], origin: Path) -> InitSource | None:
    """The source config.json names, checked unchanged by its sha256 (to start an --init run again from step 0)."""
    entry = record.get(INIT_KEY)
    if entry is None:
        return None
    if not (isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("run", "checkpoint", "sha256"))):
        raise UserError(f"{origin}: {INIT_KEY!r} should hold the run, checkpoint and sha256 of the source")
    checkpoint = Path(entry["checkpoint"])
    source = InitSource(Path(entry["run"]), checkpoint, entry["sha256"])
    try:
        found = sha256_of(source.weights)
    except OSError as exc:
        raise UserError(f"{origin}: the run starts from {source.weights}, which cannot be read now "
                        f"({exc.strerror or exc}); it has no checkpoint of its own to continue from") from None
    if found != source.sha256:
        raise UserError(f"{origin}: the run starts from {source.weights}, whose sha256 is now {found}, not the "
                        f"recorded {source.sha256}; it has no checkpoint of its own to continue from")
    return source


def shaping_keys(arch, cfg) -> set[str]:
    """The Config fields ``arch.build`` reads: they decide the networks, so a source's weights fit only with them.

    Found by building once from a copy of ``cfg`` that records attribute reads
    (on the meta device, so nothing is allocated), knowing nothing of the architecture.
    """
    import torch

    names = {f.name for f in dataclasses.fields(cfg)}
    seen: set[str] = set()

    class Recording(type(cfg)):
        def __getattribute__(self, name):
            if name in names:
                seen.add(name)
            return super().__getattribute__(name)

    probe = copy.copy(cfg)
    probe.__class__ = Recording
    try:
        with torch.device("meta"):
            arch.build(probe)
    except Exception:  # an architecture whose build needs real tensors: build on the CPU instead
        arch.build(probe)
    return seen


def init_config(arch, source_run, *, preset: str | None, data: str | None, sets: Mapping[str, Any],
                flags: Mapping[str, Any]):
    """The new run's Resolved: the source's architecture config, then the preset, --set and flags on top.

    Trainer options start from the defaults as for any new run. A preset
    chosen by the data's name yields to the source on network-shaping keys; an
    explicit --preset, --set or flag that changes one is refused, naming every such key.
    """
    from ..config import Resolved, TrainOptions, apply_overrides, choose_preset, presets, validate

    base = source_run.resolved.config
    chosen = choose_preset(arch, preset, data)
    preset_values = dict(presets(arch)[chosen]) if chosen else {}
    flags = {k: v for k, v in flags.items() if v is not None}
    overrides = {**sets, **flags}
    cfg, opts = apply_overrides(arch, base, TrainOptions(), preset_values)
    cfg, opts = apply_overrides(arch, cfg, opts, overrides)

    def origin(key: str) -> str:
        if key in flags:
            return f"--{key.replace('_', '-')}"
        if key in sets:
            return "--set"
        return f"preset {chosen}" if key in preset_values else "the source"

    clashes = []
    for key in sorted(shaping_keys(arch, base)):
        new, old = getattr(cfg, key), getattr(base, key)
        if new == old:
            continue
        if preset is None and key not in overrides:  # a preset named like the data yields to the source
            cfg = dataclasses.replace(cfg, **{key: old})
        else:
            clashes.append(f"{key}={new!r} (from {origin(key)}; the source has {old!r})")
    if clashes:
        raise UserError(f"--init {source_run.path}: {'; '.join(clashes)}: "
                        f"{'this key shapes' if len(clashes) == 1 else 'these keys shape'} the networks, so it "
                        "must stay as the source has it (change training keys such as lr freely)")
    validate(arch, cfg, origin, opts)
    recorded = {k: getattr(cfg, k, getattr(opts, k, None)) for k in overrides}
    return Resolved(arch.name, chosen, recorded, cfg, opts, data)


def refuse_nonfinite(source: InitSource, weights: dict | None = None) -> None:
    """start_refusal when the source's networks (or their EMA) hold NaN or inf: fresh optimizers, so the
    networks are all a run takes from it. ``weights``: already loaded (else read here, for the launcher)."""
    from .checkpoint import load_networks, nonfinite_in, start_refusal

    bad = nonfinite_in(source.checkpoint, weights if weights is not None else load_networks(source.checkpoint))
    if bad is not None:
        raise start_refusal(f"--init {source.run}: {bad}", source.checkpoint, source.run)


def load_initial(nets: dict, ema: dict, source: InitSource) -> list[str]:
    """Fill ``nets`` (and their EMA copies) from the source's weights; returns notes for the user.

    Strict per role: every tensor of a network present in the source must be
    there with its shape, and nothing extra; a mismatch names the tensor. Weights
    holding NaN or inf are refused, naming the tensor (a run would train nothing from them).
    """
    from .checkpoint import load_networks, load_strict

    path = source.weights
    weights = load_networks(source.checkpoint)
    refuse_nonfinite(source, weights)
    known = set(nets) | {f"{role}_ema" for role in nets}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise UserError(f"--init {source.run}: {path} holds network(s) {', '.join(unknown)} that this run does "
                        f"not build (it builds {', '.join(sorted(nets))})")
    for role, module in nets.items():
        if role in weights:
            load_strict(module, weights[role], role, f"--init: {path}", "the network this run builds")
    for role, module in ema.items():
        name = f"{role}_ema"
        if name in weights:
            load_strict(module, weights[name], name, f"--init: {path}", "the network this run builds")
        else:
            module.load_state_dict(nets[role].state_dict())
    missing = sorted(role for role in nets if role not in weights)
    if not missing:
        return []
    return [f"--init: {path} has no {', '.join(missing)}; {'it starts' if len(missing) == 1 else 'they start'} "
            "freshly initialised"]
