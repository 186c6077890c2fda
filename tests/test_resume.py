"""Exact resume: N+M steps in one go equal N steps, stop, resume for M — bit for bit on the CPU."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from helpers import SMOKE, checkpoint_tensors, image_folder, invoke

ARGS = [*SMOKE, "--batch-size", "8", "--checkpoint-every", "2", "--sample-every", "3", "--set", "log_every=1"]


def assert_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        if torch.is_tensor(a[key]):
            assert torch.equal(a[key], b[key]), f"{key} differs"
        else:
            assert a[key] == b[key], f"{key}: {a[key]} != {b[key]}"


def test_resume_is_bitwise_identical_across_epochs(tmp_path):
    # 20 images at batch 8 make 2 steps an epoch, so the resumed part crosses epoch boundaries.
    data = image_folder(tmp_path / "data", n=20)
    common = ["--data", data, "--set", "resolution=32", "--set", "channels=3", *ARGS]
    one_go = invoke("train", "dcgan", *common, "--steps", 7, "--out", tmp_path / "one")
    assert one_go.exit_code == 0, one_go.output
    first = invoke("train", "dcgan", *common, "--steps", 3, "--out", tmp_path / "split")
    assert first.exit_code == 0, first.output
    second = invoke("train", "dcgan", "--resume", tmp_path / "split", "--steps", 7)
    assert second.exit_code == 0, second.output
    assert json.loads((tmp_path / "split" / "config.json").read_text())["train"]["steps"] == 7
    a, b = checkpoint_tensors(tmp_path / "one"), checkpoint_tensors(tmp_path / "split")
    assert a["state/step"] == 7 and any(k.startswith("net/G_ema/") for k in a)
    assert_identical(a, b)
    # The resumed run's metrics log has each step once, with the same losses as one go.
    logs = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
            for run in ("one", "split")]
    assert [r["step"] for r in logs[1]] == [r["step"] for r in logs[0]] == list(range(1, 8))
    assert [r["loss/G"] for r in logs[1]] == [r["loss/G"] for r in logs[0]]


def test_resume_on_embedded_data_with_odd_checkpoint_cadence(tmp_path):
    common = [*SMOKE, "--batch-size", "16", "--checkpoint-every", "4"]
    assert invoke("train", "dcgan", *common, "--steps", 9, "--out", tmp_path / "one").exit_code == 0
    assert invoke("train", "dcgan", *common, "--steps", 5, "--out", tmp_path / "split").exit_code == 0
    assert invoke("train", "dcgan", "--resume", "auto", "--out", tmp_path / "split", "--steps", 9).exit_code == 0
    assert_identical(checkpoint_tensors(tmp_path / "one"), checkpoint_tensors(tmp_path / "split"))


def test_sigint_checkpoints_and_resume_continues_exactly(tmp_path):
    """A real `ganzoo train` process stopped by SIGINT saves its step; resuming matches one go."""
    run = tmp_path / "interrupted"
    exe = Path(sys.executable).with_name("ganzoo")
    proc = subprocess.Popen([str(exe), "train", "dcgan", *map(str, SMOKE), "--batch-size", "16",
                             "--steps", "100000", "--out", str(run), "--checkpoint-every", "1000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped by SIGINT" in out and "--resume" in out and "Traceback" not in err
    stopped_at = checkpoint_tensors(run)["state/step"]
    assert 0 < stopped_at < 100000
    last_logged = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last_logged["step"] == stopped_at  # the partial interval before the signal is logged too
    total = stopped_at + 3
    resumed = invoke("train", "dcgan", "--resume", run, "--steps", total)
    assert resumed.exit_code == 0, resumed.output
    one_go = invoke("train", "dcgan", *SMOKE, "--batch-size", "16", "--steps", total, "--out", tmp_path / "one")
    assert one_go.exit_code == 0, one_go.output
    assert_identical(checkpoint_tensors(run), checkpoint_tensors(tmp_path / "one"))


def test_resume_refuses_config_changes_and_keeps_the_run(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "dcgan", *SMOKE, "--steps", 2, "--out", run).exit_code == 0
    before = (run / "config.json").read_text()
    result = invoke("train", "dcgan", "--resume", run, "--set", "ngf=16", "--steps", 4)
    assert result.exit_code == 1 and "cannot change 'ngf'" in result.output
    result = invoke("train", "dcgan", *SMOKE, "--steps", 2, "--out", run)
    assert result.exit_code == 1 and "already holds a run" in result.output
    assert (run / "config.json").read_text() == before
    assert os.path.exists(run / "checkpoints" / "step-0000002")


def test_resuming_a_finished_run_keeps_its_checkpoint(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "dcgan", *SMOKE, "--steps", 2, "--out", run).exit_code == 0
    before = checkpoint_tensors(run)
    mtime = (run / "checkpoints" / "step-0000002" / "trainer.pt").stat().st_mtime_ns
    again = invoke("train", "dcgan", "--resume", run)
    assert again.exit_code == 0 and "step 2" in again.output
    assert (run / "checkpoints" / "step-0000002" / "trainer.pt").stat().st_mtime_ns == mtime
    assert_identical(before, checkpoint_tensors(run))
