"""`ganzoo style-mix`: the style-mixing grid of architectures with per-layer styles.

Registered on the main group in cli.py, which turns a UserError into one
"Error: ..." line.
"""

from __future__ import annotations

from pathlib import Path

import click

from .errors import UserError


@click.command("style-mix")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--rows", type=int, default=4, show_default=True, help="Latents that give the coarse styles.")
@click.option("--cols", type=int, default=6, show_default=True, help="Latents that give the fine styles.")
@click.option("--seed", type=int, default=0, show_default=True, help="Rows use SEED, columns SEED + 1.")
@click.option("--coarse", type=int, help="How many style layers count as coarse (default: the 4x4 and 8x8 blocks').")
@click.option("--truncation", type=float, default=1.0, show_default=True, help="Truncation psi for every latent.")
@click.option("--out", type=click.Path(path_type=Path), help="PNG (default RUN_DIR/samples/style-mix-seed-S.png).")
@click.option("--device", default="auto", show_default=True)
def style_mix(run_dir, rows, cols, seed, coarse, truncation, out, device):
    """Cell (r, c) takes row r's coarse styles and column c's fine styles; sources along the edges."""
    from . import rundir
    from .fileio import write_png
    from .sampling import grid
    from .train.engine import pick_device

    if rows < 1 or cols < 1:
        raise UserError(f"--rows and --cols must be at least 1, got {rows} and {cols}")
    out = out or run_dir / "samples" / f"style-mix-seed-{seed}.png"
    if out.suffix.lower() != ".png":
        raise UserError(f"--out must end in .png, got {out}")
    run = rundir.open_run(run_dir)
    torch_device = pick_device(device)
    nets, step = rundir.load_sampling_nets(run, torch_device)
    try:
        images, nrow = run.arch.style_mix(nets, run.resolved.config, rows, cols, seed, torch_device,
                                          truncation=truncation, coarse=coarse)
    except NotImplementedError as error:
        raise UserError(str(error)) from None
    except ValueError as error:
        raise UserError(f"--coarse: {error}") from None
    write_png(out, grid(images, nrow))
    click.echo(f"style mixing {rows} x {cols} from {run_dir} (step {step}, seed {seed}) -> {out}")
