"""Checkpoint folders are atomic, pruned, cleaned after a kill, and never unpickle arbitrary objects."""

import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
from pathlib import PurePosixPath

import pytest
import torch
from torch import nn

from ganzoo.errors import UserError
from ganzoo.train import checkpoint as ckpt


def trainer_state(step: int) -> dict:
    """The smallest state with the structure trainer.pt must have."""
    return {"step": step, "optimizers": {"G": {"state": {}, "param_groups": []}}, "scaler": {},
            "rng": {"loss": torch.get_rng_state(), "torch": torch.get_rng_state()},
            "data": {"epoch": 0, "index": 0}, "nonfinite": {"main": 0}}


def save(run_dir, step, keep=2, value=1.0):
    net = nn.Linear(2, 2)
    nn.init.constant_(net.weight, value)
    return ckpt.save_checkpoint(run_dir, step, {"G": net}, trainer_state(step), keep=keep)


def names(run_dir):
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def test_only_complete_checkpoints_count_and_old_ones_are_pruned(tmp_path):
    for step in (1, 2, 3):
        save(tmp_path, step)
    (tmp_path / "checkpoints" / ".step-0000009.tmp-123").mkdir()  # a write that died midway
    half = tmp_path / "checkpoints" / "step-0000008"  # half deleted by an older version
    half.mkdir()
    (half / ckpt.NETWORKS).write_bytes(b"")
    assert [p.name for p in ckpt.checkpoint_dirs(tmp_path)] == ["step-0000002", "step-0000003"]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-0000003"


def test_saving_a_step_again_replaces_it_whole(tmp_path):
    save(tmp_path, 5, value=1.0)
    path = save(tmp_path, 5, value=2.0)
    weights = ckpt.load_networks(path)
    assert torch.equal(weights["G"]["weight"], torch.full((2, 2), 2.0))
    assert names(tmp_path) == ["step-0000005"]


def test_pruning_never_deletes_the_checkpoint_just_written(tmp_path):
    """A resume that fell back past a newer (damaged) checkpoint keeps what it writes, even with keep=1."""
    save(tmp_path, 2)
    save(tmp_path, 6)
    path = save(tmp_path, 3, keep=1)
    assert names(tmp_path) == ["step-0000003", "step-0000006"] and path.name == "step-0000003"


def test_trainer_state_refuses_pickled_objects_in_one_line(tmp_path):
    path = save(tmp_path, 1)
    for write in (lambda f: pickle.dump({"step": 1, "evil": PurePosixPath("/x")}, f, protocol=2),
                  lambda f: torch.save({"step": 1, "evil": PurePosixPath("/x")}, f)):
        with open(path / ckpt.TRAINER_STATE, "wb") as f:
            write(f)  # an arbitrary class, not tensors or containers
        with pytest.raises(UserError) as caught:
            ckpt.load_trainer_state(path)
        message = str(caught.value)
        assert message.startswith(str(path / ckpt.TRAINER_STATE)) and "pickled object" in message
        assert "pathlib.PurePosixPath" in message and "\n" not in message and "weights_only" not in message


@pytest.mark.parametrize("damage,message", [
    (lambda s: s.pop("optimizers"), "key 'optimizers' is missing"),
    (lambda s: s.update(step="4"), "'step' should be an integer, found str"),
    (lambda s: s["rng"].update(loss=7), "'rng/loss' should be an RNG state (uint8 tensor), found int"),
    (lambda s: s["optimizers"]["G"].pop("param_groups"), "'optimizers/G/param_groups' should be a list, found nothing"),
    (lambda s: s["data"].update(index=1.5), "'data/index' should be an integer, found float"),
])
def test_trainer_state_structure_is_checked_and_names_the_key(tmp_path, damage, message):
    path = save(tmp_path, 1)
    state = trainer_state(1)
    damage(state)
    torch.save(state, path / ckpt.TRAINER_STATE)
    with pytest.raises(UserError, match=f"^{path / ckpt.TRAINER_STATE}: .*"):
        ckpt.load_trainer_state(path)
    assert ckpt.problem(path).endswith(message)


def test_weights_that_do_not_fit_name_the_tensor_and_both_shapes(tmp_path):
    path = save(tmp_path, 1)
    with pytest.raises(UserError, match=r"G/weight: checkpoint has \(2, 2\), the network built from config.json "
                                        r"has \(3, 3\)"):
        ckpt.load_into({"G": nn.Linear(3, 3)}, ckpt.load_networks(path), path)
    with pytest.raises(UserError, match="no weights for network 'G_ema'"):
        ckpt.load_into({"G_ema": nn.Linear(2, 2)}, ckpt.load_networks(path), path)
    with pytest.raises(UserError, match="G/0.weight is missing"):
        ckpt.load_into({"G": nn.Sequential(nn.Linear(2, 2))}, ckpt.load_networks(path), path)


def test_a_huge_declared_header_is_refused_before_any_allocation(tmp_path):
    path = save(tmp_path, 1) / ckpt.NETWORKS
    data = path.read_bytes()
    for length in (2**62, 2**30, len(data)):
        path.write_bytes(struct.pack("<Q", length) + data[8:])
        tracemalloc.start()
        with pytest.raises(ckpt.DamagedCheckpoint, match=f"declares a {length}-byte header in a {len(data)}-byte file"):
            ckpt.read_header(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 1 << 20, peak


def test_remove_stale_cleans_only_what_dead_processes_left(tmp_path):
    for step in (1, 2, 3):
        save(tmp_path, step, keep=5)
    root = tmp_path / "checkpoints"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        for name in (f".step-0000004.tmp-{dead.pid}", f".step-0000005.tmp-{os.getpid()}",
                     f".step-0000001.del-{dead.pid}", f".step-0000004.tmp-{live.pid}"):
            (root / name).mkdir()
            (root / name / ckpt.NETWORKS).write_bytes(b"partial")
        os.replace(root / "step-0000003", root / f".step-0000003.old-{dead.pid}")  # killed between two renames
        os.remove(root / "step-0000001" / ckpt.TRAINER_STATE)  # half deleted by an older version
        (root / "step-0000007").mkdir()  # newer than every complete checkpoint: reported, not deleted
        cleaned = ckpt.remove_stale(tmp_path)
        assert names(tmp_path) == [f".step-0000004.tmp-{live.pid}", "step-0000002", "step-0000003", "step-0000007"]
        assert len(cleaned) == 5
        assert ckpt.problem(root / "step-0000003") is None  # the set-aside checkpoint came back whole
    finally:
        live.kill()
        live.wait()


def test_newest_intact_falls_back_and_names_what_it_skipped(tmp_path):
    for step in (1, 2, 3):
        save(tmp_path, step, keep=5)
    root = tmp_path / "checkpoints"
    (root / "step-0000003" / ckpt.TRAINER_STATE).write_bytes(b"")
    (root / "step-0000004").mkdir()
    chosen, damaged = ckpt.newest_intact(tmp_path)
    assert chosen == root / "step-0000002"
    assert [(p.name, reason.split(": ", 1)[1]) for p, reason in damaged] == [
        ("step-0000004", "networks.safetensors and trainer.pt missing (empty folder)"),
        ("step-0000003", "empty file")]
    lines = ckpt.fallback_warnings(chosen, damaged)
    assert lines[1] == (f"warning: skipping damaged checkpoint step-0000003 ({root}/step-0000003/trainer.pt: "
                        f"empty file); using {chosen}")
    (root / "step-0000002" / ckpt.NETWORKS).write_bytes(b"\x00" * 3)
    (root / "step-0000001" / ckpt.TRAINER_STATE).unlink()
    with pytest.raises(UserError) as caught:
        ckpt.newest_intact(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"no intact checkpoint in {root}: ")
    for step in (1, 2, 3, 4):
        assert f"step-000000{step}" in message
