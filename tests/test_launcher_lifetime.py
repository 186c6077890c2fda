"""No process outlives `ganzoo train --nproc-per-node`, and a stop at any moment is one line and 128 + N.

Real launchers, real torchrun, real gloo ranks, real signals: SIGKILL of the launcher (no handler runs) or
of torchrun itself, and SIGINT to the launcher's process group, as a terminal's Ctrl-C sends it, at moments
from the launcher's own start-up to training. Every process the launcher started is found by pid, through a
token in the environment each of them inherits (helpers.processes_with), wherever it was reparented.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from helpers import SMOKE, checkpoint_tensors, children_of, ganzoo_traceback, invoke, processes_with

FAST = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).with_name("ganzoo")
TORCHRUN_LOG = re.compile(r"^[DIWEF]\d{4} ")  # a line of torchrun's own logging


def _env() -> dict:
    path = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, **FAST, "PYTHONPATH": path}


class Job:
    """A real `ganzoo train dcgan --nproc-per-node 2` in a process group of its own (a terminal's foreground job),
    its output in files, and every process it starts marked by a token in the environment."""

    def __init__(self, tmp_path: Path, run: Path, *args, **popen):
        self.token = f"GANZOO_TEST_JOB={uuid.uuid4().hex}"
        self.run = run
        self.out, self.err = (tmp_path / f"{run.name}-{uuid.uuid4().hex[:6]}.{x}" for x in ("out", "err"))
        key, value = self.token.split("=")
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.launcher = subprocess.Popen(
                [str(EXE), "train", "dcgan", *SMOKE, "--nproc-per-node", "2", "--set", "log_every=1", *map(str, args)],
                stdout=out, stderr=err, env={**_env(), key: value}, start_new_session=True, **popen)
        self.started = time.monotonic()

    def torchrun(self) -> int | None:
        found = children_of(self.launcher.pid)
        return found[0] if found else None

    def ranks(self) -> list[int]:
        agent = self.torchrun()
        return children_of(agent) if agent else []

    def steps_logged(self) -> int:
        metrics = self.run / "metrics.jsonl"
        return len(metrics.read_text().splitlines()) if metrics.is_file() else 0

    def wait_for(self, condition, what: str, timeout: float = 180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.launcher.poll() is not None:
                raise AssertionError(f"the launcher ended ({self.launcher.returncode}) before {what}:\n{self.output()}")
            time.sleep(0.02)
        raise AssertionError(f"no {what} after {timeout} s:\n{self.output()}")

    def left_behind(self, timeout: float) -> tuple[list[int], float]:
        """The processes of this job still alive ``timeout`` s from now at the latest, and how long they took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            alive = processes_with(self.token)
            if not alive:
                break
            time.sleep(0.05)
        return processes_with(self.token), time.monotonic() - start

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def kill_everything(self) -> None:
        for pid in processes_with(self.token):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.launcher.poll() is None:
            self.launcher.kill()
        self.launcher.wait()


@pytest.fixture
def jobs():
    started: list[Job] = []

    def start(*args, **kwargs) -> Job:
        job = Job(*args, **kwargs)
        started.append(job)
        return job

    yield start
    for job in started:  # a failed test leaves nothing running either
        job.kill_everything()


def _stop_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("stopped by")]


def test_sigkill_of_the_launcher_stops_torchrun_and_the_ranks_which_checkpoint(tmp_path, jobs):
    run = tmp_path / "run"
    job = jobs(tmp_path, run, "--steps", 100000, "--checkpoint-every", 1000000, "--out", run)
    job.wait_for(lambda: job.steps_logged() >= 3, "training")
    # rank 0 holds the run's lock for the job: a second writer is refused, naming it and the launcher
    second = invoke("train", "dcgan", "--resume", run, "--steps", 3)
    assert second.exit_code == 1 and f"(rank 0 of 2 started by pid {job.launcher.pid})" in second.output, second.output
    os.kill(job.launcher.pid, signal.SIGKILL)  # no handler runs
    left, took = job.left_behind(timeout=15)
    assert not left, f"still alive {took:.0f} s after the launcher's SIGKILL: {left}\n{job.output()}"
    output = job.output()
    assert not ganzoo_traceback(output) and "Traceback" not in output, output
    assert _stop_lines(output) == [f"stopped by SIGTERM; continue with: ganzoo train dcgan --resume {run}"], output
    step = checkpoint_tensors(run)["state/step"]  # the ranks stopped the usual way: rank 0 checkpointed
    assert f"run directory: {run} (step {step})" in output, output
    resumed = invoke("train", "dcgan", "--resume", run, "--steps", step + 2)
    assert resumed.exit_code == 0, resumed.output


def test_sigkill_of_torchrun_stops_its_ranks_which_checkpoint(tmp_path, jobs):
    run = tmp_path / "run"
    job = jobs(tmp_path, run, "--steps", 100000, "--checkpoint-every", 1000000, "--out", run)
    job.wait_for(lambda: job.steps_logged() >= 3, "training")
    ranks = job.ranks()
    assert len(ranks) == 2
    os.kill(job.torchrun(), signal.SIGKILL)
    left, took = job.left_behind(timeout=15)
    assert not left, f"still alive {took:.0f} s after torchrun's SIGKILL: {left}\n{job.output()}"
    assert job.launcher.wait(timeout=30) == 128 + signal.SIGKILL
    output = job.output()
    assert "Traceback" not in output, output
    assert _stop_lines(output) == [f"stopped by SIGKILL; continue with: ganzoo train dcgan --resume {run}"], output
    step = checkpoint_tensors(run)["state/step"]
    assert f"run directory: {run} (step {step})" in output, output


# When the SIGINT comes: a time after the start, or a moment of the job's own.
MOMENTS = {
    "launcher importing": lambda job: time.monotonic() - job.started > 0.5,
    "launcher checking": lambda job: time.monotonic() - job.started > 1.5,
    "torchrun starting": lambda job: job.torchrun(),
    "ranks starting": lambda job: job.ranks(),
    "ranks setting up": lambda job: job.ranks() and (time.sleep(1.5) or True),
    "training": lambda job: job.steps_logged() >= 2,
}


@pytest.mark.parametrize("moment", MOMENTS)
def test_ctrl_c_at_any_moment_is_one_line_and_130(tmp_path, jobs, moment):
    run = tmp_path / "run"
    job = jobs(tmp_path, run, "--steps", 100000, "--checkpoint-every", 1000000, "--out", run)
    job.wait_for(lambda: MOMENTS[moment](job), moment)
    os.killpg(job.launcher.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    assert job.launcher.wait(timeout=120) == 130, job.output()
    left, _ = job.left_behind(timeout=15)
    assert not left, left
    output = job.output()
    for noise in ("Traceback", "Aborted", "KeyboardInterrupt", "Error"):
        assert noise not in output, output
    assert not [line for line in output.splitlines() if TORCHRUN_LOG.match(line)], output
    stops = _stop_lines(output)
    if run.exists():  # it had trained (a step at least): it resumes
        assert stops == [f"stopped by SIGINT; continue with: ganzoo train dcgan --resume {run}"], output
        assert invoke("train", "dcgan", "--resume", run, "--steps", checkpoint_tensors(run)["state/step"] + 1
                      ).exit_code == 0
    else:
        assert moment != "training"
        assert stops == ["stopped by SIGINT"], output


def test_ctrl_c_before_training_is_one_line_and_130_in_one_process_too(tmp_path):
    """The same mechanism in every command (ganzoo.signals): here while `ganzoo train` loads torch and its data."""
    run = tmp_path / "run"
    proc = subprocess.Popen([str(EXE), "train", "dcgan", *SMOKE, "--steps", "100000", "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            start_new_session=True)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert (out + err).strip() == "stopped by SIGINT"  # not click's "Aborted!" with status 1, nor a traceback
    assert not run.exists()


def test_ctrl_c_while_the_console_script_imports_the_cli_is_one_line_and_130(tmp_path):
    """The console script handles stops before it imports the CLI (ganzoo.console): Python's import-time report
    (PYTHONPROFILEIMPORTTIME) shows when ganzoo.signals is in, and the Ctrl-C comes at once, mid-import."""
    run = tmp_path / "run"
    proc = subprocess.Popen([str(EXE), "train", "dcgan", *SMOKE, "--steps", "100000", "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**_env(), "PYTHONPROFILEIMPORTTIME": "1"}, start_new_session=True)
    report = []
    for line in proc.stderr:
        report.append(line)
        if line.rstrip().endswith("ganzoo.signals"):
            break
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    own = [line for line in (out + err).splitlines() if not line.startswith("import time:")]
    assert proc.returncode == 130, "".join(report) + out + err
    assert own == ["stopped by SIGINT"], own
    assert not run.exists()


def test_more_cpu_ranks_than_cores_is_one_warning_naming_both(tmp_path, jobs):
    core = min(os.sched_getaffinity(0))
    run = tmp_path / "run"
    job = jobs(tmp_path, run, "--steps", 1, "--out", run, preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    assert job.launcher.wait(timeout=300) == 0, job.output()
    warnings = [line for line in job.err.read_text().splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: --nproc-per-node 2 is more than the 1 CPU core here: the processes share them, "
                        "so training is slower than with 1"], job.output()


@pytest.mark.slow
def test_twenty_sigkills_of_the_launcher_at_random_moments_leave_no_process_and_a_resumable_run(tmp_path, jobs):
    """SIGKILL at seeded random moments, from the launcher's start-up through training and checkpointing; after
    each, nothing of the job is left, and a resume (one process, in this test's) trains to the end."""
    rng = random.Random(23)
    run = tmp_path / "run"
    anchors = [("start", lambda job: True, 6.0), ("torchrun", Job.torchrun, 4.0),
               ("ranks", Job.ranks, 5.0), ("training", lambda job: job.steps_logged() > job.logged_before, 1.5)]
    steps, slowest, moments = 0, 0.0, []
    for kill in range(20):
        steps += 40
        job = jobs(tmp_path, run, "--steps", steps, "--checkpoint-every", 7, "--resume", "auto", "--out", run)
        job.logged_before = job.steps_logged()
        name, anchor, spread = rng.choice(anchors)
        delay = rng.uniform(0, spread)
        try:
            job.wait_for(lambda: anchor(job), name)
        except AssertionError:  # the job ended before that moment: kill it as it ends
            pass
        time.sleep(delay)
        moments.append(f"{name}+{delay:.1f}s")
        os.kill(job.launcher.pid, signal.SIGKILL)
        job.launcher.wait()
        left, took = job.left_behind(timeout=15)
        slowest = max(slowest, took)
        assert not left, f"kill {kill} at {moments[-1]}: still alive after {took:.0f} s: {left}\n{job.output()}"
        assert "Traceback" not in job.output(), job.output()
        resumed = invoke("train", "dcgan", *SMOKE, "--set", "log_every=1", "--steps", steps, "--resume", "auto",
                         "--out", run)
        assert resumed.exit_code == 0, f"kill {kill} at {moments[-1]}:\n{resumed.output}"
        assert checkpoint_tensors(run)["state/step"] == steps
    logged = [int(line.split('"step": ')[1].split(",")[0]) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, steps + 1)), logged  # each step once, in order: never two writers
    print(f"20 kills at {', '.join(moments)}; the slowest job took {slowest:.1f} s to end")
