"""Non-finite steps in one process: skipped on the device leaving everything bitwise as it was, counted on the
device and read at log points, then stopped or rolled back (on_nonfinite) with an exact resume.

The toy plugin of test_trainer injects the faults: a NaN loss, or NaN gradients under a finite loss, at chosen
steps (each once, as a transient fault happens).
"""

import copy
import json

import pytest
import torch

from ganzoo import config
from ganzoo.errors import UserError
from ganzoo.testing import synthetic_data
from ganzoo.train.trainer import Trainer, TrainingDiverged
from helpers import checkpoint_tensors
from test_trainer import ToyGAN


def trainer_for(run_dir, steps=8, resume=False, log_every=1, **values):
    arch = ToyGAN()
    flags = {"steps": steps, "device": "cpu", "log_every": log_every, "sample_n": 4, "sample_every": 1000}
    resolved = config.resolve(arch, sets=values, flags=flags)
    return Trainer(arch, resolved, synthetic_data(arch, resolved.config, n=16), run_dir, resume=resume)


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("optimizer", ["fused", "foreach", "plain"])
@pytest.mark.parametrize("kind", ["loss", "grad"])
def test_a_skipped_step_leaves_parameters_moments_and_step_counts_bitwise_unchanged(tmp_path, optimizer, kind):
    """Step 2's D phase is poisoned (a NaN loss, or NaN gradients under a finite loss): D, its Adam moments and
    step count are bitwise as before that step, while G (finite) stepped. On main NaN gradients under a finite
    loss went into Adam and D became NaN."""
    trainer = trainer_for(tmp_path / "run", steps=3, reg_interval=100, optimizer=optimizer,
                          **{f"poison_{kind}_at": "2"})
    trainer.run(until=2)
    D_opt, _ = trainer.optimizers[("D",)]
    G_opt, _ = trainer.optimizers[("G",)]
    D_before = copy.deepcopy(trainer.nets["D"].state_dict())
    D_state, G_state = copy.deepcopy(D_opt.state_dict()), copy.deepcopy(G_opt.state_dict())
    trainer.train_step()
    assert all(torch.equal(D_before[k], v) for k, v in trainer.nets["D"].state_dict().items())
    after = D_opt.state_dict()["state"]
    for index, values in D_state["state"].items():
        for name, value in values.items():
            assert torch.equal(after[index][name], value), (index, name)
    assert int(after[0]["step"]) == 3  # D's main phase at steps 0 and 1, its lazy phase at step 0
    assert int(G_opt.state_dict()["state"][0]["step"]) == 3  # the finite phase of the same step did step
    assert not torch.equal(G_opt.state_dict()["state"][0]["exp_avg"], G_state["state"][0]["exp_avg"])
    assert int(trainer.nonfinite.count["D"]) == 1 and int(trainer.nonfinite.count["G"]) == 0


def test_skips_are_counted_per_interval_and_the_loss_mean_keeps_the_finite_steps(tmp_path):
    trainer = trainer_for(tmp_path / "run", steps=8, log_every=4, poison_loss_at="1,2,6")
    trainer.run()
    logged = [r for r in records(tmp_path / "run") if "loss/G" in r]
    assert [r["step"] for r in logged] == [4, 8]
    assert [r.get("nonfinite/D") for r in logged] == [2, 1] and not any("nonfinite/G" in r for r in logged)
    assert all(r["loss/D"] is not None and r["loss/D"] > 0 for r in logged)  # the NaNs are not in the mean


@pytest.mark.parametrize("poisoned, reached", [("0,1,2,3,4,5,6,7,8,9", 2), ("1,2,3", 3)])
def test_divergence_is_reported_at_the_first_log_point_after_max_nonfinite_skips(tmp_path, poisoned, reached):
    """max_nonfinite=3, log_every=5: the third consecutive skip (step `reached`) is read at step 5, also when a
    finite step follows it before the log point. On main it stopped inside the step of the third skip."""
    trainer = trainer_for(tmp_path / "run", steps=20, log_every=5, checkpoint_every=100, max_nonfinite=3,
                          poison_loss_at=poisoned)
    with pytest.raises(TrainingDiverged) as raised:
        trainer.run()
    assert trainer.step == 5
    message = str(raised.value)
    assert f"phase 'D' was not finite for 3 consecutive runs of it, at step {reached}" in message
    assert "no checkpoint was written yet" in message


def test_stop_names_the_last_good_checkpoint(tmp_path):
    trainer = trainer_for(tmp_path / "run", steps=20, checkpoint_every=2, max_nonfinite=2, poison_loss_at="5,6")
    with pytest.raises(TrainingDiverged, match=r"at step 6; the last good checkpoint is .*step-0000006"):
        trainer.run()
    assert trainer.step == 7  # step 6's checkpoint was written after one skip; the second is read after step 6
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert names[-1] == "step-0000006"


def test_rollback_reloads_the_last_checkpoint_lowers_the_lr_and_resumes_exactly(tmp_path):
    """A transient NaN at step 5 (max_nonfinite=1): back to the checkpoint of step 4, lr x0.5 under the schedule,
    the loss generator reseeded, one metrics record; 12 steps in one go equal 8 steps then a resume to 12."""
    values = dict(checkpoint_every=2, max_nonfinite=1, poison_loss_at="5", on_nonfinite="rollback",
                  halve_lr=True, keep_checkpoints=10)
    whole = trainer_for(tmp_path / "whole", steps=12, **values)
    result = whole.run()
    assert result.step == 12 and whole.rollbacks == 1 and whole.lr_factor == 0.5
    assert all(group["lr"] == pytest.approx(0.1 * 0.5 * 0.5) for opt, _ in whole.optimizers.values()
               for group in opt.param_groups)  # the schedule (x0.5) on top of the rollback's factor
    rollbacks = [r for r in records(tmp_path / "whole") if "rollback" in r]
    assert rollbacks == [{"step": 4, "rollback": 1, "rollback/from_step": 6, "rollback/nonfinite_step": 5,
                          "lr_factor": 0.5}]
    part = trainer_for(tmp_path / "split", steps=12, **values)
    part.run(until=8)
    resumed = trainer_for(tmp_path / "split", steps=12, resume=True, **values)
    assert resumed.rollbacks == 1 and resumed.lr_factor == 0.5
    resumed.run()
    a, b = checkpoint_tensors(tmp_path / "whole"), checkpoint_tensors(tmp_path / "split")
    assert a.keys() == b.keys()
    assert not [k for k in a if torch.is_tensor(a[k]) and not torch.equal(a[k], b[k])]
    assert a["state/lr_factor"] == 0.5 and a["state/rollbacks"] == 1


def test_rollbacks_are_limited_by_max_rollbacks(tmp_path):
    """A fault at every step from 3 on (each step's once): two rollbacks, then the third divergence stops."""
    trainer = trainer_for(tmp_path / "run", steps=20, checkpoint_every=2, max_nonfinite=1,
                          poison_loss_at=",".join(map(str, range(3, 20))), on_nonfinite="rollback", max_rollbacks=2)
    with pytest.raises(TrainingDiverged, match=r"after 2 rollback\(s\), the most max_rollbacks allows; the last "
                                               r"good checkpoint is"):
        trainer.run()
    assert trainer.rollbacks == 2 and trainer.lr_factor == 0.25


@pytest.mark.parametrize("assignment, words", [("on_nonfinite=retry", "must be one of stop, rollback"),
                                               ("rollback_lr_factor=0", "must lie in (0, 1]"),
                                               ("max_rollbacks=-1", "must not be negative")])
def test_bad_policy_settings_are_refused(assignment, words):
    key, value = assignment.split("=")
    with pytest.raises(UserError, match=r".*" + __import__("re").escape(words)):
        config.resolve(ToyGAN(), sets={key: value}, flags={"device": "cpu"})
