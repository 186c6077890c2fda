"""Where an extractor's weights file comes from, and reading it without executing anything.

A metric is only comparable with the reference tools' numbers when it runs on
the same weights, so the search order is theirs: the file the user names
(``--weights``), then the caches those tools fill themselves (torch hub's
``checkpoints`` folder for torch-fidelity and pytorch-fid, the Hugging Face hub
cache for timm), then a download when online, verified against a sha256. With
none of these there is ONE UserError that says which file to put where and
where to get it. ``GANZOO_OFFLINE=1`` skips the download (air-gapped machines,
tests), so a missing file is reported at once instead of after a timeout.

Reading is weights-only: safetensors, or ``torch.load(weights_only=True)``,
which refuses anything but tensors and plain containers. A state dict that does
not fit the network is one UserError naming the file and the first tensor that
does not fit, with both shapes.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...errors import UserError
from ...fileio import sha256_of  # noqa: F401 (the extractors' modules import it from here)

OFFLINE_ENV = "GANZOO_OFFLINE"


@dataclass(frozen=True)
class WeightsSource:
    """Everything needed to find one network's weights, or to tell the user how to provide them.

    what: names the weights in messages ("the inception (FID) weights").
    put_at: the exact path the error message asks for (where a download lands).
    url: where to get the file by hand.
    cached: paths tried in order before downloading (``put_at`` first, usually).
    download: fetches the file and returns its path; raises UserError saying why not.
    """

    what: str
    put_at: Path
    url: str
    cached: tuple[Path, ...]
    download: Callable[[], Path] | None = None


def offline() -> bool:
    """True when ``GANZOO_OFFLINE`` is set to 1/true/yes: never download, report a missing file at once."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def torch_hub_checkpoints() -> Path:
    """torch hub's checkpoint folder ($TORCH_HOME/hub/checkpoints), where torch-fidelity and pytorch-fid keep weights."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache timm downloads into, from the environment as it is now.

    huggingface_hub reads these variables once, at import; reading them here
    lets a caller (or a test) point HF_HOME elsewhere after that.
    """
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.path.expandvars(os.environ[name])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    base = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base.expanduser() / "huggingface" / "hub"


def locate(source: WeightsSource, weights: Path | None) -> Path:
    """The weights file to load: ``weights`` if given, else a cached copy, else a download, else one UserError."""
    if weights is not None:
        weights = Path(weights).expanduser()
        if not weights.exists():
            raise UserError(f"weights file {weights} does not exist")
        if weights.is_dir():
            raise UserError(f"weights file {weights} is a folder; give {source.what}' file itself")
        if not weights.is_file():
            raise UserError(f"weights file {weights} is not a regular file (a FIFO or device)")
        return weights
    for path in source.cached:
        if path.is_file():
            return path
    reason = f"downloads are off ({OFFLINE_ENV} is set)"
    if source.download is not None and not offline():
        try:
            return source.download()
        except UserError as error:
            reason = str(error)
    raise UserError(
        f"{source.what} are not on this machine: put the file at {source.put_at} "
        f"(get it from {source.url}), or give its path (ganzoo eval --weights EXTRACTOR=FILE, "
        f"ganzoo train --eval-weights FILE); {reason}"
    )


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte header length and then the JSON header's '{'."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def read_state_dict(path: Path, network: str | None = None) -> dict:
    """name -> tensor from a safetensors file or a torch file, never unpickling anything but tensors.

    A dict nested under "state_dict" or "model" (training checkpoints) is
    unwrapped. Anything unreadable is one UserError naming the file and the
    ``network`` its weights were asked for.
    """
    import torch

    from ...safe_load import foreign_global, unreadable

    path = Path(path)
    expects = (f"the {network} extractor's weights" if network else "an extractor's weights") + \
        " (a safetensors file or a PyTorch state dict)"
    try:
        is_safetensors = _is_safetensors(path)
    except OSError as error:
        raise UserError(f"cannot read weights file {path}: {error.strerror or error}") from None
    if is_safetensors:
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as error:  # noqa: BLE001 - any failure to parse a file we were given is the file's fault
            raise UserError(f"cannot read weights file {path}: a damaged safetensors file ({error}), expected "
                            f"{expects}") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - the weights-only unpickler raises anything on garbage
            if isinstance(error, pickle.UnpicklingError) and foreign_global(error, path) is not None:
                raise UserError(f"cannot read weights file {path}: it holds Python objects besides tensors, and "
                                f"only plain state dicts are loaded (torch.load weights_only=True)") from None
            raise UserError(f"cannot read weights file {path}: {unreadable(path, error, expects)}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise UserError(f"cannot read weights file {path}: it does not hold a state dict (names mapped to tensors)")
    return dict(state)


def _shape(shape) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def check_fits(state: dict, expected: dict, path: Path, network: str) -> None:
    """One UserError naming ``path`` and the first tensor of ``expected`` (name -> tensor) missing or of another shape."""
    for name, tensor in expected.items():
        if name not in state:
            raise UserError(f"weights file {path} does not fit the {network} network: "
                            f"tensor {name} {_shape(tensor.shape)} is missing")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise UserError(f"weights file {path} does not fit the {network} network: tensor {name} has shape "
                            f"{_shape(state[name].shape)} in the file, the network needs {_shape(tensor.shape)}")
    extra = [name for name in state if name not in expected]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise UserError(f"weights file {path} does not fit the {network} network: "
                        f"it has a tensor {extra[0]} {_shape(state[extra[0]].shape)} the network does not{more}")
