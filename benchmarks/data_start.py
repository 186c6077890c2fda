"""Time to the first training step of a new run and of a resumed run on a folder of JPEGs.

    python benchmarks/data_start.py --work /tmp/start [--count 20000] [--code PATH]

Makes a folder of ``--count`` synthetic 256x256 JPEGs (once), trains one step of DCGAN's smoke config at 64 px
on it (a checkpoint at step 1), then resumes it for one more step, and reports for each the seconds from
starting the process to the first step's record in metrics.jsonl. ``--code`` runs another checkout's ganzoo
(put first on PYTHONPATH) to compare versions on the same machine and data. The second and later runs of a
version that prepares its data find the prepared copy; the first run includes preparing it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def make_folder(folder: Path, count: int) -> None:
    import numpy as np
    from PIL import Image

    if folder.is_dir() and sum(1 for _ in folder.iterdir()) == count:
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((256, 256), Image.Resampling.BICUBIC)
        image.save(folder / f"{i:06d}.jpg", quality=90)


def first_step_seconds(command: list[str], run: Path, step: int, env: dict) -> float:
    """Seconds from starting ``command`` until metrics.jsonl holds ``step``'s record (or the command ends)."""
    metrics = run / "metrics.jsonl"
    began = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = None
    while process.poll() is None and seen is None:
        if metrics.is_file() and f'"step": {step},' in metrics.read_text():
            seen = time.perf_counter() - began
        time.sleep(0.02)
    _, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{err[-2000:]}")
    return seen if seen is not None else time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--code", type=Path, help="a ganzoo checkout to run instead of the installed one")
    args = parser.parse_args()
    folder = args.work / f"jpegs-{args.count}"
    began = time.perf_counter()
    make_folder(folder, args.count)
    print(f"{folder}: {args.count} JPEGs ready ({time.perf_counter() - began:.0f} s)", flush=True)
    env = dict(os.environ, GANZOO_PREPARED=str(args.work / "prepared"))
    if args.code:
        code = args.code.resolve()
        env["PYTHONPATH"] = os.pathsep.join([str(code), str(code / "plugins"), env.get("PYTHONPATH", "")])
    run = args.work / "run"
    shutil.rmtree(run, ignore_errors=True)
    base = [sys.executable, "-m", "ganzoo", "train", "dcgan", "--preset", "smoke", "--device", "cpu",
            "--set", "resolution=64", "--set", "channels=3", "--set", "log_every=1", "--sample-every", "1000",
            "--checkpoint-every", "1"]
    new = first_step_seconds([*base, "--data", str(folder), "--steps", "1", "--out", str(run)], run, 1, env)
    resumed = first_step_seconds([*base, "--resume", str(run), "--steps", "2"], run, 2, env)
    again = first_step_seconds([*base, "--resume", str(run), "--steps", "3"], run, 3, env)
    print(f"code: {args.code or 'installed'}; {args.count} JPEGs (256x256) trained at 64 px")
    print(f"first run, to its first step:          {new:.1f} s")
    print(f"resumed run, to its first step:        {resumed:.1f} s")
    print(f"resumed again, to its first step:      {again:.1f} s")


if __name__ == "__main__":
    main()
