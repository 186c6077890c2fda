"""`ganzoo export`: a run's generators to verified ONNX files.

Registered on the main group in ganzoo.cli, which turns a UserError into one
"Error: ..." line.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError
from .checkpoint_step import step_option


def parse_batch(value: str) -> int | None:
    if value == "dynamic":
        return None
    try:
        batch = int(value)
    except ValueError:
        batch = 0
    if batch < 1:
        raise UserError(f"--batch must be 'dynamic' or a positive integer, got {value!r}")
    return batch


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Output folder (default RUN_DIR/export).")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset version (13 to 20).")
@click.option("--batch", default="dynamic", show_default=True, help="'dynamic' or a fixed batch size.")
@click.option("--fp16", is_flag=True, help="fp16 weights and arithmetic (for GPU providers); inputs and outputs stay "
              "float32.")
@click.option("--generator", "generator_name", help="Export only this generator (default: all of them).")
@click.option("--tolerance", type=float, help="Largest |ONNX Runtime - PyTorch| accepted, in [-1, 1] image units "
              "(default 1e-3, or 5e-2 with --fp16).")
@step_option
def export(run_dir, out, opset, batch, fp16, generator_name, tolerance, step):
    """Export every generator of RUN_DIR to ONNX (EMA weights), verified against PyTorch before writing."""
    from .. import rundir
    from ..export import export_run
    from ..fileio import require_writable

    run = rundir.open_run(run_dir)
    out = out or run.path / "export"
    require_writable(out, "pass --out FOLDER in a place you can write")
    results = export_run(run, out, step=step, generator=generator_name, opset=opset, batch=parse_batch(batch), fp16=fp16,
                         tolerance=tolerance)
    for result in results:
        checks = ", ".join(f"{label} {error:.1e}" for label, error in result.errors.items())
        click.echo(f"{result.name}: max |onnx - torch| {checks} (tolerance {result.tolerance:g}) -> "
                   f"{result.path} ({result.size_bytes / 2**20:.1f} MiB)")
