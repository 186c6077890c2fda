"""`ganzoo style-mix`: StyleGAN-lite's own command, mounted through ``Architecture.commands()``."""

from __future__ import annotations

from pathlib import Path

import click

from ganzoo.errors import UserError

MARK = "style-mix"  # the kind of output its grids are (ganzoo.marks): a re-run replaces its own grid, nothing else


@click.command("style-mix")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--rows", type=int, default=4, show_default=True, help="Latents that give the coarse styles.")
@click.option("--cols", type=int, default=6, show_default=True, help="Latents that give the fine styles.")
@click.option("--seed", type=int, default=0, show_default=True, help="Rows use SEED, columns SEED + 1.")
@click.option("--coarse", type=int, help="How many style layers count as coarse (default: the 4x4 and 8x8 blocks').")
@click.option("--truncation", type=float, default=1.0, show_default=True, help="Truncation psi for every latent.")
@click.option("--class", "class_", metavar="NAME|N", help="A conditional run's class for every latent: a name from "
              "its config.json classes or an index (default: the first class).")
@click.option("--out", type=click.Path(path_type=Path), help="PNG (default RUN_DIR/samples/style-mix-seed-S.png).")
@click.option("--device", default="auto", show_default=True)
def style_mix(run_dir, rows, cols, seed, coarse, truncation, class_, out, device):
    """StyleGAN-lite: cell (r, c) takes row r's coarse styles and column c's fine styles; sources along the edges."""
    from ganzoo import rundir
    from ganzoo.fileio import write_png
    from ganzoo.outputs import claim
    from ganzoo.runtime.classes import class_index
    from ganzoo.sampling import grid
    from ganzoo.train.engine import pick_device

    from . import StyleGANLite, default_coarse_layers
    from .mixing import style_mixing_grid
    from .networks import num_ws

    if rows < 1 or cols < 1:
        raise UserError(f"--rows and --cols must be at least 1, got {rows} and {cols}")
    out = out or run_dir / "samples" / f"style-mix-seed-{seed}.png"
    if out.suffix.lower() != ".png":
        raise UserError(f"--out must end in .png, got {out}")
    run = rundir.open_run(run_dir)
    claim(out, MARK)  # a new path or an earlier style-mix grid: never a run's file, a photo or another output
    if run.arch.name != StyleGANLite.name:
        raise UserError(f"style-mix needs a {StyleGANLite.name} run; {run_dir} is a {run.arch.name} run")
    cfg = run.resolved.config
    classes = rundir.run_classes(run)
    if classes is None and class_ is not None:
        raise UserError(f"--class needs a conditional run; {run_dir} is unconditional (c_dim=0)")
    label = None if classes is None else 0 if class_ is None else class_index(class_, classes, source=str(run_dir))
    layers = num_ws(cfg.resolution)
    coarse = default_coarse_layers(cfg.resolution) if coarse is None else coarse
    if not 1 <= coarse < layers:
        raise UserError(f"--coarse must be between 1 and {layers - 1} (the style layers at "
                        f"{cfg.resolution}x{cfg.resolution}), got {coarse}")
    torch_device = pick_device(device)
    nets, step = rundir.load_sampling_nets(run, torch_device)
    images, nrow = style_mixing_grid(nets["G"], cfg, rows, cols, seed, torch_device, truncation, coarse, label)
    write_png(out, grid(images, nrow), mark=MARK)
    of_class = "" if label is None else f", class {label} ({classes[label]})"
    click.echo(f"style mixing {rows} x {cols} from {run_dir} (step {step}, seed {seed}{of_class}) -> {out}")

