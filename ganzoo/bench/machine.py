"""What a result was measured on: machine, device, library versions, commit; and known GPU peaks.

Model-FLOPs utilisation divides achieved FLOP/s by the device's dense peak for
the arithmetic in use. The table holds NVIDIA's datasheet figures (dense, no
sparsity) in TFLOP/s; ``--peak-tflops`` overrides it for any other device.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from pathlib import Path

import torch

from .. import __version__

# name fragment (matched in order against torch.cuda.get_device_name) -> peak TFLOP/s by arithmetic.
# "tf32" is what fp32 convolutions and matmuls run as on these GPUs (ganzoo enables TF32).
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H200", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    ("H100", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),  # SXM5 (HBM3)
    ("A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    ("L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0, "fp16": 362.0}),
    ("L4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    ("A10", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0}),
]


def arithmetic(device: torch.device, precision: str) -> str:
    """The arithmetic whose peak applies: fp32 runs as TF32 on CUDA (ganzoo turns TF32 on)."""
    if precision == "fp32":
        return "tf32" if device.type == "cuda" else "fp32"
    return precision


def peak_tflops(device_name: str, kind: str, override: float | None = None) -> float | None:
    """Dense peak of ``kind`` arithmetic for a device name, from the table or ``override``."""
    if override is not None:
        return override
    for fragment, peaks in PEAK_TFLOPS:
        if fragment in device_name:
            return peaks.get(kind)
    return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def slug(device: str) -> str:
    """A device name made a file name: "AMD EPYC (2 cores, 2 threads)" -> "amd-epyc"."""
    return re.sub(r"[^a-z0-9]+", "-", device.split(" (")[0].lower()).strip("-")[:60] or "device"


def git_commit() -> str | None:
    """The commit of the source tree ganzoo runs from, when it is a git checkout; "+dirty" when its
    tracked files differ from that commit (the figures then come from code no commit holds)."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0 or not head.stdout.strip():
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def describe(device: torch.device) -> dict:
    """The record every result carries."""
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    return {
        "device": device_name(device), "device_type": device.type, "host": cpu_model(),
        "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None, "onnxruntime": ort_version,
        "ganzoo": __version__, "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
