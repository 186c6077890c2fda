"""Checkpoints without pickle: networks in safetensors, trainer state for weights_only loading.

A checkpoint is a folder `checkpoints/step-NNNNNNN/` holding `networks.safetensors`
(every network by role, EMA copies as `<role>_ema`) and `trainer.pt` (optimizers,
step, RNG states as tensors, data position) that loads with
`torch.load(weights_only=True)`. The folder is written under a temporary name
(`.step-N.tmp-PID`) and renamed into place, so a checkpoint either exists whole or
not at all; an old one is renamed to a hidden name (`.step-N.del-PID`) before it is
deleted, so a half-deleted checkpoint is never named `step-N`. Hidden folders a
killed process left behind are removed at the next start (`remove_stale`).

Readers pick the newest intact checkpoint (`newest_intact`) and say which newer
ones they skipped and why, so one damaged file never blocks a run.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import re
import shutil
import sys
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from ..errors import UserError

NETWORKS = "networks.safetensors"
TRAINER_STATE = "trainer.pt"
FILES = (NETWORKS, TRAINER_STATE)
_STEP_DIR = re.compile(r"^step-(\d+)$")
_SCRATCH_DIR = re.compile(r"^\.step-(\d+)\.(tmp|old|del)-(\d+)$")  # in flight, or left by a killed process
_MAX_HEADER = 100_000_000  # the safetensors library's own limit on a header's size
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


class DamagedCheckpoint(UserError):
    """A checkpoint file that cannot be used as it is: missing, truncated, garbage or of the wrong structure."""


# -- which checkpoints exist -------------------------------------------------------------------------


def step_of(checkpoint: Path) -> int:
    return int(Path(checkpoint).name.split("-")[1])


def _step_folders(run_dir: Path) -> list[Path]:
    """Every `step-N` folder, complete or not, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run (both files present), oldest first."""
    return [p for p in _step_folders(run_dir) if _complete(p)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def newest_intact(run_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint that reads, and the newer ones skipped with why: (path, [(damaged, reason)]).

    Reads headers and the trainer state's structure, not the tensors. (None, [])
    when the run has no checkpoint; a UserError naming each one when none is intact.
    """
    damaged = []
    for folder in reversed(_step_folders(run_dir)):
        reason = problem(folder)
        if reason is None:
            return folder, damaged
        damaged.append((folder, reason))
    if damaged:
        raise UserError(f"no intact checkpoint in {Path(run_dir) / 'checkpoints'}: "
                        + "; ".join(reason for _, reason in damaged))
    return None, []


def fallback_warnings(chosen: Path, damaged: list[tuple[Path, str]]) -> list[str]:
    """One line per skipped checkpoint, naming it, why, and the one used instead (for stderr)."""
    return [f"warning: skipping damaged checkpoint {folder.name} ({reason}); using {chosen}"
            for folder, reason in damaged]


def problem(folder: Path) -> str | None:
    """Why a checkpoint folder cannot be used (naming the file), or None when it is intact."""
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        return f"{folder}: {' and '.join(missing)} missing" + (" (empty folder)" if len(missing) == len(FILES) else "")
    try:
        read_header(folder / NETWORKS)
        load_trainer_state(folder, mmap=True)
    except DamagedCheckpoint as exc:
        return str(exc)
    return None


# -- writing ------------------------------------------------------------------------------------------


def flatten_networks(nets: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """{'G': module} -> {'G/main.0.weight': tensor}; contiguous CPU copies for safetensors."""
    return {f"{role}/{key}": value.detach().contiguous().cpu()
            for role, module in nets.items() for key, value in module.state_dict().items()}


def unflatten_networks(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        role, _, key = name.partition("/")
        out.setdefault(role, {})[key] = value
    return out


def save_checkpoint(run_dir: Path, step: int, nets: dict[str, torch.nn.Module], state: dict,
                    metadata: dict[str, str] | None = None, keep: int = 2) -> Path:
    """Write networks and trainer state for `step` atomically; keep the newest `keep`.

    A write that fails (a full disk, a read-only folder) removes its temporary
    folder and raises one UserError naming the path; earlier checkpoints are untouched.
    """
    root = Path(run_dir) / "checkpoints"
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.tmp-{os.getpid()}"
    writers: dict[str, Callable] = {
        NETWORKS: lambda f: f.write(safetensors_bytes(flatten_networks(nets), metadata=metadata or {})),
        TRAINER_STATE: lambda f: f.write(_torch_bytes(state)),
    }
    target = root
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove(tmp)
        tmp.mkdir()
        for name, write in writers.items():
            target = final / name
            _write_synced(tmp / name, write)
        target = final
        if final.exists():  # the same step saved again: move the old one aside, never delete it first
            old = root / f".step-{step:07d}.old-{os.getpid()}"
            _remove(old)
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
        _fsync(root)
    except OSError as exc:
        _remove(tmp)
        kept = [p for p in checkpoint_dirs(run_dir) if step_of(p) < step]
        previous = f"the previous checkpoint {kept[-1]} is kept" if kept else "no earlier checkpoint exists"
        raise UserError(f"cannot write checkpoint {target}: {exc.strerror or exc}; {previous}") from None
    older = [p for p in checkpoint_dirs(run_dir) if step_of(p) < step]  # never the one just written
    for old in older[:max(len(older) - (keep - 1), 0)]:
        _discard(old)
    return final


def _torch_bytes(state: dict) -> memoryview:
    """torch.save into memory: written to the file by Python, a failed write (ENOSPC) stays a plain OSError."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer()


def _write_synced(path: Path, write: Callable) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _fsync(folder: Path) -> None:
    """Make a rename inside `folder` durable (a power loss keeps the new name)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _discard(folder: Path) -> None:
    """Delete a checkpoint folder under a hidden name, so a kill midway never leaves a half `step-N`."""
    hidden = folder.with_name(f".{folder.name}.del-{os.getpid()}")
    _remove(hidden)
    try:
        os.replace(folder, hidden)
    except OSError:
        return
    _remove(hidden)


def remove_stale(run_dir: Path) -> list[Path]:
    """At a run's start: remove what killed processes left in checkpoints/; returns what was cleaned.

    Hidden temporary, set-aside and half-deleted folders whose process is gone
    (or that carry this process's id: nothing of ours is in flight yet) are
    removed, except that a set-aside checkpoint whose replacement never arrived
    is renamed back. A live process's folders are left alone. `step-N` folders
    missing a file (half deleted by older versions) older than the newest
    complete checkpoint are removed too.
    """
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    cleaned = []
    for path in sorted(root.iterdir()):
        m = _SCRATCH_DIR.match(path.name)
        if not m or not path.is_dir() or _alive(int(m.group(3))):
            continue
        final = root / f"step-{m.group(1)}"
        if m.group(2) == "old" and not final.exists() and _complete(path):
            os.replace(path, final)
        else:
            _remove(path)
        cleaned.append(path)
    newest = latest_checkpoint(run_dir)
    for folder in _step_folders(run_dir):
        if newest is not None and step_of(folder) < step_of(newest) and not _complete(folder):
            _discard(folder)
            cleaned.append(folder)
    return cleaned


def clean_up(run_dir: Path) -> None:
    """remove_stale, each folder named on stderr."""
    report(f"removed unfinished checkpoint folder {path}" for path in remove_stale(run_dir))


def report(lines) -> None:
    """Warnings for the user, on stderr (the CLI's own output stays on stdout)."""
    for line in lines:
        print(line, file=sys.stderr, flush=True)


def _alive(pid: int) -> bool:
    """Whether another process with this id runs (our own id counts as gone: called before we save)."""
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except (OverflowError, OSError):
        return False
    return True


# -- reading ------------------------------------------------------------------------------------------


def read_header(path: Path) -> dict[str, dict]:
    """A safetensors file's tensor table {name: {dtype, shape, data_offsets}}, checked against the file's size.

    The declared header length is compared with the file's size before
    anything is read, so a damaged length never asks for more memory than the file holds.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise DamagedCheckpoint(f"{path}: {size} bytes, too short for a safetensors file")
            length = int.from_bytes(head, "little")
            if length > size - 8 or length > _MAX_HEADER:
                raise DamagedCheckpoint(f"{path}: declares a {length}-byte header in a {size}-byte file "
                                        "(truncated or not a safetensors file)")
            raw = f.read(length)
    except OSError as exc:
        raise DamagedCheckpoint(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedCheckpoint(f"{path}: the safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise DamagedCheckpoint(f"{path}: the safetensors header is a {type(header).__name__}, not a table")
    header.pop("__metadata__", None)
    end = 0
    for name, entry in header.items():
        end = max(end, _tensor_end(path, name, entry))
    if 8 + length + end != size:
        raise DamagedCheckpoint(f"{path}: {size} bytes, but its header describes {8 + length + end} "
                                "(truncated or extended)")
    return header


def _tensor_end(path: Path, name: str, entry) -> int:
    """The end offset of one tensor's data, after checking its entry is well formed."""
    ok = isinstance(entry, dict) and isinstance(entry.get("shape"), list) \
        and all(isinstance(d, int) and d >= 0 for d in entry["shape"]) \
        and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2 \
        and all(isinstance(o, int) for o in entry["data_offsets"]) \
        and 0 <= entry["data_offsets"][0] <= entry["data_offsets"][1] and isinstance(entry.get("dtype"), str)
    if not ok:
        raise DamagedCheckpoint(f"{path}: malformed header entry for tensor {name!r}")
    start, end = entry["data_offsets"]
    itemsize = _DTYPE_BYTES.get(entry["dtype"])
    if itemsize is not None and end - start != itemsize * math.prod(entry["shape"]):
        raise DamagedCheckpoint(f"{path}: tensor {name!r} declares {end - start} bytes for "
                                f"{entry['dtype']} {_shape(entry['shape'])}")
    return end


def load_networks(checkpoint: Path) -> dict[str, dict[str, torch.Tensor]]:
    path = Path(checkpoint) / NETWORKS
    read_header(path)
    try:
        return unflatten_networks(load_file(path))
    except (OSError, SafetensorError) as exc:
        raise DamagedCheckpoint(f"{path}: cannot be read: {exc}") from None


def load_trainer_state(checkpoint: Path, mmap: bool = False) -> dict:
    """trainer.pt through torch.load(weights_only=True), its structure checked; `mmap` leaves tensors on disk."""
    path = Path(checkpoint) / TRAINER_STATE
    if path.is_file() and path.stat().st_size == 0:
        raise DamagedCheckpoint(f"{path}: empty file")
    try:
        with warnings.catch_warnings():  # e.g. torch's note on the pickle protocol of a foreign file
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        raise DamagedCheckpoint(f"{path}: {_refusal(exc)}") from None
    except OSError as exc:
        raise DamagedCheckpoint(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except Exception as exc:  # torch reports a damaged archive as RuntimeError, EOFError, ValueError...
        raise DamagedCheckpoint(f"{path}: not a readable PyTorch file ({type(exc).__name__}: {_first_line(exc)})") \
            from None
    check_trainer_state(state, path)
    return state


def _refusal(exc: Exception) -> str:
    """torch's weights-only refusal in one line, without its advice to load with weights_only=False."""
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed global|\.? Please|\n|$)", str(exc), re.S)
    detail = found.group(1).strip() if found else _first_line(exc)
    if "weights_only" in detail:
        detail = type(exc).__name__
    if detail.startswith("Unsupported global"):
        return f"refused unread: it holds a pickled object ({detail.split(':', 1)[1].strip()}), " \
               "and a checkpoint's trainer state holds only tensors and plain containers"
    return f"not a trainer state: the safe loader, which accepts only tensors and plain containers, stopped at " \
           f"{detail}"


def _first_line(exc: Exception) -> str:
    """The first sentence of an exception's message (torch's run on for a paragraph)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0].split(". ")[0] if lines else type(exc).__name__


# What trainer.pt holds: key -> type; "schedulers" and "plugin" are absent from older checkpoints.
_REQUIRED = {"step": int, "optimizers": dict, "scaler": dict, "rng": dict, "data": dict, "nonfinite": dict}
_OPTIONAL = {"schedulers": dict, "plugin": dict}
_KINDS = {int: "an integer", dict: "a dict", list: "a list"}


def check_trainer_state(state, path: Path) -> None:
    """The structure the trainer restores from, checked before any of it is used; names the key."""
    if not isinstance(state, dict):
        raise DamagedCheckpoint(f"{path}: holds a {type(state).__name__}, not the trainer's state")
    for key, kind in {**_REQUIRED, **_OPTIONAL}.items():
        if key not in state:
            if key in _REQUIRED:
                raise DamagedCheckpoint(f"{path}: key {key!r} is missing")
            continue
        _expect(state[key], kind, path, key)
    if state["step"] < 0:
        raise DamagedCheckpoint(f"{path}: 'step' is negative ({state['step']})")
    for name, opt in state["optimizers"].items():
        _expect(opt, dict, path, f"optimizers/{name}")
        _expect(opt.get("state"), dict, path, f"optimizers/{name}/state")
        _expect(opt.get("param_groups"), list, path, f"optimizers/{name}/param_groups")
    for name in ("loss", "torch", "cuda"):
        if name in state["rng"] or name != "cuda":
            _expect_bytes(state["rng"].get(name), path, f"rng/{name}")
    for name in ("epoch", "index"):
        _expect(state["data"].get(name), int, path, f"data/{name}")
    if "rng" in state["data"]:
        _expect_bytes(state["data"]["rng"], path, "data/rng")
    for name, count in state["nonfinite"].items():
        _expect(count, int, path, f"nonfinite/{name}")
    for name, value in state.get("schedulers", {}).items():
        _expect(value, dict, path, f"schedulers/{name}")


def _expect(value, kind: type, path: Path, key: str) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        found = "nothing" if value is None else type(value).__name__
        raise DamagedCheckpoint(f"{path}: {key!r} should be {_KINDS[kind]}, found {found}")


def _expect_bytes(value, path: Path, key: str) -> None:
    if not (torch.is_tensor(value) and value.dtype == torch.uint8):
        found = f"a {value.dtype} tensor" if torch.is_tensor(value) else type(value).__name__
        raise DamagedCheckpoint(f"{path}: {key!r} should be an RNG state (uint8 tensor), found {found}")


@contextmanager
def restoring(checkpoint: Path, key: str) -> Iterator[None]:
    """Apply one part of trainer.pt; a value that does not fit the run names the file and the key."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise UserError(f"{Path(checkpoint) / TRAINER_STATE}: {key!r} does not fit this run "
                        f"({type(exc).__name__}: {_first_line(exc)})") from None


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def load_into(nets: dict[str, torch.nn.Module], weights: dict[str, dict[str, torch.Tensor]], source: Path) -> None:
    """Load weights by role (`G`, `G_ema`); a missing role or tensor, or a shape mismatch, names it."""
    path = Path(source) / NETWORKS
    for role, module in nets.items():
        if role not in weights:
            raise UserError(f"{path}: no weights for network {role!r} (it has {', '.join(sorted(weights)) or 'none'})")
        given, expected = weights[role], module.state_dict()
        for key, tensor in expected.items():
            if key not in given:
                raise UserError(f"{path}: {role}/{key} is missing; the network built from config.json has it")
            if tuple(given[key].shape) != tuple(tensor.shape):
                raise UserError(f"{path}: {role}/{key}: checkpoint has {_shape(given[key].shape)}, "
                                f"the network built from config.json has {_shape(tensor.shape)}")
        extra = sorted(set(given) - set(expected))
        if extra:
            more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
            raise UserError(f"{path}: {role}/{extra[0]}{more} is not in the network built from config.json")
        module.load_state_dict(given)


def first_nonfinite(weights: dict[str, dict[str, torch.Tensor]]) -> str | None:
    """The name (`G_ema/main.0.weight`) of the first floating tensor holding NaN or inf, or None."""
    for role, tensors in weights.items():
        for key, value in tensors.items():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                return f"{role}/{key}"
    return None
