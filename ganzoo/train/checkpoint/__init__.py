"""Checkpoints without pickle: networks in safetensors, trainer state for weights_only loading.

A checkpoint is a folder `checkpoints/step-NNNNNNN/` holding `networks.safetensors`
(every network by role, EMA copies as `<role>_ema`) and `trainer.pt` (optimizers,
step, RNG states as tensors, data position) that loads with
`torch.load(weights_only=True)`. The folder is written under a temporary name
(`.step-N.tmp-PID`) and renamed into place, so a checkpoint either exists whole or
not at all; an old one is renamed to a hidden name (`.step-N.del-PID`) before it is
deleted, so a half-deleted checkpoint is never named `step-N`. Hidden folders a
killed process left behind are removed at the next start (`remove_stale`).

A weights-only checkpoint (`ganzoo import`) has networks.safetensors alone,
marked so in its metadata (`WEIGHTS_ONLY`): readers (sample, translate, export,
eval) use it, training refuses to resume from it (`NO_TRAINER_STATE`).

Readers pick the newest intact checkpoint (`newest_intact`) and say which newer
ones they skipped and why, so one damaged file never blocks a run.

Every checkpoint records in its networks.safetensors metadata whether the weights a run would continue
from were finite when saved (`FINITE`, decided on the device): pruning never removes the newest finite
checkpoint while the ones kept are not, a rollback returns only to a finite one, and a run never starts
from non-finite weights (`start_refusal`).

With evaluation during training, `checkpoints/best` is a relative symlink to the
step-N folder that scored best; pruning never deletes the folder it links to.
"""

from .layout import (BEST, FILES, FINITE, NETWORKS, NO_TRAINER_STATE, NONFINITE, TRAINER_STATE, WEIGHTS_ONLY,
                     DamagedCheckpoint, step_of)
from .listing import (best_checkpoint, checkpoint_dirs, fallback_warnings, latest_checkpoint, newest_finite,
                      newest_intact, problem, refuse_nonfinite_resume, start_refusal)
from .reading import (check_trainer_state, finite_record, first_nonfinite, is_weights_only, load_into, load_networks,
                      load_strict, load_trainer_state, nonfinite_in, read_header, recorded_nonfinite, restoring,
                      state_tensors, unflatten_networks)
from .writing import (clean_up, finiteness_record, flatten_networks, mark_best, newest_finite_recorded, prune,
                      remove_stale, report, save_checkpoint)

__all__ = ["BEST", "best_checkpoint", "mark_best", "prune", "FILES", "NETWORKS", "TRAINER_STATE", "DamagedCheckpoint", "step_of",
           "WEIGHTS_ONLY", "NO_TRAINER_STATE", "is_weights_only", "checkpoint_dirs",
           "fallback_warnings", "latest_checkpoint", "newest_intact", "problem", "check_trainer_state",
           "first_nonfinite", "load_into", "load_strict", "load_networks", "load_trainer_state", "read_header", "restoring",
           "unflatten_networks", "clean_up", "flatten_networks", "remove_stale", "report", "save_checkpoint",
           "FINITE", "NONFINITE", "finite_record", "recorded_nonfinite", "nonfinite_in", "state_tensors",
           "finiteness_record", "newest_finite", "newest_finite_recorded", "start_refusal", "refuse_nonfinite_resume"]
