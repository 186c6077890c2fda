"""Checkpoint folders are atomic, pruned, and never unpickle arbitrary objects."""

import pickle
from pathlib import PurePosixPath

import pytest
import torch
from torch import nn

from ganzoo.errors import UserError
from ganzoo.train import checkpoint as ckpt


def save(run_dir, step, keep=2, value=1.0):
    net = nn.Linear(2, 2)
    nn.init.constant_(net.weight, value)
    return ckpt.save_checkpoint(run_dir, step, {"G": net}, {"step": step}, keep=keep)


def test_only_complete_checkpoints_count_and_old_ones_are_pruned(tmp_path):
    for step in (1, 2, 3):
        save(tmp_path, step)
    (tmp_path / "checkpoints" / ".step-0000009.tmp-123").mkdir()  # a write that died midway
    assert [p.name for p in ckpt.checkpoint_dirs(tmp_path)] == ["step-0000002", "step-0000003"]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-0000003"


def test_saving_a_step_again_replaces_it_whole(tmp_path):
    save(tmp_path, 5, value=1.0)
    path = save(tmp_path, 5, value=2.0)
    weights = ckpt.load_networks(path)
    assert torch.equal(weights["G"]["weight"], torch.full((2, 2), 2.0))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-0000005"]


def test_trainer_state_refuses_pickled_objects(tmp_path):
    path = save(tmp_path, 1)
    with open(path / ckpt.TRAINER_STATE, "wb") as f:
        pickle.dump({"step": 1, "evil": PurePosixPath("/x")}, f)  # an arbitrary class, not tensors or containers
    with pytest.raises(UserError, match="cannot read trainer state .*trainer.pt"):
        ckpt.load_trainer_state(path)


def test_weights_that_do_not_fit_name_the_network(tmp_path):
    path = save(tmp_path, 1)
    with pytest.raises(UserError, match="weights for 'G' do not fit"):
        ckpt.load_into({"G": nn.Linear(3, 3)}, ckpt.load_networks(path), path)
    with pytest.raises(UserError, match="no weights for network 'D'"):
        ckpt.load_into({"D": nn.Linear(2, 2)}, ckpt.load_networks(path), path)
