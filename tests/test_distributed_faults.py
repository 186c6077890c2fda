"""Faults of a several-process run, for real: a rank killed with SIGKILL, two machines meeting at a rendezvous.

Real torchrun launchers, real gloo processes on 127.0.0.1, real signals. The
killed run restarts by itself (torchrun --max-restarts 1), continues from its
last checkpoint (--resume auto) and ends with the weights of a run nothing
interrupted, bit for bit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import SMOKE, checkpoint_tensors, children_of, ganzoo, ganzoo_traceback
from test_distributed import EQUIVALENCE, assert_same_training

FAST = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    """The children import this checkout's ganzoo and plugins, on one thread each."""
    path = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, **FAST, "PYTHONPATH": path}


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


def _wait_for(condition, timeout: float, what: str, process: subprocess.Popen):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            raise AssertionError(f"the job ended (status {process.returncode}) before {what}")
        time.sleep(0.05)
    raise AssertionError(f"no {what} after {timeout} s")


def _steps_saved(run: Path) -> list[int]:
    folder = run / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in folder.iterdir() if p.name.startswith("step-"))


def test_sigkill_of_one_rank_restarts_the_job_which_ends_as_if_never_killed(tmp_path):
    """torchrun --max-restarts 1, 2 ranks, --resume auto: rank 1 killed after the first checkpoint; the restarted
    ranks resume from the newest checkpoint and the final weights equal an uninterrupted run's, bitwise."""
    run, whole = tmp_path / "run", tmp_path / "whole"
    steps, every = 200, 10  # ~40 steps/s here: the kill lands long before the end
    train = ["train", "dcgan", *SMOKE, "--steps", str(steps), "--checkpoint-every", str(every), "--set",
             "log_every=1"]
    job = subprocess.Popen(_torchrun("--nnodes", "1", "--nproc-per-node", "2", "--max-restarts", "1",
                                     "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
                                     "--monitor-interval", "0.1",
                                     "-m", "ganzoo", *train, "--resume", "auto", "--out", str(run)),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=tmp_path)
    try:
        _wait_for(lambda: _steps_saved(run), 180, "first checkpoint", job)
        rank_1 = _wait_for(lambda: {_rank_of(p): p for p in children_of(job.pid)}.get(1), 10, "rank 1", job)
        killed_at = _steps_saved(run)[-1]
        os.kill(rank_1, signal.SIGKILL)
        output = job.communicate(timeout=300)[0]
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode == 0, output
    assert killed_at < steps, "the run ended before the kill: it tested nothing"
    plans = [line for line in output.splitlines() if line.startswith("plan: steps")]
    assert len(plans) == 2, output  # rank 0's plan, once per start
    resumed = int(plans[1].split()[2])
    assert killed_at <= resumed < steps, plans
    assert steps in _steps_saved(run)
    _ok = ganzoo(*train, "--nproc-per-node", "2", "--out", whole, env=_env(), timeout=300)
    assert _ok.returncode == 0, _ok.stdout + _ok.stderr
    a, b = checkpoint_tensors(run), checkpoint_tensors(whole)
    assert a.keys() == b.keys()
    different = [k for k in a if torch.is_tensor(a[k]) and not torch.equal(a[k], b[k])]
    assert not different, different


@pytest.mark.parametrize("arch, args, atol", EQUIVALENCE)
def test_two_machines_meeting_at_a_rendezvous_train_like_one_process(tmp_path, arch, args, atol):
    """Two torchrun launchers (--nnodes 2, one process each, c10d rendezvous on 127.0.0.1) as two machines would
    run them: the job trains, one launcher's rank writes and the other's says nothing, and the weights equal one
    process's at the same global batch.

    The c10d rendezvous (the form docs/distributed.md shows) assigns global ranks in the order the nodes join,
    not by --node-rank, so "node 0" is whichever launcher got rank 0: exactly one of them prints.
    """
    common = [*SMOKE, "--steps", "4", *args]
    port = _free_port()
    nodes = [subprocess.Popen(_torchrun("--nnodes", "2", "--node-rank", str(node), "--nproc-per-node", "1",
                                        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                                        "--rdzv-id", f"two-nodes-{port}",
                                        "-m", "ganzoo", "train", arch, *common, "--out", str(tmp_path / "two")),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                              cwd=tmp_path)
             for node in (0, 1)]
    try:
        outputs = [node.communicate(timeout=300)[0] for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.wait()
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output
        assert not ganzoo_traceback(output), output  # torchrun's agents may log one of their own when leaving
    writers = [output.count("run directory:") for output in outputs]
    assert sorted(writers) == [0, 2], outputs  # rank 0's plan and result, on one node only
    one = ganzoo("train", arch, *common, "--out", tmp_path / "one", env=_env(), timeout=300)
    assert one.returncode == 0, one.stdout + one.stderr
    assert_same_training(arch, tmp_path / "one", tmp_path / "two", atol)
