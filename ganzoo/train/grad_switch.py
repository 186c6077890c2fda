"""Which networks a phase trains: requires_grad set parameter by parameter, from lists taken once.

``Module.requires_grad_`` walks the module tree on every call (named_modules with
its memo set and prefixes); with a network per role, a phase per optimizer and
the switch back afterwards, that walk cost small networks more host time per
step than some of their kernels. The optimizers hold these same parameters, so
the lists cannot change during a run. The flags set are exactly those
``requires_grad_`` sets.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn


class GradSwitch:
    """requires_grad on for the networks a phase trains, off for the others, or on for all."""

    def __init__(self, nets: dict[str, nn.Module]):
        self.params = {role: list(module.parameters()) for role, module in nets.items()}

    def train_only(self, roles: Iterable[str]) -> None:
        for role, params in self.params.items():
            flag = role in roles
            for p in params:
                p.requires_grad_(flag)

    def all_on(self) -> None:
        for params in self.params.values():
            for p in params:
                p.requires_grad_(True)
