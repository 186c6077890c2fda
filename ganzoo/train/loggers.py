"""Where a run's numbers go: metrics.jsonl, TensorBoard when installed, a progress bar."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..fileio import atomic_write


def drop_records_after(run_dir: Path, step: int) -> None:
    """On resume, forget lines logged after the checkpoint so each step appears once."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    atomic_write(path, lambda f: f.write("".join(line + "\n" for line in kept)), mode="w")


class MetricsLog:
    """Appends one JSON object per logged step to metrics.jsonl (and TensorBoard)."""

    def __init__(self, run_dir: Path):
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(run_dir) / "metrics.jsonl"
        self.file = open(self.path, "a", buffering=1)
        self.tensorboard = _tensorboard_writer(run_dir)

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _tensorboard_writer(run_dir: Path):
    try:
        import tensorboard  # noqa: F401  (torch's writer needs the package)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))


class Progress:
    """A tqdm bar on a terminal; a plain line every tenth of the run otherwise (logs, CI)."""

    def __init__(self, total: int, start: int):
        self.total, self.step, self.first = total, start, start
        self.interactive = sys.stderr.isatty()
        self.every = max(1, (total - start) // 10)
        self.started = time.time()
        self.bar = None
        if self.interactive:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)

    def update(self, step: int, scalars: dict[str, float] | None = None) -> None:
        done, self.step = step - self.step, step
        if self.bar is not None:
            self.bar.update(done)
            if scalars:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in scalars.items()}, refresh=False)
        elif scalars is not None and (step % self.every == 0 or step == self.total):
            elapsed = time.time() - self.started
            rate = (step - self.first) / max(elapsed, 1e-9)
            text = " ".join(f"{k}={v:.3g}" for k, v in scalars.items())
            print(f"step {step}/{self.total} ({rate:.2f} step/s) {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
