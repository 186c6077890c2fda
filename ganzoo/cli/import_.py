"""`ganzoo import`: a reference repository's checkpoint files to a ganzoo run directory (weights only).

Registered on the main group in ganzoo.cli, which turns a UserError into one
"Error: ..." line. The work is ganzoo.importing.import_run.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("import")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--arch", required=True, help="The architecture whose importer reads the files (cyclegan, dcgan...).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The new run directory to write.")
@click.option("--preset", help="Named overrides from the architecture, under what the files determine.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (repeatable); keys the files determine must agree with them.")
@click.option("--classes", metavar="NAME,NAME,...", help="A conditional network's class names, comma-separated in "
              "label order (recorded in config.json; default 0, 1, ...).")
def import_cmd(sources, arch, out, preset, sets, classes):
    """Import SOURCE files (e.g. CycleGAN's *_net_G_A.pth, DCGAN's netG_epoch_N.pth) into a run directory.

    Nothing in the files is run: state dicts are read weights-only. The run
    holds no trainer state: sample, translate, export and evaluate it, or
    fine-tune it with `ganzoo train ARCH --init RUN_DIR`.
    """
    from ..importing import import_run
    from ..rundir import open_run, run_classes

    names = None if classes is None else [name.strip() for name in classes.split(",")]
    run_dir = import_run(arch, sources, out, preset=preset, sets=sets, classes=names)
    run = open_run(run_dir)
    imported = run.record["imported"]
    named = run_classes(run)
    of = f" ({len(named)} classes: {', '.join(named)})" if named else ""
    click.echo(f"imported {', '.join(imported['roles'])} from {imported['source']} into {run_dir}{of}")
