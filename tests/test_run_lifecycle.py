"""A run is never a dead end: early deaths resume from step 0, early errors leave nothing, signals checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from helpers import SMOKE, checkpoint_tensors, invoke
from test_registry import install
from test_resume import assert_identical

EXE = Path(sys.executable).with_name("ganzoo")


def start_training(run: Path, *extra: str, **popen) -> subprocess.Popen:
    """A real `ganzoo train dcgan` that would run for hours; its output is piped (no terminal).

    Its hang-up signal is reset to the default: a test session run under `nohup` would otherwise hand it an
    ignored SIGHUP, which `ganzoo train` rightly keeps ignored (ganzoo/signals.py).
    """
    popen.setdefault("preexec_fn", _default_hangup)
    return subprocess.Popen([str(EXE), "train", "dcgan", *SMOKE, "--batch-size", "16", "--steps", "100000",
                             "--out", str(run), "--set", "log_every=1", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _default_hangup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def wait_for_steps(run: Path, proc: subprocess.Popen, steps: int = 2, timeout: float = 120) -> None:
    metrics = run / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < steps):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_zero(tmp_path):
    run = tmp_path / "run"
    proc = start_training(run, "--checkpoint-every", "1000000")
    wait_for_steps(run, proc)
    proc.kill()  # SIGKILL: no handler runs, no checkpoint is written
    proc.wait(timeout=60)
    assert (run / "config.json").exists() and not (run / "checkpoints").exists()

    again = invoke("train", "dcgan", *SMOKE, "--batch-size", 16, "--steps", 3, "--out", run)
    assert again.exit_code == 1 and f"--resume {run}" in again.output  # a new run there is refused, as before
    resumed = invoke("train", "dcgan", "--resume", "auto", "--out", run, "--steps", 3)
    assert resumed.exit_code == 0, resumed.output
    assert "starting it again from step 0" in resumed.output
    one_go = invoke("train", "dcgan", *SMOKE, "--batch-size", 16, "--steps", 3, "--set", "log_every=1",
                    "--out", tmp_path / "one")
    assert one_go.exit_code == 0, one_go.output
    assert_identical(checkpoint_tensors(run), checkpoint_tensors(tmp_path / "one"))
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # the killed attempt's lines are gone


FAILING_PLUGIN = """
    from ganzoo_dcgan import DCGAN

    class FailsAtFirstStep(DCGAN):
        name = "{name}"

        def loss(self, phase, nets, batch, ctx):
            raise MemoryError("out of memory in the first step (a real plugin bug or OOM)")
"""


@pytest.fixture
def failing_arch(tmp_path, monkeypatch):
    """An installed plugin whose first training step fails: what OOM or a plugin bug does to a run."""
    from ganzoo import registry

    site = tmp_path / "site"
    site.mkdir()
    uid = uuid.uuid4().hex[:8]
    name, module = f"fails-{uid}", f"gzfake_fails_{uid}"
    install(site, f"gzfake-fails-{uid}", "1.0", {name: f"{module}:FailsAtFirstStep"},
            {module: FAILING_PLUGIN.format(name=name)})
    monkeypatch.syspath_prepend(str(site))
    registry.clear_cache()
    yield name
    registry.clear_cache()
    sys.modules.pop(module, None)


def test_a_failure_before_the_first_step_removes_the_run_folder_it_made(tmp_path, failing_arch):
    run = tmp_path / "new-run"
    with pytest.raises(MemoryError):
        invoke("train", failing_arch, *SMOKE, "--steps", 3, "--out", run)
    assert not run.exists()


def test_a_failure_before_the_first_step_keeps_what_the_folder_held_before(tmp_path, failing_arch):
    run = tmp_path / "mine"
    run.mkdir()
    (run / "notes.txt").write_text("the user's own file")
    with pytest.raises(MemoryError):
        invoke("train", failing_arch, *SMOKE, "--steps", 3, "--out", run)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    assert (run / "notes.txt").read_text() == "the user's own file"


@pytest.mark.parametrize("args", [["--seed", "-1"], ["--set", "lr=inf"], ["--set", "ema_kimg=nan"],
                                  ["--set", "max_nonfinite=0"], ["--device", "cuda:7"]])
def test_errors_found_before_training_leave_no_run_folder(tmp_path, args):
    import torch

    if args[0] == "--device" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    run = tmp_path / "run"
    result = invoke("train", "dcgan", *SMOKE, "--steps", 2, "--out", run, *args)
    assert result.exit_code == 1 and result.output.count("Error:") == 1, result.output
    assert not run.exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_checkpoint_and_resume_exactly(tmp_path, sig, code):
    """SIGINT has its own test in test_resume.py; a hang-up is a stop like SIGTERM."""
    run = tmp_path / "run"
    proc = start_training(run, "--checkpoint-every", "1000000")
    wait_for_steps(run, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"stopped by {sig.name}" in out and "Traceback" not in err
    stopped_at = checkpoint_tensors(run)["state/step"]
    total = stopped_at + 2
    assert invoke("train", "dcgan", "--resume", run, "--steps", total).exit_code == 0
    one_go = invoke("train", "dcgan", *SMOKE, "--batch-size", 16, "--steps", total, "--set", "log_every=1",
                    "--out", tmp_path / "one")
    assert one_go.exit_code == 0, one_go.output
    assert_identical(checkpoint_tensors(run), checkpoint_tensors(tmp_path / "one"))


def test_under_nohup_a_hang_up_is_ignored(tmp_path):
    """nohup sets SIGHUP to ignored; training must not turn it back into a stop."""
    run = tmp_path / "run"
    proc = start_training(run, "--checkpoint-every", "1000000",
                          preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    wait_for_steps(run, proc)
    proc.send_signal(signal.SIGHUP)
    logged = len((run / "metrics.jsonl").read_text().splitlines())
    wait_for_steps(run, proc, steps=logged + 3)  # it keeps training
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "stopped by SIGTERM" in out, err


def test_progress_shows_the_plan_the_first_step_and_an_estimate_without_a_terminal(tmp_path):
    result = subprocess.run([str(EXE), "train", "dcgan", *SMOKE, "--steps", "40", "--set", "log_every=10",
                             "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "plan: steps 0 -> 40 (" in result.stdout and "epochs)" in result.stdout
    lines = result.stderr.splitlines()
    progress = [line for line in lines if line.startswith("step ")]
    assert progress[0].startswith("step 1/40 (first step took")  # alive within the first step, not after 10%
    estimates = [i for i, line in enumerate(lines) if line.startswith("estimate: 30 more steps at ")]
    assert len(estimates) == 1 and "about" in lines[estimates[0]]
    assert progress[-1].startswith("step 40/40")


def test_a_mistyped_command_is_a_usage_error_with_the_suggestion():
    result = subprocess.run([str(EXE), "trian", "dcgan"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2  # click's usage errors; README documents 1 for input errors, 2 for usage
    assert "No such command 'trian'" in result.stderr and "Did you mean 'train'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_info_shows_the_overrides_in_force_after_a_resume(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "dcgan", *SMOKE, "--steps", 2, "--out", run, "--set", "log_every=1").exit_code == 0
    assert invoke("train", "dcgan", "--resume", run, "--steps", 4, "--set", "sample_every=2").exit_code == 0
    overrides = [line for line in invoke("info", run).output.splitlines() if line.startswith("overrides:")]
    assert overrides == ["overrides:    log_every=1, steps=4, device=cpu, sample_every=2"]
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 4
