"""`ganzoo train ARCH --init RUN_DIR`: a new run from another run's weights, fresh optimizers at step 0."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import SMOKE, checkpoint_tensors, invoke
from safetensors.torch import load_file

ARGS = [*SMOKE, "--batch-size", "8", "--sample-every", "100"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained smoke DCGAN run (3 steps, so its EMA differs from its live weights)."""
    run = tmp_path_factory.mktemp("init") / "source"
    result = invoke("train", "dcgan", *ARGS, "--steps", 3, "--out", run)
    assert result.exit_code == 0, result.output
    return run


def networks(run, step: int) -> dict:
    return load_file(run / "checkpoints" / f"step-{step:07d}" / "networks.safetensors")


def test_init_run_starts_with_the_source_weights_bitwise_and_fresh_optimizers(source, tmp_path):
    result = invoke("train", "dcgan", *ARGS, "--steps", 0, "--init", source, "--set", "lr=1e-4", "--out",
                    tmp_path / "new")
    assert result.exit_code == 0, result.output
    before, after = networks(source, 3), networks(tmp_path / "new", 0)
    assert before.keys() == after.keys() and any(k.startswith("G_ema/") for k in after)
    for key in before:
        assert torch.equal(before[key], after[key]), key
    # G_ema came from the source's G_ema, not from its live G.
    assert not torch.equal(before["G_ema/main.0.linear.weight"], before["G/main.0.linear.weight"])
    state = checkpoint_tensors(tmp_path / "new")
    assert state["state/step"] == 0
    assert not any(k.startswith("state/optimizers/") and "/state/" in k for k in state)  # no Adam moments yet
    record = json.loads((tmp_path / "new" / "config.json").read_text())
    weights = source / "checkpoints" / "step-0000003" / "networks.safetensors"
    import hashlib

    assert record["init"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert record["init"]["step"] == 3 and record["config"]["lr"] == 1e-4
    assert record["config"]["ngf"] == 8  # the source's network-shaping config
    assert "initial weights:" in result.output


def test_init_refuses_a_network_shaping_change_naming_the_key(source, tmp_path):
    result = invoke("train", "dcgan", *ARGS, "--steps", 2, "--init", source, "--set", "ngf=16", "--out",
                    tmp_path / "new")
    assert result.exit_code == 1
    assert "ngf=16" in result.output and "source has 8" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "new").exists()


def test_init_refuses_another_architecture_and_a_run_without_checkpoint(source, tmp_path):
    other = invoke("train", "cyclegan", *SMOKE, "--steps", 1, "--init", source, "--out", tmp_path / "x")
    assert other.exit_code == 1 and "is a dcgan run, not cyclegan" in other.output
    empty = tmp_path / "empty"
    shutil.copytree(source, empty)
    shutil.rmtree(empty / "checkpoints")
    none = invoke("train", "dcgan", *ARGS, "--steps", 1, "--init", empty, "--out", tmp_path / "y")
    assert none.exit_code == 1 and "no checkpoint with readable weights" in none.output
    both = invoke("train", "dcgan", *ARGS, "--init", source, "--resume", source)
    assert both.exit_code == 1 and "give one" in both.output


def test_init_names_a_tensor_whose_shape_does_not_fit(source, tmp_path):
    # The source's config.json says ndf=16 while its weights were made with ndf=8.
    lying = tmp_path / "lying"
    shutil.copytree(source, lying)
    record = json.loads((lying / "config.json").read_text())
    record["config"]["ndf"] = 16
    (lying / "config.json").write_text(json.dumps(record))
    result = invoke("train", "dcgan", "--device", "cpu", "--batch-size", 8, "--steps", 1, "--init", lying, "--out",
                    tmp_path / "new")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "D/main.0.weight has shape (8, 1, 4, 4)" in result.output
    assert not (tmp_path / "new").exists()


def test_weights_only_source_and_missing_roles_start_fresh(source, tmp_path):
    """A checkpoint holding networks.safetensors alone (as an import writes it), generator only."""
    from safetensors.torch import save_file

    imported = tmp_path / "imported"
    (imported / "checkpoints" / "step-0000000").mkdir(parents=True)
    shutil.copy(source / "config.json", imported / "config.json")
    only_g = {k: v for k, v in networks(source, 3).items() if k.startswith("G/")}
    save_file(only_g, imported / "checkpoints" / "step-0000000" / "networks.safetensors")
    result = invoke("train", "dcgan", *ARGS, "--steps", 0, "--init", imported, "--out", tmp_path / "new")
    assert result.exit_code == 0, result.output
    assert "has no D; it starts freshly initialised" in result.output
    after = networks(tmp_path / "new", 0)
    for key, value in only_g.items():
        assert torch.equal(after[key], value)
        assert torch.equal(after[key.replace("G/", "G_ema/", 1)], value)  # no source EMA: it copies G
    fresh = invoke("train", "dcgan", *ARGS, "--steps", 0, "--out", tmp_path / "fresh")
    assert fresh.exit_code == 0
    assert torch.equal(networks(tmp_path / "fresh", 0)["D/main.0.weight"], after["D/main.0.weight"])


def test_init_run_trains_and_resumes_exactly(source, tmp_path):
    common = [*ARGS, "--checkpoint-every", "2", "--set", "log_every=1", "--set", "lr=1e-4"]
    one = invoke("train", "dcgan", *common, "--steps", 4, "--init", source, "--out", tmp_path / "one")
    assert one.exit_code == 0, one.output
    first = invoke("train", "dcgan", *common, "--steps", 2, "--init", source, "--out", tmp_path / "split")
    assert first.exit_code == 0, first.output
    second = invoke("train", "dcgan", "--resume", tmp_path / "split", "--steps", 4)
    assert second.exit_code == 0, second.output
    a, b = checkpoint_tensors(tmp_path / "one"), checkpoint_tensors(tmp_path / "split")
    assert a["state/step"] == 4 and a.keys() == b.keys()
    for key in a:
        assert (torch.equal(a[key], b[key]) if torch.is_tensor(a[key]) else a[key] == b[key]), key
    # Training moved the weights away from the source's.
    assert not torch.equal(a["net/G/main.0.linear.weight"], networks(source, 3)["G/main.0.linear.weight"])
    assert json.loads((tmp_path / "split" / "config.json").read_text())["init"]["step"] == 3


def test_init_run_without_checkpoint_restarts_from_the_source(source, tmp_path):
    """An --init run killed before its first checkpoint starts again from the same weights on --resume."""
    run = tmp_path / "new"
    assert invoke("train", "dcgan", *ARGS, "--steps", 2, "--init", source, "--out", run).exit_code == 0
    shutil.rmtree(run / "checkpoints")  # as if killed (SIGKILL) before any checkpoint
    result = invoke("train", "dcgan", "--resume", run, "--steps", 0)
    assert result.exit_code == 0, result.output
    before, after = networks(source, 3), networks(run, 0)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # Changed source weights are refused rather than silently used.
    shutil.rmtree(run / "checkpoints")
    weights = source / "checkpoints" / "step-0000003" / "networks.safetensors"
    saved = weights.read_bytes()
    try:
        weights.write_bytes(saved[:-4] + b"\0\0\0\1")
        changed = invoke("train", "dcgan", "--resume", run, "--steps", 0)
    finally:
        weights.write_bytes(saved)
    assert changed.exit_code == 1 and "not the recorded" in changed.output
