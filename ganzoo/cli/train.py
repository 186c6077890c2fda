"""`ganzoo train`: a new run, or the continuation of one, in one run directory."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ..api import UNPAIRED
from ..data import DEFAULT_DATASET
from ..errors import UserError


@click.command()
@click.argument("arch")
@click.option("--data", help=f"{DEFAULT_DATASET} (embedded, the default), a catalog name (ganzoo data list) or a folder.")
@click.option("--preset", help="Named overrides from the architecture (default: one named like the data; "
              "'smoke' is its smallest config).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any config key (repeatable).")
@click.option("--steps", type=int, help="Total training steps of the run.")
@click.option("--epochs", type=float, help="Run length in passes over the data instead of --steps.")
@click.option("--batch-size", type=int)
@click.option("--out", type=click.Path(path_type=Path), help="Run directory (default runs/ARCH-TIME).")
@click.option("--device", help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]))
@click.option("--compile/--no-compile", "compile_", default=None, help="torch.compile the main phases.")
@click.option("--resume", help="A run directory to continue, or 'auto' to continue --out if it has a checkpoint.")
@click.option("--seed", type=int)
@click.option("--sample-every", type=int)
@click.option("--checkpoint-every", type=int)
@click.option("--skip-bad-files", is_flag=True, help="Skip unreadable images (each is reported) instead of stopping.")
@click.option("--allow-data-change", is_flag=True, help="With --resume: continue although the data changed since "
              "the run started (the new data's fingerprint is recorded).")
def train(arch, data, preset, sets, steps, epochs, batch_size, out, device, precision, compile_, resume, seed,
          sample_every, checkpoint_every, skip_bad_files, allow_data_change):
    """Train ARCH; everything the run makes goes into one run directory."""
    from .. import config as config_mod
    from .. import registry, rundir
    from ..train.checkpoint import latest_checkpoint

    if steps is not None and epochs is not None:
        raise UserError("give --steps or --epochs, not both")
    if steps is not None and resume:
        epochs = 0.0  # an explicit step count wins over --epochs of the run being resumed
    flags = {"steps": steps, "epochs": epochs, "batch_size": batch_size, "device": device, "precision": precision,
             "compile": compile_, "seed": seed, "sample_every": sample_every, "checkpoint_every": checkpoint_every}
    set_values = config_mod.split_assignments(list(sets))
    if resume == "auto":
        if out is None:
            raise UserError("--resume auto needs --out RUN_DIR")
        resume = str(out) if latest_checkpoint(out) is not None else None
    if resume:
        run = rundir.open_run(Path(resume))
        if run.arch.name != arch:
            raise UserError(f"{resume} is a {run.arch.name} run, not {arch}")
        resolved = _resumed_config(run, data, preset, set_values, flags)
        run_dir, instance, entry = run.path, run.arch, run
    else:
        instance, entry = registry.get_with_entry(arch)
        resolved = config_mod.resolve(instance, preset=preset, data=data, sets=set_values, flags=flags)
        run_dir = out or Path("runs") / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}"
        if (run_dir / rundir.CONFIG).exists():
            raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another --out")
    _train(instance, resolved, run_dir, entry, skip_bad_files=skip_bad_files, allow_data_change=allow_data_change)


def _resumed_config(run, data, preset, set_values, flags):
    """The run's own config; only trainer options (steps, device, cadence...) may change on resume."""
    from dataclasses import replace

    from ..config import TrainOptions, apply_overrides, field_types

    if data is not None and data != run.resolved.data:
        raise UserError(f"cannot change --data when resuming (the run uses {run.resolved.data or DEFAULT_DATASET})")
    if preset is not None and preset != run.resolved.preset:
        raise UserError(f"cannot change --preset when resuming (the run uses {run.resolved.preset})")
    changes = {**set_values, **{k: v for k, v in flags.items() if v is not None}}
    train_keys = set(field_types(TrainOptions))
    for key, value in changes.items():
        if key not in train_keys and str(value) != str(getattr(run.resolved.config, key, object())):
            raise UserError(f"cannot change {key!r} when resuming; start a new run to change the architecture's config")
    _, opts = apply_overrides(run.arch, run.resolved.config, run.resolved.train,
                              {k: v for k, v in changes.items() if k in train_keys})
    return replace(run.resolved, train=opts)


def _train(arch, resolved, run_dir: Path, entry, skip_bad_files: bool = False, allow_data_change: bool = False):
    """Load the data, build the trainer, record config.json and run; ``entry`` is a Run when resuming."""
    from dataclasses import replace

    from .. import rundir
    from ..data import load_data
    from ..data.fingerprint import fingerprint_for_run
    from ..data.run_location import refuse_run_inside_data
    from ..train.trainer import Trainer

    spec = arch.data_spec(resolved.config)
    skipped = []

    def report(error: UserError) -> None:
        skipped.append(error)
        click.echo(f"skipped: {error}", err=True)

    refuse_run_inside_data(run_dir, resolved.data)
    fingerprint = fingerprint_for_run(resolved.data, spec, entry.record if isinstance(entry, rundir.Run) else None,
                                      allow_data_change, run_dir / rundir.CONFIG)
    dataset = load_data(resolved.data, spec, on_bad=report if skip_bad_files else None,
                        max_pixels=resolved.train.max_image_pixels)
    if skipped:
        click.echo(f"{len(skipped)} unreadable file(s) skipped", err=True)
    resuming = isinstance(entry, rundir.Run)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(arch, resolved, dataset, run_dir, resume=resuming)
    fitted = _changed_fields(resolved.config, trainer.cfg)
    # --epochs has become a step count, and settings that depend on the data are fixed (fit_to_data)
    resolved = replace(resolved, train=trainer.opts, config=trainer.cfg)
    if resuming:
        rundir.record_train_options(entry, resolved)
    else:
        rundir.write_config(run_dir, resolved, entry, data_fingerprint=fingerprint)
    opts = resolved.train
    unpaired = spec.kind == UNPAIRED
    counts = f"{len(dataset.A)} + {len(dataset.B)}" if unpaired else f"{len(dataset.images)}"
    length = f"{opts.epochs:g} epochs = {opts.steps}" if opts.epochs else f"{opts.steps}"
    click.echo(f"{arch.name}: {counts} images from {dataset.name} at "
               f"{spec.resolution}x{spec.resolution}x{spec.channels}; preset {resolved.preset or 'none'}; "
               f"{trainer.device} {opts.precision}{' compiled' if opts.compile else ''}; "
               f"steps {trainer.step} -> {length}, batch {resolved.config.batch_size}")
    if unpaired:
        click.echo(f"domains: {dataset.describe()}")
    if fitted:
        click.echo(f"fitted to the data: {fitted}")
    click.echo(f"run directory: {run_dir}")
    result = trainer.run()
    click.echo(f"sample grid:   {result.sample}")
    click.echo(f"checkpoint:    {result.checkpoint}")
    click.echo(f"run directory: {result.run_dir} (step {result.step})")
    if result.stopped_by:
        click.echo(f"stopped by {result.stopped_by}; continue with: ganzoo train {arch.name} --resume {run_dir}")
        sys.exit(130 if result.stopped_by == "SIGINT" else 143)


def _changed_fields(before, after) -> str:
    """'key=value, ...' for the config fields that differ (what fit_to_data decided)."""
    import dataclasses

    changed = [f"{f.name}={getattr(after, f.name)}" for f in dataclasses.fields(after)
               if getattr(before, f.name) != getattr(after, f.name)]
    return ", ".join(changed)
