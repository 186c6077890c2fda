"""One writer per run folder: while a run trains, a second `ganzoo train` on its folder is refused, readers work.

Real processes, real locks: the live writer is a real `ganzoo train` (or a real process holding the run's
lock, where only the refusal is under test); the second writer is a real `ganzoo train` process, whose
one `Error:` line names the live one. A SIGKILLed holder leaves no stale lock. Holding the lock, a resume
removes the scratch folders in checkpoints/ even where their names carry the id of a live process that is
not ganzoo (ids are reused; on shared storage they name another machine's processes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import SMOKE, ganzoo, ganzoo_traceback, invoke
from test_run_lifecycle import start_training, wait_for_steps

FAST = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    path = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, **FAST, "PYTHONPATH": path}


def _refused_by(result, pid: int) -> str:
    """The one `Error:` line of a refused second writer, which names the live one; exit 1, no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    assert not ganzoo_traceback(output), output
    assert f"pid {pid} " in errors[0] and "one writer" in errors[0], errors[0]
    return errors[0]


def _tree(folder: Path) -> dict:
    """Every file under ``folder`` (hidden ones included) with its bytes: to show that nothing was written."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    """A two-step DCGAN run with a checkpoint (each test copies it)."""
    run = tmp_path_factory.mktemp("one-writer") / "run"
    made = invoke("train", "dcgan", *SMOKE, "--batch-size", 16, "--steps", 2, "--out", run)
    assert made.exit_code == 0, made.output
    return run


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ganzoo import run_lock
    run_lock.acquire(Path(sys.argv[1]))
    print("held", flush=True)
    time.sleep(600)
""")


@pytest.fixture
def holder():
    """A real process that holds a run folder's lock, as a training run does, until killed."""
    started = []

    def hold(run_dir: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True,
                                env=_env())
        started.append(proc)
        assert proc.stdout.readline() == "held\n"
        return proc

    yield hold
    for proc in started:
        proc.kill()
        proc.wait()


def test_a_second_writer_is_refused_while_the_run_trains_and_readers_still_work(tmp_path, small_run):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    trainer = start_training(run, "--resume", str(run), "--checkpoint-every", "1000000", env=_env())
    try:
        wait_for_steps(run, trainer, steps=4)
        config = (run / "config.json").read_bytes()
        for second in (["--resume", run], ["--resume", "auto", "--out", run]):
            result = ganzoo("train", "dcgan", *second, "--steps", 3, env=_env(), timeout=300)
            line = _refused_by(result, trainer.pid)
            assert str(run) in line and "ganzoo train dcgan" in line, line
        assert (run / "config.json").read_bytes() == config  # the refused ones wrote nothing
        # readers read the run while it trains (its step-2 checkpoint stays: no new one before it stops)
        assert invoke("info", run).exit_code == 0
        sampled = invoke("sample", run, "--n", 4, "--out", tmp_path / "grid.png")
        assert sampled.exit_code == 0, sampled.output
        exported = invoke("export", run, "--out", tmp_path / "export")
        assert exported.exit_code == 0, exported.output
        evaluated = invoke("eval", run, "--n", 100, "--metrics", "fd-fmnist", "--device", "cpu",
                           "--out", tmp_path / "eval.json")
        assert evaluated.exit_code == 0, evaluated.output
        assert trainer.poll() is None  # it trained on throughout
    finally:
        trainer.send_signal(signal.SIGTERM)
        out, err = trainer.communicate(timeout=120)
    assert trainer.returncode == 143, err
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(2, steps[-1] + 1))  # one writer's lines, each step once (step 2 ended the first run)


@pytest.mark.parametrize("case", ["resume", "resume-auto", "new-run", "init", "nproc-per-node"])
def test_a_held_run_folder_is_refused_before_anything_is_written(tmp_path, small_run, holder, case):
    """Each way of training into a folder another process trains: one line naming it, nothing written there."""
    run = tmp_path / "run"
    if case in ("new-run", "init"):
        run.mkdir()  # a run starting there now: its config.json is not written yet
    else:
        shutil.copytree(small_run, run)
    live = holder(run)
    before = _tree(run)
    args = {"resume": ["--resume", run],
            "resume-auto": ["--resume", "auto", "--out", run],
            "new-run": [*SMOKE, "--out", run],
            "init": [*SMOKE, "--init", small_run, "--out", run],
            "nproc-per-node": ["--resume", run, "--nproc-per-node", 2]}[case]
    result = ganzoo("train", "dcgan", *args, "--steps", 4, env=_env(), timeout=300)
    _refused_by(result, live.pid)
    assert "torch.distributed" not in result.stderr  # refused by the launcher before torchrun started
    assert _tree(run) == before


def test_a_sigkilled_writer_leaves_no_stale_lock(tmp_path, small_run, holder):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    live = holder(run)
    live.kill()  # SIGKILL: no handler runs; the kernel drops the lock with the process
    live.wait()
    resumed = invoke("train", "dcgan", "--resume", run, "--steps", 3)
    assert resumed.exit_code == 0, resumed.output
    assert (run / "checkpoints" / "step-0000003").is_dir()


def test_a_resume_removes_scratch_folders_named_after_live_processes_that_are_not_ganzoo(tmp_path, small_run):
    """Left by a killed writer whose id another process (here a `sleep`) now has: stale all the same."""
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    other = subprocess.Popen(["sleep", "600"])
    try:
        checkpoints = run / "checkpoints"
        stale = [checkpoints / f".step-0000004.tmp-{other.pid}", checkpoints / f".step-0000002.old-{other.pid}",
                 checkpoints / f".step-0000001.del-{other.pid}"]
        for folder in stale:
            folder.mkdir()
            (folder / "networks.safetensors").write_bytes(b"partial")
        (checkpoints / f".best.tmp-{other.pid}").symlink_to("step-0000002")
        resumed = invoke("train", "dcgan", "--resume", run, "--steps", 3)
        assert resumed.exit_code == 0, resumed.output
        assert sorted(p.name for p in checkpoints.iterdir()) == ["step-0000002", "step-0000003"]
        assert f"removed unfinished checkpoint folder {stale[0]}" in resumed.output
        assert other.poll() is None  # the other process is untouched
    finally:
        other.kill()
        other.wait()
