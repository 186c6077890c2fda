"""Reading pickles that other code bases wrote, without running anything they hold.

``restricted_unpickle(path, allowed)`` is :class:`pickle.Unpickler` with
``find_class`` limited to the ``(module, name)`` pairs the caller lists, each
mapped to an object of the caller's choice (a safe stand-in, never the named
global itself unless it is harmless): a pickle runs code only through the
globals it names, so a reduce calling ``os.system``, an unknown class or any
other global is refused before anything is called. Persistent ids are refused
unless the caller passes ``persistent_load``. Every failure is one UserError
naming the file (and the global).

Stand-ins for what pickled PyTorch tensors and NumPy scalars need:

- ``TENSOR_GLOBALS``: a tensor pickled by plain ``pickle`` (not ``torch.save``)
  is ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
  (``_rebuild_parameter(tensor, ...)`` for a Parameter) whose storage is
  ``torch.storage._load_from_bytes(b)``, ``b`` being ``torch.save``'s legacy
  format of that storage (torch's ``TypedStorage.__reduce__``). The stand-ins
  check their arguments, read ``b`` with ``torch.load(weights_only=True)``
  (torch's own restricted unpickler) and build the tensor with ``Tensor.set_``;
  hooks and anything but a storage are refused.
- ``NUMPY_SCALAR_GLOBALS``: a NumPy scalar (``np.float64(0.5)``) pickles as
  ``numpy.core.multiarray.scalar(numpy.dtype('f8'), raw_bytes)``; only
  numeric and boolean dtypes are accepted, and the value comes back as a
  Python bool, int or float.
"""

from __future__ import annotations

import collections
import io
import pickle
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import UserError

Allowed = Mapping[tuple[str, str], Any]


class _Refused(Exception):
    """A global or persistent id outside the allowlist (turned into a UserError naming the file)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, allowed: Allowed, persistent: Callable[[Any], Any] | None):
        super().__init__(file)
        self._allowed = allowed
        self._persistent = persistent

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise _Refused(f"it names the global {module}.{name}, which is not allowed here") from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise _Refused(f"it holds a persistent id ({_short(pid)}), which is not allowed here")
        return self._persistent(pid)


def restricted_unpickle(path: Path, allowed: Allowed, persistent_load: Callable[[Any], Any] | None = None,
                        expects: str = "a pickle") -> Any:
    """The object pickled in ``path``, with globals resolved only through ``allowed``; else one UserError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data:
        raise UserError(f"{path}: empty file, expected {expects}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage deprecation, from torch.load of legacy storages
            return _RestrictedUnpickler(io.BytesIO(data), allowed, persistent_load).load()
    except _Refused as exc:
        raise UserError(f"{path}: refused: {exc}; nothing in the file was run") from None
    except UserError as exc:  # a stand-in refused its arguments
        raise UserError(f"{path}: {exc}") from None
    except (EOFError, pickle.UnpicklingError) as exc:
        raise UserError(f"{path}: truncated or damaged pickle ({_first_line(exc) or 'ran out of input'}), "
                        f"expected {expects}") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be {expects}") from None
    except Exception as exc:  # garbage reaching a stand-in or an opcode: ValueError, TypeError, IndexError...
        raise UserError(f"{path}: damaged pickle ({type(exc).__name__}: {_first_line(exc)}), "
                        f"expected {expects}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- PyTorch tensors pickled by plain pickle ---------------------------------------------------------------------


def _load_storage(data):
    """``torch.storage._load_from_bytes``: a storage in torch.save's legacy format, read weights-only."""
    import torch

    if not isinstance(data, (bytes, bytearray)):
        raise UserError(f"a tensor storage is {type(data).__name__}, not bytes")
    try:
        storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"refused a tensor storage: {_first_line(exc)}; nothing in the file was run") from None
    except Exception as exc:
        raise UserError(f"damaged tensor storage ({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(storage, torch.storage.TypedStorage):
        raise UserError(f"a tensor storage holds a {type(storage).__name__}, not a storage")
    return storage


def _ints(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int and v >= 0 for v in value):
        raise UserError(f"a tensor's {what} is {_short(value)}, not a tuple of non-negative integers")
    return tuple(value)


def _no_hooks(hooks) -> None:
    if hooks not in (None, {}) and not (isinstance(hooks, dict) and not hooks):
        raise UserError("a tensor carries backward hooks; refused")


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """``torch._utils._rebuild_tensor_v2``: a view of ``storage``; bounds are checked by ``Tensor.set_``."""
    import torch

    if not isinstance(storage, torch.storage.TypedStorage):
        raise UserError(f"a tensor's storage is a {type(storage).__name__}")
    if type(storage_offset) is not int or storage_offset < 0:
        raise UserError(f"a tensor's storage offset is {_short(storage_offset)}")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise UserError(f"a tensor's size {size} and stride {stride} differ in length")
    _no_hooks(backward_hooks)
    tensor = torch.empty((0,), dtype=storage.dtype)
    try:
        return tensor.set_(storage._untyped_storage, storage_offset, size, stride)
    except RuntimeError as exc:
        raise UserError(f"a tensor of size {size} does not fit its storage ({_first_line(exc)})") from None


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """``torch._utils._rebuild_parameter``: the tensor itself (importers need values, not Parameters)."""
    import torch

    if not torch.is_tensor(data):
        raise UserError(f"a parameter holds a {type(data).__name__}, not a tensor")
    _no_hooks(backward_hooks)
    return data


TENSOR_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    # The empty backward-hook dict every pickled tensor carries; an OrderedDict is plain data.
    ("collections", "OrderedDict"): collections.OrderedDict,
}


# --- NumPy scalars ------------------------------------------------------------------------------------------------


class _Dtype:
    """What ``numpy.dtype(spec, align, copy)`` needs to be in a pickle: a numeric spec and (by BUILD) a byte order."""

    def __init__(self, spec, align=False, copy=True):
        if not isinstance(spec, str) or len(spec) < 2 or spec[0] not in "biuf" or not spec[1:].isdigit():
            raise UserError(f"a NumPy dtype {_short(spec)} is not a plain number type; refused")
        self.spec, self.order = spec, "<"

    def __setstate__(self, state):
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else None
        if order not in ("<", ">", "|", "="):
            raise UserError(f"a NumPy dtype's state {_short(state)} is not understood")
        self.order = "<" if order in ("|", "=") else order


def _numpy_scalar(dtype, data=None):
    """``numpy.core.multiarray.scalar``: a Python number from a numeric dtype and its raw bytes."""
    import numpy as np

    if not isinstance(dtype, _Dtype) or not isinstance(data, (bytes, bytearray)):
        raise UserError("a NumPy scalar is not a number type with its bytes; refused")
    kind = np.dtype(dtype.order + dtype.spec)
    if len(data) != kind.itemsize:
        raise UserError(f"a NumPy {dtype.spec} scalar holds {len(data)} bytes")
    return np.frombuffer(bytes(data), dtype=kind)[0].item()


NUMPY_SCALAR_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "dtype"): _Dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,  # NumPy 1.x
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,  # NumPy 2.x
}

# Python 3.7's default pickle protocol (3) writes a set as a call of builtins.set; the set type is plain data.
SET_GLOBALS: dict[tuple[str, str], Any] = {("builtins", "set"): set}

__all__ = ["restricted_unpickle", "TENSOR_GLOBALS", "NUMPY_SCALAR_GLOBALS", "SET_GLOBALS"]
