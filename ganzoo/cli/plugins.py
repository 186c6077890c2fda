"""`ganzoo list`, and the commands that plugins contribute (StyleGAN-lite's `style-mix`).

An architecture contributes commands through ``Architecture.commands()``. They
are collected once per invocation, and only when a command name is not one of
ganzoo's own or when the command list is shown (``ganzoo --help``, ``ganzoo
list``): a plugin that cannot load contributes nothing, and ``ganzoo list``
says why. A command whose name is taken (by ganzoo or by an earlier plugin in
precedence order) is not mounted, and ``ganzoo list`` says that too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import click


@dataclass(frozen=True)
class PluginCommand:
    command: click.Command
    architecture: str
    distribution: str


@dataclass
class PluginCommands:
    mounted: dict[str, PluginCommand] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # commands left out, and why


def _own_command_names() -> set[str]:
    from . import cli

    return set(click.Group.list_commands(cli, None))


def plugin_commands(ctx: click.Context | None) -> PluginCommands:
    """The commands of every loadable plugin, by name, kept for the rest of this invocation."""
    meta = ctx.find_root().meta if ctx is not None else {}
    if "ganzoo.plugin_commands" not in meta:
        meta["ganzoo.plugin_commands"] = _collect()
    return meta["ganzoo.plugin_commands"]


def _collect() -> PluginCommands:
    """Every loadable plugin's commands; collisions and failures are reported, never raised."""
    from .. import registry

    found = PluginCommands()
    taken = _own_command_names()
    for entry in registry.load_all():
        cls = registry.load(entry)
        if cls is None:
            continue
        origin = f"{entry.name} ({entry.distribution} {entry.version})"
        try:
            commands = list(cls().commands())
        except Exception as exc:  # a plugin may fail in any way; its commands are left out
            found.problems.append(f"{origin}: commands() failed: {registry.one_line(exc)}")
            continue
        for command in commands:
            if not isinstance(command, click.Command) or not command.name:
                found.problems.append(f"{origin}: commands() gave {command!r}, not a named click command")
            elif command.name in taken:
                owner = found.mounted.get(command.name)
                by = f"{owner.architecture}'s" if owner else "ganzoo's own"
                found.problems.append(f"{origin}: command {command.name!r}: the name is {by} command")
            else:
                taken.add(command.name)
                found.mounted[command.name] = PluginCommand(command, entry.name, entry.distribution)
    return found


@click.command("list")
@click.pass_context
def list_cmd(ctx):
    """Architectures from every installed plugin, with their status, and the commands plugins add."""
    from .. import registry

    entries = registry.load_all()
    if not entries:
        click.echo("no architectures installed (entry-point group ganzoo.architectures is empty)")
        return
    header = ("NAME", "STATUS", "PLUGIN", "COND", "SUMMARY")
    rows = [(e.name, e.status, f"{e.distribution} {e.version}", _conditional(e), _summary(e)) for e in entries]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    for row in [header, *rows]:
        click.echo("  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths)) + f"  {row[4]}")
    if any(row[3] == "yes" for row in rows):
        click.echo("\nCOND yes: `ganzoo train ARCH --cond` trains it class-conditional on the data's labels")
    contributed = plugin_commands(ctx)
    if contributed.mounted:
        click.echo("\ncommands from plugins: " + ", ".join(
            f"ganzoo {name} ({found.architecture})" for name, found in sorted(contributed.mounted.items())))
    for problem in contributed.problems:
        click.echo(f"not mounted: {problem}")


def _conditional(entry) -> str:
    """Whether the architecture can be class-conditional (it declares a class-count key); '-' if it did not load."""
    from .. import registry

    if entry.status != registry.OK:
        return "-"
    return "yes" if getattr(registry.load(entry), "class_count_key", None) else "no"


def _summary(entry) -> str:
    from .. import registry

    if entry.status == registry.OK:
        return registry.load(entry).summary
    return f"({entry.reason})"
