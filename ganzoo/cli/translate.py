"""`ganzoo translate`: image-to-image generators over files and folders, keeping file names.

A path ending in .onnx goes through ``ganzoo.runtime``; a run directory through
the registry and PyTorch. The root group in ganzoo.cli turns a UserError into
one "Error: ..." line.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError


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
