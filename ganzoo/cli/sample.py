"""`ganzoo sample`: images from a run directory (PyTorch) or an exported model (torch-free).

A path ending in .onnx goes through ``ganzoo.runtime``; a run directory through
the registry and PyTorch. The root group in ganzoo.cli turns a UserError into
one "Error: ..." line.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError
from .checkpoint_step import refuse_for_model, step_option


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path), metavar="RUN_DIR|MODEL.onnx")
@click.option("--n", "n", type=int, default=64, show_default=True, help="How many images.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="grid.png or samples.npz (default RUN_DIR/samples/seed-S.png, "
              "or MODEL-seed-S.png beside a model).")
@click.option("--generator", "generator_name", help="Which generator, when the architecture has several.")
@click.option("--truncation", type=float, help="Truncation psi (generators with a truncation input): 1 = none, "
              "lower trades variety for typical images.")
@click.option("--device", default="auto", show_default=True)
@step_option
def sample(run_dir, n, seed, out, generator_name, truncation, device, step):
    """Sample images from a run's latest checkpoint (EMA weights when present) or an exported MODEL.onnx."""
    from ..fileio import require_writable_file
    from ..outputs import SAMPLES, claim
    from ..runtime.model import truncation_psi

    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    onnx_model = run_dir.suffix.lower() == ".onnx"
    if out is None:
        out = run_dir.with_name(f"{run_dir.stem}-seed-{seed}.png") if onnx_model else run_dir / "samples" / f"seed-{seed}.png"
    if out.suffix.lower() not in (".png", ".npz"):
        raise UserError(f"--out must end in .png or .npz, got {out}")
    if truncation is not None:
        truncation = truncation_psi(truncation, "--truncation")
    if run_dir.exists():  # a missing RUN_DIR or model is its loader's message, which comes first
        claim(out, SAMPLES)  # a new path, or this command's own earlier output: never a run's file or a photo
        require_writable_file(out, "pass --out with a .png or .npz path in a folder you can write")
    if onnx_model:
        refuse_for_model(step)
        images, source = _sample_onnx(run_dir, n, seed, generator_name, truncation, device)
    else:
        images, source = _sample_run(run_dir, n, seed, generator_name, truncation, device, step)
    _write_samples(images, out)
    psi = f", truncation {truncation:g}" if truncation is not None else ""
    click.echo(f"{n} images from {run_dir} ({source}, seed {seed}{psi}) -> {out}")


def _sample_run(run_dir, n, seed, generator_name, truncation, device, step=None):
    from .. import rundir
    from ..sampling import generate
    from ..train.engine import pick_device

    run = rundir.open_run(run_dir)
    generators = run.arch.generators(run.resolved.config)
    name = generator_name or next(iter(generators))
    if name not in generators:
        raise UserError(f"unknown generator {name!r}; {run.arch.name} has: {', '.join(generators)}")
    if generators[name].translates:
        raise UserError(f"{run.arch.name}'s generator {name!r} translates images rather than sampling them; "
                        f"use: ganzoo translate {run_dir} IMAGE_OR_FOLDER...")
    values = {}
    if truncation is not None:
        if "truncation" not in generators[name].inputs:
            raise UserError(f"{run.arch.name}'s generator {name!r} has no truncation input "
                            f"(its inputs: {', '.join(generators[name].inputs)})")
        values["truncation"] = truncation
    torch_device = pick_device(device)
    nets, step = rundir.load_sampling_nets(run, torch_device, step=step)
    images = generate(nets[generators[name].role], generators[name], n, seed, torch_device, values=values)
    return images.numpy(), f"step {step}"


def _sample_onnx(path, n, seed, generator_name, truncation, device):
    """Through the torch-free runtime: nothing here imports torch."""
    from ..runtime import load

    model = load(path, device)
    if generator_name is not None and generator_name != model.metadata.generator:
        raise UserError(f"{path} holds generator {model.metadata.generator!r}, not {generator_name!r}")
    return model.sample(n, seed, truncation=truncation), "ONNX Runtime"


def _write_samples(images, out: Path) -> None:
    """uint8 (N, C, H, W) as a PNG grid or an npz of N x H x W x C, marked as samples (ganzoo.marks)."""
    import numpy as np

    from ..fileio import atomic_write, write_png
    from ..marks import npz_entries
    from ..outputs import SAMPLES
    from ..runtime.images import grid

    if out.suffix.lower() == ".npz":
        array = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
        atomic_write(out, lambda f: np.savez(f, images=array, **npz_entries(SAMPLES)))
    else:
        write_png(out, grid(images), mark=SAMPLES)
