"""`ganzoo pretrained`: the catalog of published checkpoints; `get` downloads one and imports it as a run.

The catalog module is imported inside each command so that `ganzoo --help`
does not load urllib.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def pretrained():
    """Published checkpoints (CycleGAN's, StyleGAN2-ADA's): what the catalog offers, and imports of them."""


@pretrained.command("list")
def list_cmd():
    """Every catalog checkpoint: its architecture, download size, licence and whether it is cached."""
    from ..pretrained import pretrained_dir, rows

    table = rows()
    header = ("NAME", "ARCH", "SIZE", "LICENCE", "CACHED")
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    click.echo(f"checkpoints are cached in {pretrained_dir()} (set GANZOO_HOME to move it)")
    for row in [header, *table]:
        click.echo("  ".join(f"{value:<{width}}" for value, width in zip(row, widths)).rstrip())


@pretrained.command()
@click.argument("name")
@click.option("--out", type=click.Path(path_type=Path), help="Run directory to import into (default runs/NAME).")
def get(name, out):
    """Download NAME into the cache (verified where the catalog has its size and sha256) and import it as a run."""
    from ..importing import check_out
    from ..pretrained import fetch, get_entry, import_checkpoint, import_command

    entry = get_entry(name)
    out = out or Path("runs") / entry.name
    check_out(out)  # before a download of hundreds of MB: a new run directory, not inside another run
    path = fetch(entry.name, progress=True)
    click.echo(f"{entry.name}: {path} ({entry.licence})")
    run = import_checkpoint(entry.arch, [path], out, entry.classes, f"the catalog's classes of {entry.name}")
    if run is None:
        click.echo(f"this ganzoo cannot import yet; once it can: {import_command(entry, out)}")
        return
    click.echo(f"run directory: {run}")
