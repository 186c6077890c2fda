"""`ganzoo sample`: images from a run directory (PyTorch) or an exported model (torch-free).

A path ending in .onnx goes through ``ganzoo.runtime``; a run directory through
the registry and PyTorch. The root group in ganzoo.cli turns a UserError into
one "Error: ..." line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from ..errors import UserError
from .checkpoint_step import refuse_for_model, step_option


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path), metavar="RUN_DIR|MODEL.onnx")
@click.option("--n", "n", type=int, help="How many images [default: 64; a conditional generator's grid without "
              "--class: 8 per class, fewer beyond 32 classes].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--class", "class_", metavar="NAME|N", help="Only this class (conditional generators): its name as "
              "`ganzoo info` lists it, or its index. Without it a conditional generator's grid has one row per "
              "class, in class order.")
@click.option("--out", type=click.Path(path_type=Path), help="grid.png or samples.npz (default RUN_DIR/samples/seed-S.png, "
              "or MODEL-seed-S.png beside a model); a conditional generator's .npz holds labels and classes too.")
@click.option("--generator", "generator_name", help="Which generator, when the architecture has several.")
@click.option("--truncation", type=float, help="Truncation psi (generators with a truncation input): 1 = none, "
              "lower trades variety for typical images.")
@click.option("--device", default="auto", show_default=True)
@step_option
def sample(run_dir, n, seed, class_, out, generator_name, truncation, device, step):
    """Sample images from a run's latest checkpoint (EMA weights when present) or an exported MODEL.onnx."""
    from ..fileio import require_writable_file
    from ..outputs import SAMPLES, claim
    from ..runtime.model import truncation_psi

    if n is not None and n < 1:
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
        images, plan, source = _sample_onnx(run_dir, n, seed, class_, generator_name, truncation, device)
    else:
        images, plan, source = _sample_run(run_dir, n, seed, class_, generator_name, truncation, device, step)
    _write_samples(images, out, plan)
    psi = f", truncation {truncation:g}" if truncation is not None else ""
    click.echo(f"{plan.n} images{plan.note} from {run_dir} ({source}, seed {seed}{psi}) -> {out}")


@dataclass(frozen=True)
class Plan:
    """What to draw: how many images, their classes (None: unconditional) and the grid's row length."""

    n: int
    labels: "np.ndarray | None" = None
    classes: "tuple[str, ...] | None" = None
    nrow: int | None = None  # None: the square grid
    note: str = ""  # how the echoed line describes the classes


DEFAULT_N = 64


def default_per_class(count: int) -> int:
    """Images per class in the default grid: 8, fewer beyond 32 classes (at least 1), so it stays near 256."""
    return max(1, min(8, 256 // count))


def plan_labels(classes, n: int | None, class_: str | None, source: str, not_conditional: str) -> Plan:
    """The classes of the images: one class for all (``--class``), one grid row per class (a conditional
    generator by default, ``class_rows``), or none; ``classes`` are the generator's names (None: unconditional)."""
    import numpy as np

    from ..runtime.classes import class_index
    from ..runtime.latents import class_rows

    if classes is None:
        if class_ is not None:
            raise UserError(not_conditional)
        return Plan(n or DEFAULT_N)
    classes = tuple(classes)
    if class_ is not None:
        index = class_index(class_, classes, "--class", source)
        n = n or DEFAULT_N
        return Plan(n, np.full(n, index, dtype=np.int64), classes, note=f" of class {index} ({classes[index]})")
    n = n or len(classes) * default_per_class(len(classes))
    labels, per_row = class_rows(n, len(classes))
    return Plan(n, labels.astype(np.int64), classes, per_row, f", one row per class ({len(classes)} classes),")


def _sample_run(run_dir, n, seed, class_, generator_name, truncation, device, step=None):
    from .. import rundir
    from ..runtime.classes import default_names
    from ..sampling import generate
    from ..train.engine import pick_device

    run = rundir.open_run(run_dir)
    generators = run.arch.generators(run.resolved.config)
    name = generator_name or next(iter(generators))
    if name not in generators:
        raise UserError(f"unknown generator {name!r}; {run.arch.name} has: {', '.join(generators)}")
    spec = generators[name]
    if spec.translates:
        raise UserError(f"{run.arch.name}'s generator {name!r} translates images rather than sampling them; "
                        f"use: ganzoo translate {run_dir} IMAGE_OR_FOLDER...")
    part = getattr(spec.latents, "label_part", None)
    classes = None
    if part is not None:  # the run's names (config.json) when they fit the generator's label input
        named = rundir.run_classes(run)
        classes = named if named is not None and len(named) == part.num_classes else default_names(part.num_classes)
    plan = plan_labels(classes, n, class_, str(run_dir),
                       f"--class: {run.arch.name}'s generator {name!r} is not conditional (its inputs: "
                       f"{', '.join(spec.inputs)}); sample without --class")
    values = {}
    if truncation is not None:
        if "truncation" not in spec.inputs:
            raise UserError(f"{run.arch.name}'s generator {name!r} has no truncation input "
                            f"(its inputs: {', '.join(spec.inputs)})")
        values["truncation"] = truncation
    torch_device = pick_device(device)
    nets, step = rundir.load_sampling_nets(run, torch_device, step=step)
    images = generate(nets[spec.role], spec, plan.n, seed, torch_device, values=values, labels=plan.labels)
    return images.numpy(), plan, f"step {step}"


def _sample_onnx(path, n, seed, class_, generator_name, truncation, device):
    """Through the torch-free runtime: nothing here imports torch."""
    from ..runtime import load

    model = load(path, device)
    meta = model.metadata
    if generator_name is not None and generator_name != meta.generator:
        raise UserError(f"{path} holds generator {meta.generator!r}, not {generator_name!r}")
    model.require_sampler()
    plan = plan_labels(meta.classes, n, class_, str(path),
                       f"--class: {path}'s generator {meta.architecture}/{meta.generator} is not conditional "
                       f"(its inputs: {', '.join(model.input_names)}); sample without --class")
    return model.sample(plan.n, seed, truncation=truncation, labels=plan.labels), plan, "ONNX Runtime"


def _write_samples(images, out: Path, plan: Plan) -> None:
    """uint8 (N, C, H, W) as a PNG grid (rows of ``plan.nrow``) or an npz of N x H x W x C, with a conditional
    generator's ``labels`` (int64, N) and ``classes`` (their names by index), marked as samples (ganzoo.marks)."""
    import numpy as np

    from ..fileio import atomic_write, write_png
    from ..marks import npz_entries
    from ..outputs import SAMPLES
    from ..runtime.images import grid

    if out.suffix.lower() == ".npz":
        array = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
        labels = {} if plan.labels is None else {"labels": plan.labels, "classes": np.array(plan.classes, dtype=str)}
        atomic_write(out, lambda f: np.savez(f, images=array, **labels, **npz_entries(SAMPLES)))
    else:
        write_png(out, grid(images, plan.nrow), mark=SAMPLES)
