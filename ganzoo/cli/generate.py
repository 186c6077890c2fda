"""`ganzoo sample` and `ganzoo translate`: images from a run directory (PyTorch) or an exported model.

A path ending in .onnx goes through the torch-free ``ganzoo.runtime``; a run
directory through the registry and PyTorch. Registered on the main group in
cli.py, which turns a UserError into one "Error: ..." line.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError


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
def sample(run_dir, n, seed, out, generator_name, truncation, device):
    """Sample images from a run's latest checkpoint (EMA weights when present) or an exported MODEL.onnx."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    onnx_model = run_dir.suffix.lower() == ".onnx"
    if out is None:
        out = run_dir.with_name(f"{run_dir.stem}-seed-{seed}.png") if onnx_model else run_dir / "samples" / f"seed-{seed}.png"
    if out.suffix.lower() not in (".png", ".npz"):
        raise UserError(f"--out must end in .png or .npz, got {out}")
    if onnx_model:
        images, source = _sample_onnx(run_dir, n, seed, generator_name, truncation, device)
    else:
        images, source = _sample_run(run_dir, n, seed, generator_name, truncation, device)
    _write_samples(images, out)
    psi = f", truncation {truncation:g}" if truncation is not None else ""
    click.echo(f"{n} images from {run_dir} ({source}, seed {seed}{psi}) -> {out}")


def _sample_run(run_dir, n, seed, generator_name, truncation, device):
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
    nets, step = rundir.load_sampling_nets(run, torch_device)
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
    """uint8 (N, C, H, W) as a PNG grid or an npz of N x H x W x C."""
    import numpy as np

    from ..fileio import atomic_write, write_png
    from ..runtime.images import grid

    if out.suffix.lower() == ".npz":
        array = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
        atomic_write(out, lambda f: np.savez(f, images=array))
    else:
        write_png(out, grid(images))


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path), metavar="RUN_DIR|MODEL.onnx")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--direction", help="a2b (the default) or b2a; a model file translates in the one direction it was "
              "exported for.")
@click.option("--out", type=click.Path(path_type=Path), help="Output folder (default RUN_DIR/translations/DIRECTION, "
              "or MODEL-translations/ beside a model).")
@click.option("--size", type=int, help="Shorter side in pixels (default: the training resolution; 0 keeps each image's size).")
@click.option("--device", default="auto", show_default=True)
def translate(run_dir, inputs, direction, out, size, device):
    """Translate images and folders of images with a run's generator or an exported MODEL.onnx, keeping file names."""
    from ..runtime.translation import collect_inputs, save_translation

    if size is not None and size < 0:
        raise UserError(f"--size must be positive (or 0 to keep each image's size), got {size}")
    if run_dir.suffix.lower() == ".onnx":
        translator, label, source, target = _onnx_translator(run_dir, direction, device)
        out = out or run_dir.with_name(f"{run_dir.stem}-translations")
    else:
        translator, label, source, target = _run_translator(run_dir, direction or "a2b", device)
        out = out or run_dir / "translations" / f"{source.lower()}2{target.lower()}"
    files = collect_inputs(list(inputs))
    for path, name in files:
        save_translation(translator(path, size), out / name)
    click.echo(f"{len(files)} image(s) translated {source} -> {target} by {label} -> {out}")


def _run_translator(run_dir, direction, device):
    """(path, size) -> uint8 (C, H, W) with a run's PyTorch generator."""
    import torch

    from .. import rundir
    from ..sampling import to_uint8
    from ..train.engine import pick_device
    from ..runtime.translation import load_for_translation

    run = rundir.open_run(run_dir)
    translators = {g.translates: g for g in run.arch.generators(run.resolved.config).values() if g.translates}
    if not translators:
        raise UserError(f"{run.arch.name} has no image-to-image generator; use ganzoo sample {run_dir}")
    source, sep, target = direction.upper().partition("2")
    if not sep or (source, target) not in translators:
        known = ", ".join(f"{a.lower()}2{b.lower()}" for a, b in translators)
        raise UserError(f"unknown --direction {direction!r}; {run.arch.name} translates: {known}")
    spec = translators[(source, target)]
    data_spec = run.arch.data_spec(run.resolved.config)
    torch_device = pick_device(device)
    nets, step = rundir.load_sampling_nets(run, torch_device)
    net = nets[spec.role]

    @torch.no_grad()
    def translate_one(path, size):
        size = data_spec.resolution if size is None else (size or None)
        array = load_for_translation(path, data_spec.channels, size, spec.size_multiple, fixed=data_spec.resolution)
        return to_uint8(net(torch.from_numpy(array).to(torch_device)))[0].cpu().numpy()

    return translate_one, f"{run_dir} (step {step})", source, target


def _onnx_translator(path, direction, device):
    """(path, size) -> uint8 (C, H, W) through the torch-free runtime."""
    from ..runtime import load

    model = load(path, device)
    meta = model.metadata
    if not meta.translates:
        raise UserError(f"{path} samples images rather than translating them; use: ganzoo sample {path}")
    source, target = meta.translates
    if direction is not None and direction.lower() != f"{source}2{target}".lower():
        raise UserError(f"{path} translates {source.lower()}2{target.lower()}, not {direction!r}; "
                        f"use the model exported for {direction.lower()}")

    def translate_one(image_path, size):
        size = meta.resolution if size is None else (size or None)
        return model.translate(model.load_image(image_path, size))

    return translate_one, f"{path} (ONNX Runtime)", source, target
