"""What a checkpoint folder is made of: its two files, the names of its folders, and the error for damage."""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import UserError

NETWORKS = "networks.safetensors"
TRAINER_STATE = "trainer.pt"
FILES = (NETWORKS, TRAINER_STATE)
# networks.safetensors metadata of a checkpoint that holds weights only (`ganzoo import`): no trainer.pt, by design.
WEIGHTS_ONLY = {"ganzoo.checkpoint": "weights-only"}
# networks.safetensors metadata recorded at save: whether every floating tensor a run would continue from
# (networks, their EMA, optimizer moments, the plugin's state) was finite, and if not the first that was not.
# Pruning and rollback read it from the header alone; checkpoints written before it existed have neither key.
FINITE = "ganzoo.finite"  # "true" or "false"
NONFINITE = "ganzoo.nonfinite"  # e.g. "G_ema/main.1.running_var" or "trainer.pt:optimizers/G/state/0/exp_avg"
NO_TRAINER_STATE = ("imported weights have no trainer state: start a new run from them with "
                    "ganzoo train {arch} --init {run_dir}")
STEP_DIR = re.compile(r"^step-(\d+)$")
SCRATCH_DIR = re.compile(r"^\.step-(\d+)\.(tmp|old|del)-(\d+)$")  # in flight, or left by a killed process
BEST = "best"  # a symlink to the step-N folder that scored best during training
BEST_SCRATCH = re.compile(r"^\.best\.tmp-(\d+)$")  # the new link, before it is renamed over `best`


class DamagedCheckpoint(UserError):
    """A checkpoint file that cannot be used as it is: missing, truncated, garbage or of the wrong structure."""


def step_of(checkpoint: Path) -> int:
    return int(Path(checkpoint).name.split("-")[1])
