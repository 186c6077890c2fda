"""Refusals of a several-process run: one `Error:` line, exit 1, no traceback from ganzoo, nothing started or written.

`ganzoo train --nproc-per-node N` runs every check the one-process path runs
before touching the run folder (data loading, the data's fingerprint on
resume, the data holding a global batch, the run's place) before it starts any
process. Under plain torchrun, a refusal found by one rank or by all ends every
rank: rank 0 says it once, the others exit 1 in silence. Real processes, gloo.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import SMOKE, ganzoo, ganzoo_traceback, image_folder

FAST = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    path = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, **FAST, "PYTHONPATH": path}


def _run_on(data: Path, run: Path) -> Path:
    """A one-step DCGAN run on ``data`` (one process)."""
    made = ganzoo("train", "dcgan", *SMOKE, "--data", data, "--steps", "1", "--out", run, env=_env(), timeout=300)
    assert made.returncode == 0, made.stderr
    return run


def _changed(tmp_path: Path) -> tuple[Path, Path]:
    """A run whose data folder gained an image since: its resume is refused (the fingerprint changed)."""
    data = image_folder(tmp_path / "data", n=12, size=32)
    run = _run_on(data, tmp_path / "run")
    image_folder(tmp_path / "more", n=1, size=32)
    (tmp_path / "more" / "b" / "img000.png").rename(data / "b" / "new.png")
    return data, run


def _one_error(result, *words: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output  # (torchrun's own summary names "ChildFailedError:" mid-line)
    assert not ganzoo_traceback(output), output
    for word in words:
        assert word in output, output


# --nproc-per-node: refused before any process starts

def test_launcher_refuses_changed_data_before_starting_processes(tmp_path):
    data, run = _changed(tmp_path)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    result = ganzoo("train", "dcgan", "--resume", run, "--steps", "2", "--nproc-per-node", "2", env=_env(),
                    timeout=300)
    _one_error(result, "changed since this run started", "--allow-data-change")
    assert "torch.distributed" not in result.stderr and "FAILED" not in result.stderr, result.stderr
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


@pytest.mark.parametrize("case, words", [
    ("missing", ["missing"]),
    ("too-few", ["batch_size 8 is larger than", "4 images"]),
])
def test_launcher_refuses_data_it_cannot_train_on_before_starting_processes(tmp_path, case, words):
    data = tmp_path / "missing" if case == "missing" else image_folder(tmp_path / "few", n=4, size=32)
    run = tmp_path / "run"
    result = ganzoo("train", "dcgan", *SMOKE, "--data", data, "--steps", "2", "--out", run, "--nproc-per-node", "2",
                    env=_env(), timeout=300)
    _one_error(result, *words)
    assert "torch.distributed" not in result.stderr and "FAILED" not in result.stderr, result.stderr
    assert not run.exists()


# plain torchrun: every rank stops, rank 0 alone says why

def _torchrun(tmp_path: Path, *train: str):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "ganzoo",
               "train", *map(str, train)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)


def test_plain_torchrun_refusal_found_by_every_rank_is_one_error_from_rank_0(tmp_path):
    run = tmp_path / "run"
    result = _torchrun(tmp_path, "dcgan", *SMOKE, "--data", tmp_path / "missing", "--steps", "2", "--out", run)
    _one_error(result, "missing")
    assert not run.exists()


def test_plain_torchrun_refusal_found_by_rank_0_alone_ends_every_rank(tmp_path):
    """The data's fingerprint is rank 0's check: the other rank must not be left waiting, nor fail on its own."""
    data, run = _changed(tmp_path)
    result = _torchrun(tmp_path, "dcgan", "--resume", run, "--steps", "2")
    _one_error(result, "changed since this run started")
