"""A NaN on ONE rank of two (real gloo processes): no hang, both ranks skip the same steps and stay identical,
and the result is what one process skipping those steps computes; on_nonfinite stop ends with one Error: line
on the launcher, rollback recovers and logs it.

The NaN comes from a tiny plugin installed for the test (as tests/test_registry.install does): its D loss turns
NaN on rank R at steps S (GANZOO_TEST_NAN="R:S,S"), each step once, as a transient fault does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from helpers import SMOKE, checkpoint_tensors, ganzoo
from test_registry import install

ROOT = Path(__file__).resolve().parents[1]

NAN_PLUGIN = '''
import dataclasses
import os

import numpy as np
from torch import nn

from ganzoo.api import IMAGES, Adam, Architecture, DataSpec, Generator, Phase

_done = set()


@dataclasses.dataclass
class Config:
    batch_size: int = 8
    lr: float = 0.01


class NanToy(Architecture):
    name = "nantoy"
    summary = "a toy whose D loss turns NaN on one rank at chosen steps"
    Config = Config

    def data_spec(self, cfg):
        return DataSpec(IMAGES, 8, 1)

    def build(self, cfg):
        return {"G": nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Unflatten(1, (1, 8, 8))),
                "D": nn.Sequential(nn.Flatten(), nn.Linear(64, 1), nn.Flatten(0))}

    def phases(self, cfg):
        adam = Adam(lr=cfg.lr, betas=(0.0, 0.99))
        return [Phase("D", ("D",), adam), Phase("G", ("G",), adam)]

    def loss(self, phase, nets, batch, ctx):
        G, D = nets["G"], nets["D"]
        real = batch["image"]
        fake = G(ctx.randn(real.shape[0], 4))
        if phase.name == "G":
            return nn.functional.softplus(-D(fake)).mean()
        loss = nn.functional.softplus(D(fake.detach())).mean() + nn.functional.softplus(-D(real)).mean()
        rank, _, steps = os.environ.get("GANZOO_TEST_NAN", "").partition(":")
        if rank and int(rank) == ctx.rank and str(ctx.step) in steps.split(",") and ctx.step not in _done:
            _done.add(ctx.step)
            return loss * float("nan")
        return loss

    def generators(self, cfg):
        return {"G": Generator("G", ("z",), lambda n, seed: {
            "z": np.random.default_rng(seed).standard_normal((n, 4), dtype=np.float32)})}
'''


@pytest.fixture
def site(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    install(folder, "gzfake-nan", "1.0", {"nantoy": "gzfake_nan:NanToy"}, {"gzfake_nan": NAN_PLUGIN})
    return folder


def train(site: Path, out: Path, *args, nan: str = "", nproc: int | None = None):
    env = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "GANZOO_CHECK_RANKS": "1", "GANZOO_TEST_NAN": nan,
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), str(site)])}
    extra = ["--nproc-per-node", str(nproc)] if nproc else []
    return ganzoo("train", "nantoy", *SMOKE, "--out", out, *args, *extra, env=env, timeout=300)


def ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Error" not in result.stderr, result.stderr
    return result


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_nan_on_one_rank_is_skipped_alike_by_both_and_equals_one_process_skipping_it(site, tmp_path):
    """Rank 1's D loss is NaN at steps 3 and 4: both ranks skip D there (every step each rank checks that all
    hold identical weights), and the weights equal one process whose D loss is NaN at the same steps, to float
    tolerance; without the NaN they would differ by far more. On main the ranks decided by one more all-reduce
    before backward; here backward always runs and the decision comes from the averaged gradients."""
    args = ["--steps", "6", "--set", "log_every=1"]
    two = ok(train(site, tmp_path / "two", *args, nan="1:3,4", nproc=2))
    ok(train(site, tmp_path / "one", *args, nan="0:3,4"))
    ok(train(site, tmp_path / "clean", *args))
    skipped = {r["step"] - 1: r.get("nonfinite/D", 0) for r in records(tmp_path / "two") if "loss/G" in r}
    assert skipped == {0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 0}, skipped
    assert not any("nonfinite/G" in r for r in records(tmp_path / "two"))
    a, b, c = (checkpoint_tensors(tmp_path / run) for run in ("two", "one", "clean"))
    nets = [k for k in a if k.startswith("net/")]
    for key in nets:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, msg=key)
    assert max((a[k] - c[k]).abs().max().item() for k in nets) > 1e-3  # the skips made a difference
    steps = {k: int(v) for k, v in a.items() if k.endswith("/step") and k.startswith("state/optimizers/")}
    assert sorted(steps.values()) == [4, 4, 6, 6], steps  # D's Adam (weight, bias) stepped 6 - 2 times
    assert "step 6/6" in two.stderr


def test_stop_ends_with_one_error_line_on_the_launcher(site, tmp_path):
    result = train(site, tmp_path / "run", "--steps", "10", "--checkpoint-every", "2", "--set", "max_nonfinite=2",
                   "--on-nonfinite", "stop", nan="1:" + ",".join(map(str, range(3, 10))), nproc=2)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if "Error" in line and "exitcode" not in line]
    assert len(errors) == 1 and errors[0].startswith("Error: training diverged:"), result.stderr
    assert "phase 'D' was not finite for 2 consecutive runs of it, at step 4" in errors[0]
    assert f"the last good checkpoint is {tmp_path / 'run' / 'checkpoints' / 'step-0000004'}" in errors[0]
    assert "Traceback" not in result.stderr, result.stderr


def test_rollback_recovers_from_a_nan_on_one_rank_and_logs_it(site, tmp_path):
    run = tmp_path / "run"
    result = ok(train(site, run, "--steps", "10", "--checkpoint-every", "2", "--set", "max_nonfinite=1",
                      "--on-nonfinite", "rollback", nan="1:5", nproc=2))
    lines = [line for line in result.stderr.splitlines() if line.startswith("rollback")]
    assert lines == [f"rollback 1/3: the loss of phase 'D' was not finite for 1 consecutive runs of it, at step 5; "
                     f"back to {run / 'checkpoints' / 'step-0000004'} (step 4), learning rates x0.5, loss generator "
                     f"reseeded"], result.stderr
    assert [r for r in records(run) if "rollback" in r] == [
        {"step": 4, "rollback": 1, "rollback/from_step": 6, "rollback/nonfinite_step": 5, "lr_factor": 0.5}]
    state = checkpoint_tensors(run)
    assert state["state/rollbacks"] == 1 and state["state/lr_factor"] == 0.5 and state["state/step"] == 10
    assert all(abs(v - 0.005) < 1e-12 for k, v in state.items() if k.endswith("/lr"))
