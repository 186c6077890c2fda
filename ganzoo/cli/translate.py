"""`ganzoo translate`: image-to-image generators over files and folders, keeping file names.

A path ending in .onnx goes through ``ganzoo.runtime``; a run directory through
the registry and PyTorch. Both then take the same path here: inputs collected,
output paths checked (never over an input or any file but an earlier
translation, and over those only with --overwrite), every input's size
checked against --max-pixels, and only then anything translated and written.
The root group in ganzoo.cli turns a UserError into one "Error: ..." line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click

from ..errors import UserError
from .checkpoint_step import refuse_for_model, step_option
from ..runtime.image_files import DEFAULT_MAX_PIXELS


@dataclass
class Translator:
    """A generator and the input images it takes: channels, default size, size rule."""

    label: str
    source: str  # domain names, e.g. "A" and "B"
    target: str
    channels: int
    resolution: int  # the training resolution: the default shorter side, or the only size when size_multiple is None
    size_multiple: int | None
    run: Callable  # float32 (1, C, H, W) in [-1, 1] -> uint8 (C, H, W)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path), metavar="RUN_DIR|MODEL.onnx")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--direction", help="a2b (the default) or b2a; a model file translates in the one direction it was "
              "exported for.")
@click.option("--out", type=click.Path(path_type=Path), help="Output folder (default RUN_DIR/translations/DIRECTION, "
              "or MODEL-translations/ beside a model). It may not hold inputs at the names outputs get.")
@click.option("--overwrite", is_flag=True, help="Replace earlier translations at the output names (never an input, "
              "and never a file that is not a translation ganzoo wrote).")
@click.option("--size", type=int,
              help="Shorter side in pixels (default: the training resolution; 0 keeps each image's size).")
@click.option("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, show_default=True,
              help="Refuse an input that declares, or would be scaled to, more pixels (width x height) than this.")
@click.option("--device", default="auto", show_default=True)
@step_option
def translate(run_dir, inputs, direction, out, overwrite, size, max_pixels, device, step):
    """Translate images and folders of images with a run's generator or an exported MODEL.onnx, keeping file names."""
    from ..runtime.image_files import bad_files_error
    from ..runtime.translation import (checked_size, collect_inputs, declared_size, load_for_translation,
                                       output_paths, save_translation)

    if size is not None and size < 0:
        raise UserError(f"--size must be positive (or 0 to keep each image's size), got {size}")
    if max_pixels < 1:
        raise UserError(f"--max-pixels must be positive, got {max_pixels}")
    if run_dir.suffix.lower() == ".onnx":
        refuse_for_model(step)
        net = _onnx_translator(run_dir, direction, device)
        out = out or run_dir.with_name(f"{run_dir.stem}-translations")
    else:
        net = _run_translator(run_dir, direction or "a2b", device, step)
        out = out or run_dir / "translations" / f"{net.source.lower()}2{net.target.lower()}"
    files = collect_inputs(list(inputs))
    targets = output_paths(files, out, overwrite)
    shorter = net.resolution if size is None else (size or None)
    bad = []
    for path, _ in files:  # headers only: every unreadable or oversized input is named before anything is written
        try:
            checked_size(path, *declared_size(path), shorter, net.size_multiple, net.resolution, max_pixels)
        except UserError as error:
            bad.append(error)
    if bad:
        raise bad_files_error(bad, "nothing was translated")
    for (path, _), target in zip(files, targets):
        array = load_for_translation(path, net.channels, shorter, net.size_multiple, net.resolution, max_pixels)
        save_translation(net.run(array), target)
    click.echo(f"{len(files)} image(s) translated {net.source} -> {net.target} by {net.label} -> {out}")


def _run_translator(run_dir, direction, device, step=None) -> Translator:
    """A run's PyTorch generator for ``direction``."""
    import torch

    from .. import rundir
    from ..sampling import to_uint8
    from ..train.engine import pick_device

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
    nets, step = rundir.load_sampling_nets(run, torch_device, step=step)
    net = nets[spec.role]

    @torch.no_grad()
    def run_net(array):
        return to_uint8(net(torch.from_numpy(array).to(torch_device)))[0].cpu().numpy()

    return Translator(f"{run_dir} (step {step})", source, target, data_spec.channels, data_spec.resolution,
                      spec.size_multiple, run_net)


def _onnx_translator(path, direction, device) -> Translator:
    """An exported generator through the torch-free runtime."""
    from ..runtime import load

    model = load(path, device)
    meta = model.metadata
    if not meta.translates:
        raise UserError(f"{path} samples images rather than translating them; use: ganzoo sample {path}")
    source, target = meta.translates
    if direction is not None and direction.lower() != f"{source}2{target}".lower():
        raise UserError(f"{path} translates {source.lower()}2{target.lower()}, not {direction!r}; "
                        f"use the model exported for {direction.lower()}")
    return Translator(f"{path} (ONNX Runtime)", source, target, meta.channels, meta.resolution, meta.size_multiple,
                      model.translate)
