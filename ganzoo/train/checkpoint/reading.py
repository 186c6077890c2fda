"""Reading checkpoints without trusting them: bounded safetensors headers, weights-only trainer state
checked for structure, and loading that names the tensor or key that does not fit."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ...errors import UserError
from ...fileio import NotRegularFile, open_regular, regular_path
from .layout import FINITE, NETWORKS, NONFINITE, TRAINER_STATE, WEIGHTS_ONLY, DamagedCheckpoint

_MAX_HEADER = 100_000_000  # the safetensors library's own limit on a header's size
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def read_header(path: Path, metadata: bool = False) -> dict[str, dict]:
    """A safetensors file's tensor table {name: {dtype, shape, data_offsets}}, checked against the file's size.

    With ``metadata``, its ``__metadata__`` table (str -> str) instead, once the whole header checked out.

    The declared header length is compared with the file's size before
    anything is read, so a damaged length never asks for more memory than the file holds.
    """
    path = Path(path)
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise DamagedCheckpoint(f"{path}: {size} bytes, too short for a safetensors file")
            length = int.from_bytes(head, "little")
            if length > size - 8 or length > _MAX_HEADER:
                raise DamagedCheckpoint(f"{path}: declares a {length}-byte header in a {size}-byte file "
                                        "(truncated or not a safetensors file)")
            raw = f.read(length)
    except NotRegularFile as exc:
        raise DamagedCheckpoint(str(exc)) from None
    except OSError as exc:
        raise DamagedCheckpoint(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedCheckpoint(f"{path}: the safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise DamagedCheckpoint(f"{path}: the safetensors header is a {type(header).__name__}, not a table")
    meta = header.pop("__metadata__", None)
    end = 0
    for name, entry in header.items():
        end = max(end, _tensor_end(path, name, entry))
    if 8 + length + end != size:
        raise DamagedCheckpoint(f"{path}: {size} bytes, but its header describes {8 + length + end} "
                                "(truncated or extended)")
    if metadata:
        return meta if isinstance(meta, dict) else {}
    return header


def is_weights_only(folder: Path) -> bool:
    """A checkpoint folder that holds networks and, by design, no trainer state (an imported one).

    Its networks.safetensors says so in its metadata; a trained run's folder
    without trainer.pt stays damaged.
    """
    folder = Path(folder)
    if (folder / TRAINER_STATE).exists() or not (folder / NETWORKS).is_file():
        return False
    try:
        meta = read_header(folder / NETWORKS, metadata=True)
    except DamagedCheckpoint:
        return False
    return all(meta.get(k) == v for k, v in WEIGHTS_ONLY.items())


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
        with regular_path(path) as name:
            return unflatten_networks(load_file(name))
    except NotRegularFile as exc:
        raise DamagedCheckpoint(str(exc)) from None
    except (OSError, SafetensorError) as exc:
        raise DamagedCheckpoint(f"{path}: cannot be read: {exc}") from None


def load_trainer_state(checkpoint: Path, mmap: bool = False) -> dict:
    """trainer.pt through torch.load(weights_only=True), its structure checked; `mmap` leaves tensors on disk."""
    path = Path(checkpoint) / TRAINER_STATE
    if path.is_file() and path.stat().st_size == 0:
        raise DamagedCheckpoint(f"{path}: empty file")
    try:
        with regular_path(path) as name, warnings.catch_warnings():  # e.g. torch's note on a foreign pickle protocol
            warnings.simplefilter("ignore")
            state = torch.load(name, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(name))
    except NotRegularFile as exc:
        raise DamagedCheckpoint(str(exc)) from None
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
_OPTIONAL = {"schedulers": dict, "plugin": dict, "best": dict}
_BEST = {"step": int, "value": float, "signature": str}  # evaluation during training: the best so far
_KINDS = {int: "an integer", dict: "a dict", list: "a list", float: "a number", str: "a string"}


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
    for name, kind in _BEST.items() if "best" in state else ():
        _expect(state["best"].get(name), kind, path, f"best/{name}")


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


def load_strict(module: torch.nn.Module, given: dict[str, torch.Tensor], role: str, where: str, built: str,
                has: str = " has shape ") -> None:
    """Fill ``module`` from ``given``: every tensor of the network filled, every given one used, shapes equal.

    The one strict load of resume, sampling, ``--init`` and ``ganzoo import``; an error names ``where`` (the
    file), the tensor as ``role/key``, and ``built`` (what the module is); ``has`` introduces the given shape.
    """
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in given:
            raise UserError(f"{where}: {role}/{key} is missing; {built} has it")
        if tuple(given[key].shape) != tuple(tensor.shape):
            raise UserError(f"{where}: {role}/{key}{has}{_shape(given[key].shape)}, {built} has "
                            f"{_shape(tensor.shape)}")
    extra = sorted(set(given) - set(expected))
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise UserError(f"{where}: {role}/{extra[0]}{more} is not in {built}")
    module.load_state_dict({key: value.to(expected[key].dtype) for key, value in given.items()})


def load_into(nets: dict[str, torch.nn.Module], weights: dict[str, dict[str, torch.Tensor]], source: Path) -> None:
    """Load weights by role (`G`, `G_ema`); a missing role or tensor, or a shape mismatch, names it."""
    path = Path(source) / NETWORKS
    for role, module in nets.items():
        if role not in weights:
            raise UserError(f"{path}: no weights for network {role!r} (it has {', '.join(sorted(weights)) or 'none'})")
        load_strict(module, weights[role], role, str(path), "the network built from config.json",
                    has=": checkpoint has ")


def first_nonfinite(weights: dict[str, dict[str, torch.Tensor]]) -> str | None:
    """The name (`G_ema/main.0.weight`) of the first floating tensor holding NaN or inf, or None."""
    for role, tensors in weights.items():
        for key, value in tensors.items():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                return f"{role}/{key}"
    return None


def state_tensors(state: dict) -> Iterator[tuple[str, torch.Tensor]]:
    """The floating tensors of a trainer state that a run continues from, by key: the optimizers' moments
    (``optimizers/G/state/0/exp_avg``) and the plugin's state (``plugin/pl_mean``). RNG states are bytes."""
    for name, opt in (state.get("optimizers") or {}).items():
        for index, entry in ((opt or {}).get("state") or {}).items():
            for key, value in (entry.items() if isinstance(entry, dict) else ()):
                if torch.is_tensor(value) and value.is_floating_point():
                    yield f"optimizers/{name}/state/{index}/{key}", value
    yield from _tensors_in("plugin", state.get("plugin") or {})


def _tensors_in(prefix: str, value) -> Iterator[tuple[str, torch.Tensor]]:
    if torch.is_tensor(value):
        if value.is_floating_point():
            yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors_in(f"{prefix}/{key}", item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _tensors_in(f"{prefix}/{index}", item)


def nonfinite_in(checkpoint: Path, weights: dict[str, dict[str, torch.Tensor]], state: dict | None = None) -> str | None:
    """'FILE: tensor NAME holds NaN or inf' for the first non-finite tensor a run would start from, else None.

    What a run starts from: every network and EMA copy in networks.safetensors, and with ``state`` (a resume
    or rollback; ``--init`` takes fresh optimizers) the optimizer moments and plugin state of trainer.pt:
    a NaN moment turns the next update into NaN weights, an inf one freezes the weight for good.
    """
    checkpoint = Path(checkpoint)
    bad = first_nonfinite(weights)
    if bad is not None:
        return f"{checkpoint / NETWORKS}: tensor {bad} holds NaN or inf"
    for key, value in state_tensors(state) if state is not None else ():
        if not bool(torch.isfinite(value).all()):
            return f"{checkpoint / TRAINER_STATE}: tensor {key} holds NaN or inf"
    return None


def finite_record(folder: Path) -> bool | None:
    """What the checkpoint recorded at save (header only): True if every tensor a run continues from was
    finite, False if not (or the header is damaged), None when it has no record (written before the record
    existed, or an import)."""
    try:
        meta = read_header(Path(folder) / NETWORKS, metadata=True)
    except DamagedCheckpoint:
        return False
    return {"true": True, "false": False}.get(meta.get(FINITE))


def recorded_nonfinite(folder: Path) -> str | None:
    """The first non-finite tensor the checkpoint recorded at save, or None (finite, or no record)."""
    try:
        meta = read_header(Path(folder) / NETWORKS, metadata=True)
    except DamagedCheckpoint:
        return None
    return meta.get(NONFINITE) if meta.get(FINITE) == "false" else None


def unflatten_networks(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        role, _, key = name.partition("/")
        out.setdefault(role, {})[key] = value
    return out
