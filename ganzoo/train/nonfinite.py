"""Non-finite steps decided on the device: no host sync per phase, the same decision on every rank.

Backward always runs (every rank joins the gradient all-reduce); ``found_inf``
is then read from the averaged gradients, plus every rank's loss flag averaged
with them, so it is identical on every rank. The optimizer step is skipped the
way GradScaler skips it: fused Adam takes ``found_inf`` and leaves parameters,
moments and step counts untouched; the foreach and plain optimizers have no such
input, so for them one host sync decides (a documented cost of those paths).
Skips are counted on the device and read only with the trainer's metrics (ganzoo.train.metrics_buffer)
or before a checkpoint.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import torch


def found_nonfinite(grads: list[torch.Tensor], flag: torch.Tensor) -> torch.Tensor:
    """1.0 (a float32 0-d tensor on the gradients' device) if ``flag`` > 0 or any gradient holds a NaN or inf.

    The check is GradScaler's own kernel with a scale of exactly 1, which leaves the gradients bitwise as they are.
    """
    found = (flag > 0).to(torch.float32).reshape(())
    by_kind: dict[tuple, list[torch.Tensor]] = defaultdict(list)
    for g in grads:
        by_kind[(g.device, g.dtype)].append(g)
    for (device, _), group in by_kind.items():
        local = found if device == found.device else found.to(device)
        torch._amp_foreach_non_finite_check_and_unscale_(group, local, torch.ones((), device=device))
        if local is not found:
            found = torch.maximum(found, local.to(found.device))
    return found


def step_unless(optimizer: torch.optim.Optimizer, found: torch.Tensor) -> None:
    """``optimizer.step()`` unless ``found``: on the device for fused Adam, by one host sync otherwise."""
    if getattr(optimizer, "_step_supports_amp_scaling", False):  # fused Adam: found_inf as GradScaler passes it
        optimizer.found_inf = found
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif not bool(found):  # foreach / plain: no found_inf input, so the host decides
        optimizer.step()


def rollback_seed(seed: int, rollbacks: int) -> int:
    """The loss generator's seed after the ``rollbacks``-th rollback: fixed by (seed, count), unlike any run seed."""
    digest = hashlib.sha256(f"ganzoo-rollback/{seed}/{rollbacks}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class SkipCounter:
    """Consecutive skipped runs of each phase, and the step at which a phase reached the limit, on the device.

    ``count = (count + found) * found`` adds a skip and resets on a finite step
    without reading anything back; ``reached`` keeps the first step at which a
    count reached ``limit`` (-1: never) so a divergence is not missed when a
    finite step follows before the next log point.
    """

    def __init__(self, phases: list[str], limit: int, device: torch.device):
        self.limit = limit
        self.device = device
        self.count = {name: torch.zeros((), dtype=torch.int64, device=device) for name in phases}
        self.reached = {name: torch.full((), -1, dtype=torch.int64, device=device) for name in phases}

    def add(self, phase: str, found: torch.Tensor, step: int) -> None:
        hit = found.to(torch.int64)
        count = (self.count[phase] + hit) * hit
        self.count[phase] = count
        reached = self.reached[phase]
        self.reached[phase] = torch.where((reached < 0) & (count >= self.limit), step, reached)

    def stacked(self) -> torch.Tensor:
        """Every phase's (reached, count), flat in phase order, on the device: read later by :meth:`decide`."""
        names = list(self.count)
        if not names:
            return torch.zeros(0, dtype=torch.int64, device=self.device)
        return torch.stack([torch.stack([self.reached[n], self.count[n]]) for n in names]).reshape(-1)

    def decide(self, values) -> tuple[str, int, int] | None:
        """(phase, step at which it reached the limit, its consecutive skips then) from :meth:`stacked`'s values
        read on the host, or None."""
        for i, name in enumerate(self.count):
            reached, count = values[2 * i], values[2 * i + 1]
            if reached >= 0:
                return name, int(reached), int(count)
        return None

    def diverged(self) -> tuple[str, int, int] | None:
        """:meth:`decide` on the values now; one read from the device."""
        return self.decide(self.stacked().tolist())

    def reset(self) -> None:
        for name in self.count:
            self.count[name].zero_()
            self.reached[name].fill_(-1)

    def state_dict(self) -> tuple[dict[str, int], dict[str, int]]:
        """({phase: consecutive skips}, {phase: step it reached the limit} for the phases that did)."""
        counts = {name: int(t) for name, t in self.count.items()}
        reached = {name: int(t) for name, t in self.reached.items() if int(t) >= 0}
        return counts, reached

    def load_state_dict(self, counts: dict, reached: dict | None = None) -> None:
        for name, value in counts.items():
            if name in self.count:
                self.count[name].fill_(int(value))
        for name, value in (reached or {}).items():
            if name in self.reached:
                self.reached[name].fill_(int(value))
