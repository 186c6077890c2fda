"""Host reads: operations that bring a tensor's value into Python, and a spy that catches them.

On a GPU each such read (``.item()``, ``bool(t)``, ``.tolist()``, a boolean mask,
``nonzero``...) makes the host wait for the device, so the host can no longer
queue kernels ahead and a small-kernel step becomes host-bound. The fast path
must make none inside a training step and none at a log point except the one
deferred copy of ganzoo.train.metrics_buffer.

Code that reads on purpose says so with ``permitted(reason)``: checkpoints,
previews and evaluations (they copy weights or images to the host anyway), a
divergence decision that must precede a checkpoint, and the metrics buffer's
read of its completed host copy. Outside a spy ``permitted`` costs a list append. The same blocks
switch CUDA's ``set_sync_debug_mode`` off while they run, so tests/test_cuda_sync.py can hold a whole
``run()`` to "no sync" except there.

``HostReadSpy`` is a ``TorchFunctionMode``: it sees every torch call made while
it is active, records each read with the reason in force and raises
``HostRead`` on a read that no ``permitted`` covers. On the CPU it is the
stand-in for ``torch.cuda.set_sync_debug_mode("error")``. What it cannot see:
a host-to-device copy (on the CPU there is none; on CUDA the sync debug mode
catches a blocking one) and reads in code that bypasses ``__torch_function__``
(C++ internals, compiled graphs).
"""

from __future__ import annotations

import contextlib
import traceback
from dataclasses import dataclass

import torch
from torch.overrides import TorchFunctionMode

# Calls that return a tensor's value (or a data-dependent shape) to the host, by __name__ as the mode sees them.
READS = frozenset({
    "item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__complex__", "__format__",
    "__array__", "__repr__", "__str__", "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive",
    "equal", "allclose", "is_nonzero", "bincount", "histc",
})

_reasons: list[str] = []


@contextlib.contextmanager
def permitted(reason: str):
    """Reads inside are expected (``reason`` names why): a spy records them instead of raising, and CUDA's
    sync debug mode, if a test has set it, is off inside."""
    _reasons.append(reason)
    mode = torch.cuda.get_sync_debug_mode() if torch.cuda.is_initialized() else 0
    if mode:
        torch.cuda.set_sync_debug_mode(0)
    try:
        yield
    finally:
        _reasons.pop()
        if mode:
            torch.cuda.set_sync_debug_mode(mode)


class HostRead(AssertionError):
    """A host read that no ``permitted`` block covers."""


@dataclass
class Read:
    op: str
    reason: str | None  # the innermost permitted() reason, None if none
    where: str  # the caller's file:line outside torch


def read_op(func, args, kwargs) -> str | None:
    """The name of the read ``func(*args, **kwargs)`` makes, or None if it makes none."""
    name = getattr(func, "__name__", "")
    if name in READS:
        return name
    if name == "where" and len(args) + len(kwargs or {}) == 1:  # torch.where(cond) is nonzero
        return "where(cond)"
    if name in ("__getitem__", "__setitem__", "index_put_", "index_put") and _has_bool_index(args[1:2]):
        return f"{name}[bool mask]"
    if name == "to" and args and torch.is_tensor(args[0]) and args[0].device.type != "cpu" and \
            _to_cpu(args[1:], kwargs or {}):
        return "to(cpu)"
    return None


def _has_bool_index(index) -> bool:
    for item in index:
        if isinstance(item, (tuple, list)):
            if _has_bool_index(item):
                return True
        elif torch.is_tensor(item) and item.dtype == torch.bool and item.dim() > 0:
            return True
    return False


def _to_cpu(args, kwargs) -> bool:
    target = kwargs.get("device", args[0] if args else None)
    return isinstance(target, (str, torch.device)) and torch.device(target).type == "cpu"


def _caller() -> str:
    for frame in reversed(traceback.extract_stack()[:-3]):
        if "/torch/" not in frame.filename:
            return f"{frame.filename}:{frame.lineno}"
    return "?"


class HostReadSpy(TorchFunctionMode):
    """Records every host read while active (``reads``); raises HostRead on one outside ``permitted``."""

    def __init__(self):
        super().__init__()
        self.reads: list[Read] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        op = read_op(func, args, kwargs)
        if op is not None:
            read = Read(op, _reasons[-1] if _reasons else None, _caller())
            self.reads.append(read)
            if read.reason is None:
                raise HostRead(f"host read {op} at {read.where}: a sync on a GPU")
        return func(*args, **(kwargs or {}))

    def unexpected(self) -> list[Read]:
        return [r for r in self.reads if r.reason is None]
