"""A run never starts from, rolls back to, or prunes for weights holding NaN or inf.

On main a resume or --init from a checkpoint with a NaN tensor trained to the end with exit 0 writing NaN
checkpoints, a run that diverged into NaN weights pruned its last finite checkpoint, and a rollback reloaded
NaN weights. Weights are made non-finite for real: a tensor of networks.safetensors (or trainer.pt) rewritten
with NaN, or a learning rate so large that batch-norm statistics overflow within two steps.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ganzoo.train import checkpoint as ckpt
from helpers import SMOKE, ganzoo, run_copy

TRAIN = [*SMOKE, "--sample-every", "100", "--checkpoint-every", "1", "--set", "keep_checkpoints=10"]


@pytest.fixture
def run(smoke_run, tmp_path):
    """A smoke DCGAN run with checkpoints at steps 1 and 2, both finite (conftest), to change."""
    return run_copy(smoke_run, tmp_path)


def folder(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step-{step:07d}"


def poison_networks(checkpoint: Path, name: str) -> None:
    """NaN into one element of tensor ``name``; the file keeps its metadata, record of finiteness included, so
    what is refused is what the tensors hold, not what the header claims."""
    path = checkpoint / ckpt.NETWORKS
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, path, metadata=metadata)


def poison_state(checkpoint: Path, key: str) -> None:
    """inf into one element of an Adam moment of trainer.pt (``optimizers/G/state/0/exp_avg``)."""
    path = checkpoint / ckpt.TRAINER_STATE
    state = torch.load(path, weights_only=True)
    _, name, _, index, moment = key.split("/")
    state["optimizers"][name]["state"][int(index)][moment].view(-1)[0] = float("inf")
    torch.save(state, path)


def snapshot(run: Path) -> dict:
    """Every file of a run by path, with its bytes: a refusal must leave all of them as they were (but the lock
    file, where each process that takes the run's lock says who it is: ganzoo.run_lock)."""
    from ganzoo.run_lock import LOCK

    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.name != LOCK}


def one_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


@pytest.mark.parametrize("poison, file, tensor", [
    (lambda c: poison_networks(c, "G/main.0.linear.weight"), ckpt.NETWORKS, "G/main.0.linear.weight"),
    (lambda c: poison_networks(c, "G_ema/main.3.weight"), ckpt.NETWORKS, "G_ema/main.3.weight"),
    (lambda c: poison_networks(c, "D/main.3.running_var"), ckpt.NETWORKS, "D/main.3.running_var"),
    (lambda c: poison_state(c, "optimizers/G/state/0/exp_avg"), ckpt.TRAINER_STATE, "optimizers/G/state/0/exp_avg"),
], ids=["network", "ema", "buffer", "adam-moment"])
def test_a_resume_from_nonfinite_weights_is_refused_naming_the_tensor_before_anything_is_written(run, poison,
                                                                                                 file, tensor):
    poison(folder(run, 2))
    before = snapshot(run)
    result = ganzoo("train", "dcgan", *TRAIN, "--resume", run, "--steps", 4, timeout=300)
    line = one_error(result)
    assert line == (f"Error: {folder(run, 2) / file}: tensor {tensor} holds NaN or inf; a run cannot start from "
                    f"weights that are not finite (the newest checkpoint with finite weights is {folder(run, 1)}: "
                    f"move the newer ones out of {run / 'checkpoints'} to start from it)")
    assert snapshot(run) == before


def test_init_from_nonfinite_weights_is_refused_and_creates_nothing(run, tmp_path):
    poison_networks(folder(run, 2), "G_ema/main.0.linear.weight")
    result = ganzoo("train", "dcgan", *TRAIN, "--init", run, "--steps", 2, "--out", tmp_path / "new", timeout=300)
    line = one_error(result)
    assert line.startswith(f"Error: --init {run}: {folder(run, 2) / ckpt.NETWORKS}: tensor G_ema/main.0.linear.weight "
                           "holds NaN or inf; a run cannot start from weights that are not finite")
    assert f"the newest checkpoint with finite weights is {folder(run, 1)}" in line
    assert not (tmp_path / "new").exists()


def test_an_init_run_restarted_from_its_source_refuses_nonfinite_source_weights(run, tmp_path):
    """An --init run killed before its first checkpoint starts again from the weights config.json records; a
    source recorded with NaN weights (an older ganzoo let --init start from them) is refused too."""
    new = tmp_path / "new"
    assert ganzoo("train", "dcgan", *TRAIN, "--init", run, "--steps", 1, "--out", new, timeout=300).returncode == 0
    shutil.rmtree(new / "checkpoints")  # as if killed before its first checkpoint
    poison_networks(folder(run, 2), "G/main.0.linear.weight")
    record = json.loads((new / "config.json").read_text())
    record["init"]["sha256"] = hashlib.sha256((folder(run, 2) / ckpt.NETWORKS).read_bytes()).hexdigest()
    (new / "config.json").write_text(json.dumps(record))
    before = snapshot(new)
    line = one_error(ganzoo("train", "dcgan", *TRAIN, "--resume", new, "--steps", 2, timeout=300))
    assert f"{folder(run, 2) / ckpt.NETWORKS}: tensor G/main.0.linear.weight holds NaN or inf" in line
    assert snapshot(new) == before


def all_finite(checkpoint: Path) -> bool:
    return all(torch.isfinite(t).all() for t in load_file(checkpoint / ckpt.NETWORKS).values() if t.is_floating_point())


def test_a_run_diverging_into_nonfinite_weights_never_prunes_its_last_finite_checkpoint(tmp_path):
    """lr=1e8: after one step the weights are ~1e8 and batch-norm statistics ~1e33; from the second on they
    overflow to inf while the losses stay finite, so no step is skipped and the run ends with exit 0. With
    keep_checkpoints=1 main kept step 4 alone; the finite step 1 stays, named by every refusal."""
    run = tmp_path / "run"
    result = ganzoo("train", "dcgan", *SMOKE, "--sample-every", "100", "--checkpoint-every", "1", "--steps", 4,
                    "--set", "lr=1e8", "--set", "keep_checkpoints=1", "--out", run, timeout=300)
    assert result.returncode == 0, result.stderr
    kept = ckpt.checkpoint_dirs(run)
    assert [ckpt.step_of(p) for p in kept] == [1, 4], result.stderr
    assert all_finite(kept[0]) and not all_finite(kept[1])
    assert ckpt.finite_record(kept[0]) is True and ckpt.finite_record(kept[1]) is False
    assert (f"warning: checkpoint {folder(run, 4)} holds NaN or inf (tensor " in result.stderr
            and f"the newest checkpoint with finite weights, {folder(run, 1)}, is kept" in result.stderr)
    info = ganzoo("info", run, timeout=120)
    assert info.returncode == 0 and "not finite:   step-0000004 (" in info.stdout
    line = one_error(ganzoo("train", "dcgan", *SMOKE, "--resume", run, "--steps", 6, timeout=300))
    assert f"the newest checkpoint with finite weights is {folder(run, 1)}" in line
    sample = ganzoo("sample", run, "--n", 4, "--out", tmp_path / "s.png", timeout=120)
    if sample.returncode != 0:  # G_ema's statistics overflowed too: refused, naming the way out
        assert one_error(sample).endswith("the newest checkpoint with finite weights is step 1: pass --step 1")
    assert ganzoo("sample", run, "--step", 1, "--n", 4, "--out", tmp_path / "s1.png", timeout=120).returncode == 0


def test_a_rollback_returns_to_the_newest_checkpoint_with_finite_weights(tmp_path, capsys):
    """D's weights turn NaN after step 4 (as an overflowing update leaves them): steps 5 and 6 are skipped and
    step 6 is checkpointed with the NaN weights before the third skip (step 7) triggers the rollback. main rolled
    back to step 6, NaN again, until max_rollbacks stopped the run; the rollback goes to step 4 and trains on."""
    from test_nonfinite import records, trainer_for

    trainer = trainer_for(tmp_path / "run", steps=10, checkpoint_every=2, keep_checkpoints=10, max_nonfinite=3,
                          on_nonfinite="rollback")
    trainer.run(until=4)
    with torch.no_grad():
        trainer.nets["D"][1].bias.fill_(float("nan"))
    result = trainer.run()
    assert result.step == 10 and trainer.rollbacks == 1
    assert [(r["step"], r["rollback/from_step"]) for r in records(tmp_path / "run") if "rollback" in r] == [(4, 7)]
    assert f"warning: checkpoint {folder(tmp_path / 'run', 6)} holds NaN or inf (tensor D/1.bias)" in \
        capsys.readouterr().err  # written, then replaced when the run came back to step 6
    assert all_finite(folder(tmp_path / "run", 10))


def _save(run: Path, step: int, finite: bool, record: bool = True, keep: int = 1) -> Path:
    net = nn.Linear(2, 2)
    if not finite:
        with torch.no_grad():
            net.bias.fill_(math.nan)
    state = {"step": step, "optimizers": {}, "scaler": {}, "rng": {"loss": torch.zeros(1, dtype=torch.uint8),
             "torch": torch.zeros(1, dtype=torch.uint8)}, "data": {"epoch": 0, "index": 0}, "nonfinite": {}}
    saved = ckpt.save_checkpoint(run, step, {"G": net}, state, keep=keep)
    if not record:  # as written before checkpoints recorded finiteness
        save_file(load_file(saved / ckpt.NETWORKS), saved / ckpt.NETWORKS)
    return saved


def steps(run: Path) -> list[int]:
    return [ckpt.step_of(p) for p in ckpt.checkpoint_dirs(run)]


def test_pruning_reads_the_record_and_counts_a_checkpoint_without_one_as_possibly_finite(tmp_path):
    """Finite runs prune as before; while the kept ones are not finite, the newest that may be finite stays
    (a checkpoint from before the record counts as one), until a finite checkpoint is kept again."""
    healthy = tmp_path / "healthy"
    for step in (1, 2, 3):
        _save(healthy, step, finite=True, keep=2)
    assert steps(healthy) == [2, 3]

    run = tmp_path / "run"
    _save(run, 1, finite=True, record=False)
    _save(run, 2, finite=False)
    _save(run, 3, finite=False)
    assert steps(run) == [1, 3]  # main kept step 3 alone
    assert ckpt.finite_record(folder(run, 1)) is None and ckpt.finite_record(folder(run, 3)) is False
    _save(run, 4, finite=True)
    _save(run, 5, finite=False)
    assert steps(run) == [4, 5]  # step 4 is finite and recorded so: the older ones go
    _save(run, 6, finite=False, keep=2)
    assert steps(run) == [4, 5, 6] and ckpt.newest_finite(run) == folder(run, 4)


def test_the_nproc_launcher_refuses_nonfinite_weights_once_before_torchrun_starts(run, tmp_path):
    """Every rank would refuse the same file: the launcher says it in one line and starts no process."""
    poison_networks(folder(run, 2), "G/main.0.linear.weight")
    expected = f"{folder(run, 2) / ckpt.NETWORKS}: tensor G/main.0.linear.weight holds NaN or inf"
    for args in (["--resume", run], ["--init", run, "--out", tmp_path / "new"]):
        result = ganzoo("train", "dcgan", *TRAIN, "--steps", 4, "--nproc-per-node", 2, *args, timeout=300)
        assert expected in one_error(result) and "torch" not in result.stderr, result.stderr
    assert not (tmp_path / "new").exists() and not folder(run, 3).exists()
