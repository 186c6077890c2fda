"""Where a run's numbers go: metrics.jsonl, TensorBoard when installed, a progress bar."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from ..errors import UserError
from ..fileio import NotRegularFile, atomic_write, open_regular, read_regular


def read_records(path: Path) -> tuple[list[dict], int]:
    """The records of a metrics.jsonl and how many lines were damaged (a power cut leaves half a line).

    Only a regular file is read: a FIFO or a folder in its place is one UserError saying what it is.
    """
    records, damaged = [], 0
    for line in _read(path).decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            record = None
        if isinstance(record, dict) and isinstance(record.get("step", 0), int):
            records.append(record)
        else:
            damaged += 1
    return records, damaged


def _read(path: Path) -> bytes:
    try:
        return read_regular(path)
    except NotRegularFile as exc:
        raise UserError(f"cannot read {exc}") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def drop_records_after(run_dir: Path, step: int) -> int:
    """On resume, forget lines logged after the checkpoint so each step appears once; damaged lines go too.

    Returns how many damaged lines were dropped.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return 0
    records, damaged = read_records(path)
    kept = [json.dumps(r) + "\n" for r in records if r.get("step", 0) <= step]
    atomic_write(path, lambda f: f.write("".join(kept)), mode="w")
    return damaged


def finite_or_none(value):
    """NaN and infinities are not JSON: they are written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


class MetricsLog:
    """Appends one JSON object per logged step to metrics.jsonl (and TensorBoard).

    Every line is strict JSON: non-finite values become null.
    """

    def __init__(self, run_dir: Path):
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(run_dir) / "metrics.jsonl"
        try:
            self.file = open_regular(self.path, append=True)
        except NotRegularFile as exc:
            raise UserError(f"cannot write {exc}") from None
        if self.file.tell() > 0:  # a line cut short by a crash must not swallow the next record
            self.file.seek(-1, 2)
            if self.file.read(1) != b"\n":
                self.file.write(b"\n")
        self.tensorboard = _tensorboard_writer(run_dir)

    def write(self, record: dict) -> None:
        record = {key: finite_or_none(value) for key, value in record.items()}
        self.file.write((json.dumps(record, allow_nan=False) + "\n").encode())
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
    """A tqdm bar on a terminal; plain lines otherwise (logs, CI, nohup).

    Plain lines come after the first step (so a log shows within seconds that
    the run is alive), then every tenth of the run or every ``every_s``
    seconds, whichever is sooner. Both print one estimate of the remaining time
    at the first log point, measured from the end of the first step (so
    compilation and warm-up do not count).
    """

    def __init__(self, total: int, start: int, every_s: float = 60.0):
        self.total, self.step, self.first = total, start, start
        self.interactive = sys.stderr.isatty()
        self.every = max(1, (total - start) // 10)
        self.every_s = every_s
        self.started = self.last_line = time.time()
        self.warm: tuple[int, float] | None = None  # (step, time) once the first step is done
        self.estimated = False
        self.scalars: dict[str, float] = {}
        self.bar = None
        if self.interactive:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)

    def update(self, step: int, scalars: dict[str, float] | None = None) -> None:
        now = time.time()
        done, self.step = step - self.step, step
        self.scalars = scalars or self.scalars
        first = self.warm is None
        if first:
            self.warm = (step, now)
        if scalars is not None and not self.estimated and not first and step < self.total:
            self.estimated = True
            self.note(f"estimate: {self.total - step} more steps at {self._rate(step, now):.3g} step/s, "
                        f"about {duration(self._left(step, now))} (started {duration(now - self.started)} ago)")
        if self.bar is not None:
            self.bar.update(done)
            if scalars:
                self.bar.set_postfix(dict(_shown(scalars)), refresh=False)
        elif first or step == self.total or step % self.every == 0 or now - self.last_line >= self.every_s:
            self.last_line = now
            text = " ".join(f"{k}={v}" if k != DATA_WAIT_SHOWN else f"{k} {v}" for k, v in _shown(self.scalars))
            if first:
                pace = f"first step took {now - self.started:.1f}s"
            else:
                pace = f"{self._rate(step, now):.3g} step/s, {duration(self._left(step, now))} left"
            print(f"step {step}/{self.total} ({pace}) {text}".rstrip(), file=sys.stderr, flush=True)

    def _rate(self, step: int, now: float) -> float:
        warm_step, warm_time = self.warm
        return (step - warm_step) / max(now - warm_time, 1e-9)

    def _left(self, step: int, now: float) -> float:
        return (self.total - step) / max(self._rate(step, now), 1e-9)

    def note(self, text: str) -> None:
        """A line between progress updates (an estimate, an evaluation), above the bar on a terminal."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def rewind(self, step: int) -> None:
        """Back to ``step`` (a rollback to an earlier checkpoint): the next update counts from there, and the
        pace is measured afresh from now (steps before the rollback would make it negative)."""
        self.step = step
        if self.warm is not None:
            self.warm = (step, time.time())
        if self.bar is not None:
            self.bar.n = step
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


DATA_WAIT = "data_wait"  # the share of the wall time the steps waited for data (a record's key)
DATA_WAIT_SHOWN = "data"  # its name in the progress line: "data 2%"


def _shown(scalars: dict) -> list[tuple[str, str]]:
    """The progress line's values: each loss to 3 digits, then the data wait as a percentage."""
    out = [(k, f"{v:.3g}") for k, v in scalars.items() if v is not None and k != DATA_WAIT]
    if scalars.get(DATA_WAIT) is not None:
        percent = scalars[DATA_WAIT] * 100
        out.append((DATA_WAIT_SHOWN, f"{percent:.1f}%" if percent < 10 else f"{percent:.0f}%"))
    return out


def duration(seconds: float) -> str:
    """A length as people say it, for progress lines and estimates: 45 s, 3 min 10 s, 1 h 20 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
