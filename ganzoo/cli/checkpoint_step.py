"""`--step N|best`: which checkpoint of a run directory a command uses (default: the newest intact one)."""

from __future__ import annotations

import click

from ..errors import UserError


class CheckpointStep(click.ParamType):
    name = "N|best"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value == "best":
            return value
        try:
            step = int(value)
        except ValueError:
            step = -1
        if step < 0:
            self.fail(f"takes a step number or 'best', got {value!r}", param, ctx)
        return step


step_option = click.option(
    "--step", type=CheckpointStep(),
    help="The checkpoint of this step, or 'best' (the one training with --eval-every ranked best); "
         "default: the newest intact one.")


def refuse_for_model(step) -> None:
    """A model file holds one set of weights: --step has nothing to pick."""
    if step is not None:
        raise UserError("--step picks a checkpoint of a run directory; a model file has none")
