"""Checkpoints without pickle: networks in safetensors, trainer state for weights_only loading.

A checkpoint is a folder `checkpoints/step-NNNNNNN/` holding `networks.safetensors`
(every network by role, EMA copies as `<role>_ema`) and `trainer.pt` (optimizers,
step, RNG states as tensors, data position) that loads with
`torch.load(weights_only=True)`. The folder is written under a temporary name and
renamed into place, so a checkpoint either exists whole or not at all.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import UserError

NETWORKS = "networks.safetensors"
TRAINER_STATE = "trainer.pt"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def flatten_networks(nets: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """{'G': module} -> {'G/main.0.weight': tensor}; contiguous CPU copies for safetensors."""
    return {f"{role}/{key}": value.detach().contiguous().cpu()
            for role, module in nets.items() for key, value in module.state_dict().items()}


def unflatten_networks(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        role, _, key = name.partition("/")
        out.setdefault(role, {})[key] = value
    return out


def save_checkpoint(run_dir: Path, step: int, nets: dict[str, torch.nn.Module], state: dict,
                    metadata: dict[str, str] | None = None, keep: int = 2) -> Path:
    """Write networks and trainer state for `step` atomically; keep the newest `keep`."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(flatten_networks(nets), tmp / NETWORKS, metadata=metadata or {})
    torch.save(state, tmp / TRAINER_STATE)
    _fsync_dir_files(tmp)
    if final.exists():  # the same step saved again: move the old one aside, never delete it first
        old = root / f".step-{step:07d}.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    for old in checkpoint_dirs(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_dir_files(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def load_networks(checkpoint: Path) -> dict[str, dict[str, torch.Tensor]]:
    path = Path(checkpoint) / NETWORKS
    try:
        return unflatten_networks(load_file(path))
    except (OSError, SafetensorError) as exc:
        raise UserError(f"cannot read networks from {path}: {exc}") from None


def load_trainer_state(checkpoint: Path) -> dict:
    path = Path(checkpoint) / TRAINER_STATE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses anything but tensors and plain containers
        raise UserError(f"cannot read trainer state {path}: {type(exc).__name__}: {exc}") from None


def load_into(nets: dict[str, torch.nn.Module], weights: dict[str, dict[str, torch.Tensor]], source: Path) -> None:
    """Load weights by role; a missing role or mismatched tensor names the checkpoint."""
    for role, module in nets.items():
        if role not in weights:
            raise UserError(f"{source}: no weights for network {role!r} (has {', '.join(sorted(weights))})")
        try:
            module.load_state_dict(weights[role])
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise UserError(f"{source}: weights for {role!r} do not fit the network built from config.json: {first}") from None
