"""Exponential moving average of generator weights, with StyleGAN2-ADA's schedule.

The half-life is given in images (ema_kimg), ramped up early in training
(half-life at most ema_rampup x images seen). Floating buffers (batch-norm
running statistics) are averaged with the weights so that they match them.

An update runs every step, so it does not walk the module tree each time
(named_parameters recurses with prefixes and memo sets, which cost small
networks more than the lerp itself): each network's submodules are listed once,
and their parameter and buffer dicts are read at every update, so a buffer a
network reassigns is still the one averaged.
"""

from __future__ import annotations

import copy
import weakref

import torch
from torch import nn


def make_ema(module: nn.Module) -> nn.Module:
    ema = copy.deepcopy(module).eval()
    ema.requires_grad_(False)
    return ema


def ema_beta(batch_size: int, images_seen: int, ema_kimg: float, ema_rampup: float) -> float:
    ema_nimg = ema_kimg * 1000
    if ema_rampup > 0:
        ema_nimg = min(ema_nimg, images_seen * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, live: nn.Module, beta: float) -> None:
    ema_floats, live_floats, ema_other, live_other = [], [], [], []
    for e, x in zip(_tensors(ema), _tensors(live)):
        (ema_floats if e.is_floating_point() else ema_other).append(e)
        (live_floats if e.is_floating_point() else live_other).append(x)
    if ema_floats:
        torch._foreach_lerp_(ema_floats, live_floats, 1.0 - beta)
    for e, x in zip(ema_other, live_other):
        e.copy_(x)


_SUBMODULES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _submodules(module: nn.Module) -> list[nn.Module]:
    """The module and its descendants in named_modules' order, listed once per module."""
    found = _SUBMODULES.get(module)
    if found is None:
        found = _SUBMODULES[module] = list(module.modules())
    return found


def _tensors(module: nn.Module):
    """What named_parameters() then named_buffers() yield (tensors only, each once), from the dicts as they are now."""
    for kind in ("_parameters", "_buffers"):
        seen = set()
        for m in _submodules(module):
            for t in getattr(m, kind).values():
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    yield t
