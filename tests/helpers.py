"""Small shared helpers for tests: CLI invocation, tiny datasets, checkpoint contents."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from ganzoo.cli import cli

# An architecture's smallest meaningful config (tiny networks that still exercise every layer type), on the CPU.
SMOKE = ["--preset", "smoke", "--device", "cpu"]


def invoke(*args: str):
    """Run the CLI in-process; returns click's Result (exit_code, output)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def ganzoo(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run the real `ganzoo` console script in a subprocess."""
    exe = Path(sys.executable).with_name("ganzoo")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kwargs)


def run_copy(run: Path, tmp_path: Path) -> Path:
    """A copy of a run directory (links kept, checkpoints/best included) for a test to change."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy, symlinks=True)
    return copy


def image_folder(root: Path, n: int = 20, size: int = 40, seed: int = 0) -> Path:
    """n random RGB PNGs (non-square sizes included) in nested folders."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size + (i % 3) * 4, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:03d}.png")
    return root


def checkpoint_tensors(run_dir: Path) -> dict:
    """Every tensor of the latest checkpoint: networks (safetensors) and trainer state, flattened."""
    import torch
    from safetensors.torch import load_file

    from ganzoo.train.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run_dir)
    out = {f"net/{k}": v for k, v in load_file(latest / "networks.safetensors").items()}
    state = torch.load(latest / "trainer.pt", weights_only=True)

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}/{i}", v)
        else:
            out[prefix] = value

    walk("state", state)
    return out


def ganzoo_traceback(output: str) -> bool:
    """A Python traceback with a frame in ganzoo's own code.

    torchrun's agents log their own tracebacks at times (a failed rank's report; a rendezvous store that the
    hosting agent closed while another agent was still leaving its exit barrier): those are torchrun's.
    """
    import re

    return bool(re.search(r'File "[^"]*[/\\]ganzoo[/\\]', output))



def processes_with(token: str) -> list[int]:
    """The live processes whose environment holds ``token`` (Linux /proc), zombies excluded.

    A test sets a fresh token in the environment of the process it starts; every process that one starts
    inherits it (torchrun hands its ranks a copy of its own environment), however deep and whoever has
    adopted it since: so this finds each of them by pid, without guessing at names.
    """
    needle = token.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found
