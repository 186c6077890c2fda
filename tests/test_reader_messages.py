"""What `info`, `sample` and `export` say about a run's odd corners.

- `info` on a run with a checkpoints/best link and no metrics.jsonl was an UnboundLocalError traceback on main,
  and damaged metrics lines were reported only when a best link existed.
- `sample` and `export` of a trained run's checkpoint without G_ema silently used G on main: a trained run
  always saves the EMA (unless ema_kimg=0), so its absence is a warning naming the file; imports (whose
  references may publish no EMA) and runs trained without EMA stay quiet.
"""

from __future__ import annotations

import os

import pytest
from ganzoo_dcgan.reference_loop import RefDCGANDiscriminator, RefDCGANGenerator
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from helpers import SMOKE, ganzoo, run_copy

TRAIN = [*SMOKE, "--sample-every", "100"]


@pytest.fixture
def run(smoke_run, tmp_path):
    """A smoke DCGAN run with checkpoints at steps 1 and 2, both finite (conftest), to change."""
    return run_copy(smoke_run, tmp_path)


def test_info_with_a_best_link_and_no_metrics_shows_the_best(run):
    (run / "metrics.jsonl").unlink()
    os.symlink("step-0000002", run / "checkpoints" / "best")
    result = ganzoo("info", run, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"best:         {run / 'checkpoints' / 'step-0000002'}" in result.stdout
    assert "metrics:" not in result.stdout


def test_info_reports_damaged_metrics_lines_without_a_best_link(run):
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 3, "loss/D": 1.\n')  # half a line, as a power cut leaves it
    result = ganzoo("info", run, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"metrics:      1 damaged line(s) in {run / 'metrics.jsonl'} (a resume drops them)" in result.stdout


def drop_ema(checkpoint) -> None:
    path = checkpoint / "networks.safetensors"
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = {k: v for k, v in load_file(path).items() if not k.startswith("G_ema/")}
    save_file(tensors, path, metadata=metadata)


def test_sample_and_export_warn_once_when_a_trained_checkpoint_has_no_ema(run, tmp_path):
    checkpoint = run / "checkpoints" / "step-0000002"
    drop_ema(checkpoint)
    warning = (f"warning: {checkpoint / 'networks.safetensors'} has no G_ema, which training with ema_kimg=10 "
               "always saves; using the live weights (G) instead")
    for args in (["sample", run, "--n", 4, "--out", tmp_path / "s.png"], ["export", run, "--out", tmp_path / "e"]):
        result = ganzoo(*args, timeout=300)
        assert result.returncode == 0, result.stderr
        assert result.stderr.count(warning) == 1, result.stderr


def test_runs_without_ema_by_design_sample_quietly(tmp_path):
    """ema_kimg=0 trains without EMA; an import of pytorch/examples' DCGAN files has none either."""
    import torch

    trained = tmp_path / "no-ema"
    assert ganzoo("train", "dcgan", *TRAIN, "--steps", 1, "--set", "ema_kimg=0", "--out", trained,
                  timeout=300).returncode == 0
    G, D = RefDCGANGenerator(8, 4, 3), RefDCGANDiscriminator(6, 3)
    torch.save(G.state_dict(), tmp_path / "netG_epoch_1.pth")
    torch.save(D.state_dict(), tmp_path / "netD_epoch_1.pth")
    imported = tmp_path / "imported"
    assert ganzoo("import", tmp_path / "netG_epoch_1.pth", tmp_path / "netD_epoch_1.pth", "--arch", "dcgan",
                  "--out", imported, timeout=300).returncode == 0
    for run in (trained, imported):
        result = ganzoo("sample", run, "--n", 4, "--out", tmp_path / f"{run.name}.png", timeout=300)
        assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
