"""The `ganzoo` command: one module per command group, plus the commands plugins contribute.

Importing this package imports no torch (commands import it when they run),
so `ganzoo list` and the torch-free `ganzoo sample MODEL.onnx` stay cheap.
A UserError anywhere becomes one "Error: ..." line and exit status 1.
"""

from __future__ import annotations

import click

from .. import __version__, signals
from ..errors import UserError
from .bench import bench
from .data import data
from .eval import eval_cmd
from .export import export
from .import_ import import_cmd
from .sample import sample
from .translate import translate
from .info import info
from .plugins import list_cmd, plugin_commands
from .pretrained import pretrained
from .train import train


class _Root(click.Group):
    """ganzoo's own commands, then those of loadable plugins (looked up only when asked for)."""

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *plugin_commands(ctx).mounted})

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None:
            found = plugin_commands(ctx).mounted.get(name)
            command = found.command if found else None
        return command

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            if exc.quiet:
                raise click.exceptions.Exit(1) from None
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt as exc:  # a stop signal before the job handles them, or a second one
            _stopped(getattr(exc, "name", None) or signals.interrupted_by() or "SIGINT")
        except (click.exceptions.ClickException, click.exceptions.Exit):
            raise
        except Exception:
            if signals.first_stop() is None:
                raise
            # raised while unwinding from a stop (another rank that stopped first closed the connection, in a
            # collective or the final barrier): the stop is what happened
            _stopped(signals.first_stop())


def _stopped(name: str):
    """One line (from the process that reports stops) and 128 + N, instead of a traceback or click's 'Aborted!'."""
    signals.say_stopped(name)
    raise click.exceptions.Exit(signals.exit_status(name)) from None


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ganzoo")
def cli():
    """ganzoo: a plugin-based GAN zoo. Train, sample and inspect GANs from one CLI."""


for _command in (list_cmd, train, info, sample, translate, export, import_cmd, eval_cmd, bench, data, pretrained):
    cli.add_command(_command)


def main():
    from ..lifeline import stop_with_agent

    signals.handle_stops()  # from here on a stop signal is one line and 128 + N (ganzoo.signals)
    stop_with_agent()  # a rank of a torchrun job stops when its agent dies
    try:
        cli(prog_name="ganzoo")
    finally:
        signals.exit_on_stops()


__all__ = ["cli", "main"]
