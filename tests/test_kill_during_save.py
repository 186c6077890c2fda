"""SIGKILL at random moments while a real `ganzoo train` writes a checkpoint every step.

The same run is resumed with `--resume auto` and killed again, 20 times, at
seeded random delays: half anywhere in a step once it is stepping, half aimed
at a save (within 20 ms of its temporary folder appearing). After every kill the newest
complete checkpoint loads, `ganzoo info` lists only complete checkpoints and
never a temporary folder, and the next start removes what the kill left
(`.step-N.tmp-PID`, `.step-N.del-PID`, `.step-N.old-PID`) and continues from the
newest checkpoint.
"""

import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ganzoo.train import checkpoint as ckpt
from helpers import SMOKE, ganzoo, invoke

TRIALS = 20
KEEP = 2
SEED = 13


def start(args: list) -> tuple[subprocess.Popen, str]:
    """A training subprocess, once it has printed that it is about to step (its output so far)."""
    exe = Path(sys.executable).with_name("ganzoo")
    proc = subprocess.Popen([str(exe), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    output = []
    for line in proc.stdout:
        output.append(line)
        if line.startswith("run directory:"):
            return proc, "".join(output)
    proc.wait()
    pytest.fail(f"training stopped before stepping (exit {proc.returncode}):\n{''.join(output)}")


def wait_for_checkpoint(run: Path, after: int, proc: subprocess.Popen) -> None:
    """Until the process has written a checkpoint past step `after`: it is stepping and saving."""
    deadline = time.monotonic() + 60
    while ckpt.step_of(ckpt.latest_checkpoint(run)) <= after:
        assert proc.poll() is None and time.monotonic() < deadline, "training stopped or stalled before a checkpoint"
        time.sleep(0.005)


def wait_for_a_save(run: Path, proc: subprocess.Popen) -> None:
    """Until a checkpoint's temporary folder appears: a save has begun."""
    deadline = time.monotonic() + 60
    while not hidden(run):
        assert proc.poll() is None and time.monotonic() < deadline, "training stopped or stalled before a save"
        time.sleep(0.0005)


def hidden(run: Path) -> list[Path]:
    return sorted(p for p in (run / "checkpoints").iterdir() if p.name.startswith("."))


@pytest.mark.slow
def test_sigkill_during_checkpoint_writes_loses_nothing_and_leaves_nothing(tmp_path):
    run = tmp_path / "run"
    common = ["train", "dcgan", *SMOKE, "--checkpoint-every", 1, "--sample-every", 10**6, "--out", run,
              "--set", f"keep_checkpoints={KEEP}", "--set", "log_every=1000000"]
    first = ganzoo(*common, "--steps", 2, env={"OMP_NUM_THREADS": "1"})
    assert first.returncode == 0, first.stderr
    rng = random.Random(SEED)
    counts = Counter()
    left: list[Path] = []
    for trial in range(TRIALS):
        resumed_from = ckpt.step_of(ckpt.latest_checkpoint(run))
        proc, output = start([*common, "--resume", "auto", "--steps", 10**8])
        assert f"steps {resumed_from} -> " in output, output  # --resume auto continues from the newest
        assert not [p for p in left if p.exists()], output  # what the last kill left is gone at this start
        counts["cleaned"] += output.count("removed unfinished checkpoint folder")
        if trial % 2:  # anywhere in a step
            wait_for_checkpoint(run, resumed_from, proc)
            time.sleep(rng.uniform(0.0, 0.3))
        else:  # aimed at a save: within its first 20 ms
            wait_for_a_save(run, proc)
            time.sleep(rng.uniform(0.0, 0.02))
        proc.kill()
        proc.wait()
        proc.stdout.close()

        left = hidden(run)
        complete = ckpt.checkpoint_dirs(run)
        counts["stale"] += len(left)
        counts.update(f"stale {p.name.split('.')[2].split('-')[0]}" for p in left)  # tmp, del or old
        counts["during save"] += bool(left) or len(complete) > KEEP  # killed before the rename or the pruning ended
        counts["steps"] += ckpt.step_of(complete[-1]) - resumed_from
        assert ckpt.newest_intact(run) == (complete[-1], [])
        assert ckpt.load_networks(complete[-1]) and ckpt.load_trainer_state(complete[-1])["step"] == \
            ckpt.step_of(complete[-1])
        info = invoke("info", run)
        assert info.exit_code == 0, info.output
        assert f"checkpoints:  {', '.join(p.name for p in complete)}\n" in info.output and ".step-" not in info.output
        assert all((p / name).is_file() for p in complete for name in ckpt.FILES)

    last = ckpt.step_of(ckpt.latest_checkpoint(run))
    done = ganzoo(*common, "--resume", "auto", "--steps", last + 2, env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    counts["cleaned"] += done.stderr.count("removed unfinished checkpoint folder")
    assert hidden(run) == [] and [p.name for p in ckpt.checkpoint_dirs(run)] == [
        f"step-{last + 1:07d}", f"step-{last + 2:07d}"]
    print(f"\nkill during save: {TRIALS} trials, {counts['steps']} checkpointed steps, {counts['during save']} kills "
          f"during a save, {counts['stale']} stale folders left ({counts['stale tmp']} .tmp, {counts['stale del']} "
          f".del, {counts['stale old']} .old), {counts['cleaned']} cleaned at the next start")
    assert counts["cleaned"] == counts["stale"]
