"""Training with several processes (torchrun, gloo on the CPU, 127.0.0.1): same answer as one process.

Real processes only: `ganzoo train --nproc-per-node 2` and plain torchrun. Two
processes at global batch B must compute what one process computes at B, hold
identical weights on every rank after every step (GANZOO_CHECK_RANKS=1 makes
each rank compare its weights with the others' after each step and fail
loudly), resume exactly, and stop together on a signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganzoo import run_lock
from helpers import SMOKE, checkpoint_tensors, ganzoo

FAST = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
ROOT = Path(__file__).resolve().parents[1]


def _train(*args, nproc: int | None = None, env: dict | None = None, **kwargs):
    extra = ["--nproc-per-node", str(nproc)] if nproc else []
    result = ganzoo("train", *args, *extra, env={**FAST, **(env or {})}, timeout=300, **kwargs)
    return result


def _ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def _networks(run_dir: Path) -> dict:
    return {k: v for k, v in checkpoint_tensors(run_dir).items() if k.startswith("net/")}


def test_launcher_trains_with_two_processes_and_rank_0_alone_writes(tmp_path):
    run = tmp_path / "run"
    result = _ok(_train("dcgan", *SMOKE, "--steps", "4", "--set", "log_every=1", "--out", run, nproc=2))
    assert result.stdout.count("run directory:") == 2  # rank 0's plan and result; rank 1 says nothing
    assert (run / "config.json").is_file()
    steps = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss/D"' in line]
    assert len(steps) == 4, steps  # one writer: no record twice
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-")] == ["step-0000004"]
    leftovers = [p for p in run.rglob("*") if p.name.startswith(".") and p != run / run_lock.LOCK]
    assert not leftovers, leftovers  # the run's lock file stays (it is never removed while others may open it)


@pytest.mark.parametrize("args, words", [
    (["--batch-size", "7"], ["batch_size 7", "2 processes", "6 or 8"]),
    (["--set", "nope=1"], ["nope"]),
])
def test_launcher_refuses_once_before_starting_processes(tmp_path, args, words):
    run = tmp_path / "run"
    result = _train("dcgan", *SMOKE, "--steps", "2", "--out", run, *args, nproc=2)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.count("Error:") == 1, result.stderr
    assert "Traceback" not in result.stderr and "torch.distributed" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr
    assert not run.exists()


def test_unknown_architecture_is_refused_by_the_launcher(tmp_path):
    result = _train("nosuch", "--device", "cpu", "--out", tmp_path / "run", nproc=2)
    assert result.returncode != 0 and result.stderr.count("Error:") == 1, result.stderr
    assert "nosuch" in result.stderr and "Traceback" not in result.stderr


# Each built-in architecture at a global batch two ranks split evenly; DCGAN with its batch norm synchronised.
# Tolerances are absolute, on every weight, buffer and EMA weight (measured worst: DCGAN ~2e-8, StyleGAN-lite
# ~1e-6). CycleGAN's are wider for a reason of arithmetic, not of computation: Adam divides each gradient by its
# running RMS, so a gradient that is rounding noise around zero (every weight of a layer whose output an
# affine-free InstanceNorm re-centres has a near-zero component) still moves by about lr per step, in the
# direction the rounding happens to take. Its weights then agree to 1e-4 (half an Adam step at lr 2e-4; measured
# 3e-5), the biases in front of an InstanceNorm (which no output can see) are left out, and the generators'
# outputs on a fixed input agree to 2e-3 (a quarter of a grey level; measured 7e-4).
EQUIVALENCE = [
    pytest.param("dcgan", ["--batch-size", "8", "--set", "sync_batchnorm=true"], 1e-5, id="dcgan"),
    pytest.param("cyclegan", ["--batch-size", "2"], 1e-4, id="cyclegan"),
    pytest.param("stylegan-lite", ["--batch-size", "8"], 1e-5, id="stylegan-lite"),
    # Conditional: each rank's real labels are its slice of the global batch's, and the labels drawn for
    # generated samples (LossContext.labels) are the global batch's rows.
    pytest.param("dcgan", ["--batch-size", "8", "--set", "sync_batchnorm=true", "--cond"], 1e-5, id="dcgan-cond"),
    pytest.param("stylegan-lite", ["--batch-size", "8", "--cond"], 1e-5, id="stylegan-lite-cond"),
]


def _inert_biases(run_dir: Path) -> set[str]:
    """Checkpoint keys of biases an affine-free InstanceNorm follows: no output depends on them."""
    from ganzoo import rundir

    run = rundir.open_run(run_dir)
    keys = set()
    for role, net in run.arch.build(run.resolved.config).items():
        for name, module in net.named_modules():
            children = list(module.named_children())
            for (child, layer), (_, after) in zip(children, children[1:]):
                if (isinstance(after, torch.nn.InstanceNorm2d) and not after.affine
                        and getattr(layer, "bias", None) is not None):
                    path = f"{name}.{child}" if name else child
                    keys |= {f"net/{role}/{path}.bias", f"net/{role}_ema/{path}.bias"}
    return keys


def _outputs(run_dir: Path) -> dict:
    """Every network of the run's checkpoint (EMA generators) on one fixed input of its data's shape."""
    from ganzoo import rundir

    run = rundir.open_run(run_dir)
    nets, _ = rundir.load_sampling_nets(run, torch.device("cpu"))
    spec = run.arch.data_spec(run.resolved.config)
    x = torch.rand(4, spec.channels, spec.resolution, spec.resolution, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return {role: net(x * 2 - 1) for role, net in nets.items()}


@pytest.mark.parametrize("arch, args, atol", EQUIVALENCE)
def test_two_processes_equal_one(tmp_path, arch, args, atol):
    """2 ranks at global batch B vs 1 process at B, after 6 steps; every rank checks after every step that all
    ranks hold identical weights (GANZOO_CHECK_RANKS=1)."""
    common = [*SMOKE, "--steps", "6", *args]
    _ok(_train(arch, *common, "--out", tmp_path / "one"))
    _ok(_train(arch, *common, "--out", tmp_path / "two", nproc=2, env={"GANZOO_CHECK_RANKS": "1"}))
    assert_same_training(arch, tmp_path / "one", tmp_path / "two", atol)


def test_two_processes_equal_one_on_prepared_unpaired_folders(tmp_path):
    """The same with data read from its prepared copy, ahead of the step, by each rank: CycleGAN's crops,
    flips and random B images on a folder of two domains (prepared once, by the launcher)."""
    from helpers import image_folder

    data = tmp_path / "data"
    image_folder(data / "trainA", n=6, size=40)
    image_folder(data / "trainB", n=5, size=40, seed=1)
    common = [*SMOKE, "--steps", "4", "--batch-size", "2", "--data", data]
    env = {"GANZOO_PREPARED": str(tmp_path / "prepared")}
    _ok(_train("cyclegan", *common, "--out", tmp_path / "one", env=env))
    _ok(_train("cyclegan", *common, "--out", tmp_path / "two", nproc=2, env={**env, "GANZOO_CHECK_RANKS": "1"}))
    assert_same_training("cyclegan", tmp_path / "one", tmp_path / "two", 1e-4)


# Adam divides each gradient by its own running size, so an element whose gradient sums to almost nothing
# (terms that cancel) moves by a sizeable fraction of lr with a sign the order of summation decides: two
# processes sum a batch in another order than one. Seen in dcgan-cond: after one step, 1 element of 60,160
# off by 2.2e-5 (all others within 1e-9); after six, 89 off by up to 4.7e-5. Such strays are allowed, few
# (STRAY_SHARE of a tensor) and within STRAY_ATOL; a wrong batch or label changes the updates of most
# elements, not of a few.
STRAY_SHARE = 0.005
STRAY_ATOL = 1e-4  # half of DCGAN's lr of 2e-4


def assert_same_training(arch: str, one_dir: Path, two_dir: Path, atol: float) -> None:
    """The two runs' checkpoints hold the same weights, buffers and EMA weights (to ``atol``, but for a few
    strays; see EQUIVALENCE and STRAY_SHARE)."""
    one, two = _networks(one_dir), _networks(two_dir)
    assert one.keys() == two.keys()
    inert = _inert_biases(one_dir) & one.keys() if arch == "cyclegan" else set()
    assert all(key.endswith(".bias") for key in inert)  # every weight matrix is compared
    for key in one.keys() - inert:
        a, b = two[key].double(), one[key].double()
        torch.testing.assert_close(a, b, atol=max(atol, STRAY_ATOL), rtol=0, msg=key)
        strays = int(((a - b).abs() > atol).sum())
        assert strays <= STRAY_SHARE * a.numel(), f"{key}: {strays} of {a.numel()} elements differ by more than {atol}"
    if arch == "cyclegan":
        outputs_one, outputs_two = _outputs(one_dir), _outputs(two_dir)
        for role in outputs_one:
            torch.testing.assert_close(outputs_two[role], outputs_one[role], atol=2e-3, rtol=0, msg=role)


def test_sync_batchnorm_keeps_batchnorm_names_and_is_plain_batchnorm_in_one_process():
    """GlobalBatchNorm in one process (no process group) is BatchNorm, bit for bit, with the same state dict."""
    from ganzoo.train.sync_batchnorm import GlobalBatchNorm, convert_sync_batchnorm

    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    synced = convert_sync_batchnorm(__import__("copy").deepcopy(plain))
    assert isinstance(synced[1], GlobalBatchNorm)
    assert list(synced.state_dict()) == list(plain.state_dict())
    x = torch.randn(5, 3, 8, 8)
    assert torch.equal(synced(x), plain(x))
    assert all(torch.equal(a, b) for a, b in zip(synced.state_dict().values(), plain.state_dict().values()))


def test_rank_check_fails_loudly_when_weights_differ(tmp_path):
    """The GANZOO_CHECK_RANKS check itself: two real gloo processes, rank 1 perturbs one weight."""
    script = tmp_path / "differ.py"
    script.write_text(
        "import torch, torch.nn as nn\n"
        "from ganzoo.train.distributed import World, weights_differ\n"
        "world = World.from_env()\n"
        "torch.manual_seed(0)\n"
        "net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))\n"
        "assert weights_differ(world, {'G': net}) == []\n"
        "if world.rank == 1:\n"
        "    with torch.no_grad(): net[1].bias[0] += 1e-7\n"
        "print('rank', world.rank, weights_differ(world, {'G': net}))\n"
        "world.close()\n")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             str(script)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **FAST})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("['G.1.bias']") == 2, result.stdout


def test_resume_is_exact_with_two_processes(tmp_path):
    """N+M steps in one go vs N, stop, resume for M (2 processes each time): bitwise identical checkpoints."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    _ok(_train("dcgan", *SMOKE, "--steps", "6", "--out", whole, nproc=2))
    _ok(_train("dcgan", *SMOKE, "--steps", "3", "--out", split, nproc=2))
    _ok(_train("dcgan", "--resume", split, "--steps", "6", nproc=2))
    a, b = checkpoint_tensors(whole), checkpoint_tensors(split)
    assert a.keys() == b.keys()
    different = [k for k in a if torch.is_tensor(a[k]) and not torch.equal(a[k], b[k])]
    assert not different, different
    assert any(k.startswith("state/rng/ranks/1") for k in a), sorted(a)[:20]  # each rank's RNG is kept


def test_plain_torchrun_with_resume_auto(tmp_path):
    """`torchrun -m ganzoo train ... --out X --resume auto`: rank 0 decides that X is new, once, for every rank."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "ganzoo",
               "train", "dcgan", *SMOKE, "--steps", "2", "--out", str(run), "--resume", "auto"]
    env = {**os.environ, **FAST, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"),
                                                                 os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (run / "checkpoints" / "step-0000002").is_dir()
    assert "already holds a run" not in result.stderr


def test_sigterm_to_the_launcher_stops_every_rank_at_one_step_and_resumes_exactly(tmp_path):
    run, whole = tmp_path / "run", tmp_path / "whole"
    exe = Path(sys.executable).with_name("ganzoo")
    launcher = subprocess.Popen([str(exe), "train", "dcgan", *SMOKE, "--steps", "100000", "--out", str(run),
                                 "--nproc-per-node", "2", "--checkpoint-every", "100000"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **FAST})
    deadline = time.time() + 120
    lines = []
    for line in launcher.stdout:  # wait until training runs
        lines.append(line)
        if line.startswith("step 1/") or time.time() > deadline:
            break
    time.sleep(0.3)
    launcher.send_signal(signal.SIGTERM)
    output = "".join(lines) + launcher.stdout.read()
    assert launcher.wait(timeout=120) == 143, output
    assert "Traceback" not in output, output
    saved = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-")]
    assert len(saved) == 1, saved  # one checkpoint, by rank 0
    step = int(saved[0].split("-")[1])
    assert f"(step {step})" in output
    _ok(_train("dcgan", "--resume", run, "--steps", str(step + 2), nproc=2))
    _ok(_train("dcgan", *SMOKE, "--steps", str(step + 2), "--out", whole, nproc=2))
    a, b = _networks(run), _networks(whole)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
