"""Reading other code bases' state dicts without running anything they hold.

``load_state_dict(path)`` is ``torch.load(weights_only=True)`` (memory-mapped
where the file is a zip archive): torch's weights-only unpickler resolves only
tensor-rebuilding globals and plain containers, so a pickled module (what
``torch.save(model)`` writes), a reduce calling ``os.system`` or any other
global is refused before it is called. Every failure is one UserError naming
the file and, where the unpickler named it, the global.

What is accepted is a flat mapping of string keys to tensors, the shape of
``module.state_dict()``. Nested containers (``{"state_dict": ...}``,
``{"model": ...}``) are not searched: which part holds the weights is not
guessed; the importer's ``expects`` text says what it reads.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path

from .errors import UserError

_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", re.I)


def load_state_dict(path: Path, expects: str = "a state dict (tensor names -> tensors)") -> dict:
    """The tensors of a ``.pth``/``.pt`` state dict by name; anything else is one UserError naming the file."""
    import torch

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise UserError(f"{path}: empty file, expected {expects}")
    try:
        with open(path, "rb"):  # the system's own refusals (permissions, a folder) are said as such
            pass
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path}: {_refusal(exc, path, expects)}") from None
    except Exception as exc:  # noqa: BLE001 - a cut zip archive is an OSError (EINVAL) to torch, a cut pickle
        # an EOFError; RuntimeError, ValueError, KeyError and zipfile errors come from foreign files
        raise UserError(f"{path}: {unreadable(path, exc, expects)}") from None
    return _flat_tensors(state, path, expects)


def unreadable(path: Path, exc: BaseException, expects: str) -> str:
    """Why torch.load could not read ``path``, told from the file's first bytes: cut short, damaged, or not
    a PyTorch file at all (torch's own words, "Invalid argument" for a cut archive, say none of this)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        head = b""
    detail = f"{type(exc).__name__}: {_first_line(exc)}" if str(exc).strip() else type(exc).__name__
    if head == b"PK" and not zipfile.is_zipfile(path):
        return (f"not a readable PyTorch file: truncated (it begins as the zip archive torch.save writes, but its "
                f"end is missing); copy or download it again. Expected {expects}")
    if head == b"PK":
        return f"not a readable PyTorch file: a damaged zip archive ({detail}); expected {expects}"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):  # torch's legacy format: pickles
        return (f"not a readable PyTorch file: truncated or damaged (a legacy-format pickle stream that ends early "
                f"or is garbled: {detail}); copy or download it again. Expected {expects}")
    return (f"not a readable PyTorch file: not a PyTorch checkpoint at all (neither the zip archive nor the pickle "
            f"torch.save writes); expected {expects}")


def foreign_global(exc: Exception, path: Path) -> str | None:
    """The global a weights-only refusal is about (torch's message, else the pickle's opcodes, never run);
    None when the file is unreadable rather than refused."""
    found = _GLOBAL.search(str(exc))
    return found.group(1) if found else _foreign_global(path)


def _flat_tensors(state, path: Path, expects: str) -> dict:
    import torch

    if not isinstance(state, dict):
        raise UserError(f"{path}: holds a {type(state).__name__}, expected {expects}")
    for key, value in state.items():
        if not isinstance(key, str):
            raise UserError(f"{path}: key {key!r} is not a string, expected {expects}")
        if isinstance(value, dict):
            raise UserError(f"{path}: holds a nested dict under {key!r} (keys: {_some(state)}), expected {expects}; "
                            "nested checkpoints are not searched for weights: save the network's own state_dict()")
        if not torch.is_tensor(value):
            raise UserError(f"{path}: {key!r} holds a {type(value).__name__}, not a tensor; expected {expects}")
    return dict(state)


def _refusal(exc: Exception, path: Path, expects: str) -> str:
    """torch's weights-only refusal in one line, naming the global, without its advice to turn the check off.

    torch names the global when it meets one it does not allow; where it stops
    earlier (at an opcode of a newer pickle protocol, or in garbage), the
    pickle's opcodes are listed without running them to name a foreign global.
    """
    name = foreign_global(exc, path)
    if name is None:
        return unreadable(path, exc, expects)
    what = "a pickled module" if name.startswith("torch.nn.") or ".nn." in name else "a pickled object"
    return (f"refused unread: it holds {what} (global {name}), not {expects}; only tensors and plain containers "
            "are read, and nothing in the file was run")


_SAFE_MODULES = ("torch", "collections", "_codecs", "builtins")


def _foreign_global(path: Path) -> str | None:
    """The first global a pickle names outside torch and plain containers, found by listing opcodes (never run)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(member) if member else b""
        else:
            data = path.read_bytes()
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    stream = io.BytesIO(data)
    try:
        while stream.tell() < len(data):  # torch's legacy format is several pickles in a row
            name = _first_foreign(pickletools.genops(stream))
            if name is not None:
                return name
    except Exception:  # garbage, raw storage bytes or a truncated pickle: what was listed so far is all there is
        return None
    return None


def _first_foreign(ops) -> str | None:
    strings: list[str] = []
    for opcode, arg, _ in ops:
        if opcode.name in ("GLOBAL", "INST"):
            name = arg.replace(" ", ".")
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            name = f"{strings[-2]}.{strings[-1]}"
        else:
            if isinstance(arg, str):
                strings.append(arg)
            continue
        if name.split(".")[0] not in _SAFE_MODULES:
            return name
    return None


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0].split(". ")[0] if lines else type(exc).__name__


def _some(state: dict, n: int = 5) -> str:
    keys = [repr(k) for k in list(state)[:n]]
    return ", ".join(keys) + (", ..." if len(state) > n else "")
