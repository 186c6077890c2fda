"""`ganzoo train`: a new run, or the continuation of one, in one run directory."""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from pathlib import Path

import click

from ..api import UNPAIRED
from ..data import DEFAULT_DATASET
from ..errors import UserError, printable
from ..signals import exit_status, reports_stops


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
@click.option("--resume", help="A run directory to continue (from its newest checkpoint, or from step 0 if it has "
              "none), or 'auto' to continue --out if it holds a run and start it otherwise.")
@click.option("--init", "init", metavar="RUN_DIR", help="Start a new run from RUN_DIR's weights (its newest checkpoint, "
              "or an imported one) with fresh optimizers at step 0: fine-tuning. The keys that shape the networks "
              "stay as RUN_DIR has them.")
@click.option("--seed", type=int)
@click.option("--sample-every", type=int)
@click.option("--checkpoint-every", type=int)
@click.option("--eval-every", type=int, help="Score the EMA generator every N steps (and at the end); "
              "checkpoints/best links to the best-scoring checkpoint. 0: never (the default).")
@click.option("--eval-metric", help="What ranks checkpoints: fd-fmnist (default on the embedded data), fid (default "
              "otherwise), fd-dinov2 or kid; for a conditional run also intra-fid, intra-fd-dinov2, intra-fd-fmnist "
              "or class-accuracy (higher is better).")
@click.option("--eval-n", type=int, help="Images per evaluation (default: the real images there are, at most 10,000).")
@click.option("--eval-weights", help="The weights file of the extractor --eval-metric uses (default: its caches, "
              "else a download when online).")
@click.option("--on-nonfinite", type=click.Choice(["stop", "rollback"]), help="After max_nonfinite consecutive "
              "skipped steps of a phase: stop (default), or roll back to the last good checkpoint with a lower lr "
              "(at most max_rollbacks times).")
@click.option("--skip-bad-files", is_flag=True, help="Skip unreadable images (each is reported) instead of stopping.")
@click.option("--allow-data-change", is_flag=True, help="With --resume: continue although the data changed since "
              "the run started (the new data's fingerprint is recorded).")
@click.option("--nproc-per-node", type=click.IntRange(min=1), help="Train with N processes on this machine "
              "(one per GPU, or CPU processes with gloo) through torchrun; --batch-size stays the global batch.")
@click.option("--cond", is_flag=True, help="Class-conditional: condition on the data's classes (a folder with one "
              "subfolder per class, stylegan2-ada's dataset.json, or the embedded data's ten), so `ganzoo sample "
              "--class` draws the class asked for.")
def train(arch, data, preset, sets, steps, epochs, batch_size, out, device, precision, compile_, resume, seed,
          sample_every, checkpoint_every, eval_every, eval_metric, eval_n, eval_weights, skip_bad_files, allow_data_change,
          nproc_per_node, on_nonfinite, init, cond):
    """Train ARCH; everything the run makes goes into one run directory."""
    from .. import config as config_mod
    from .. import registry, rundir
    from ..conditioning import wants_labels
    from ..train.distributed import RefusedOnEveryRank, World, check_world_size, env_world_size

    if steps is not None and epochs is not None:
        raise UserError("give --steps or --epochs, not both")
    if nproc_per_node is not None and env_world_size() > 1:
        raise UserError("--nproc-per-node starts torchrun itself; under torchrun leave it out")
    flags = {"steps": steps, "epochs": epochs, "batch_size": batch_size, "device": device, "precision": precision,
             "compile": compile_, "seed": seed, "sample_every": sample_every, "checkpoint_every": checkpoint_every,
             "eval_every": eval_every, "eval_metric": eval_metric, "eval_n": eval_n, "eval_weights": eval_weights,
             "on_nonfinite": on_nonfinite}
    set_values = config_mod.split_assignments(list(sets))
    world = World() if nproc_per_node is not None else World.from_env()
    try:
        # Rank 0 alone looks at (and probes) the run directory; every rank follows its decision.
        settled, refusal = (_attempt(lambda: _unclaimed(_settled(arch, out, resume, init))) if world.is_writer
                            else (None, None))
        world.agree(refusal)
        resume, run_dir = world.broadcast(settled)

        # the weights the run starts from (InitSource), warnings about them, and the classes they were trained on
        start: list = [None, [], None]

        def configured():
            if resume:
                run = rundir.open_run(Path(resume))
                start[0] = _restart_source(run)
                found = run.arch, _resumed_config(run, data, preset, set_values, flags), run
            else:
                instance, entry = registry.get_with_entry(arch)
                found = instance, (_init_config(instance, Path(init), start, preset, data, set_values, flags)
                                   if init else config_mod.resolve(instance, preset=preset, data=data,
                                                                   sets=set_values, flags=flags)), entry
            wants_labels(found[0], found[1].config, cond)  # --cond for an architecture that cannot be: refused now
            return found

        found, refusal = _attempt(configured)
        if refusal is None:
            refusal = _attempt(lambda: check_world_size(found[0], found[1].config, nproc_per_node or world.size))[1]
        world.agree(refusal)  # every rank refuses the same arguments alike: rank 0 alone says so
        instance, resolved, entry = found
        checks = dict(skip_bad_files=skip_bad_files, allow_data_change=allow_data_change, cond=cond,
                      init_classes=start[2] if init else NO_INIT)
        if nproc_per_node is not None:
            _refuse_nonfinite_start(resume, start[0])
            _launch(nproc_per_node, instance, resolved, run_dir, entry, resume, checks)
        _train(instance, resolved, run_dir, entry, **checks, world=world, init=start[0], init_warnings=start[1])
    except (SystemExit, RefusedOnEveryRank):  # every rank stopped at the same point (a signal, a refusal)
        world.close()
        raise
    except BaseException:
        world.close(wait=False)
        raise
    else:
        world.close()


def _refuse_nonfinite_start(resume: str | None, init) -> None:
    """Before torchrun starts: weights with NaN or inf that the run would start from are refused here, once,
    as every rank would refuse them (Trainer._load, initial_weights.load_initial)."""
    from ..train import checkpoint as ckpt
    from ..train.initial_weights import refuse_nonfinite

    if init is not None:
        refuse_nonfinite(init)
    elif resume:
        ckpt.refuse_nonfinite_resume(Path(resume))


NO_INIT = object()  # init_classes of a run that does not start from --init (an --init source may have None)


def _attempt(check):
    """(check()'s value, None), or (None, the UserError it raised): for World.agree."""
    try:
        return check(), None
    except UserError as error:
        return None, error


def _settled(arch: str, out: Path | None, resume: str | None, init: str | None = None):
    """(the run to resume or None, the run directory); a UserError refuses them.

    Decided once (by rank 0 or the launcher) and handed to every rank, so that
    no rank sees a config.json another rank has just written. A default run
    directory is named by the time, so it too is chosen once.
    """
    from .. import fileio, rundir

    if init and resume:
        raise UserError("--init starts a new run from another run's weights and --resume continues a run: give one")
    if resume == "auto":
        if out is None:
            raise UserError("--resume auto needs --out RUN_DIR")
        resume = str(out) if (out / rundir.CONFIG).exists() else None
    if resume:
        run = rundir.open_run(Path(resume))
        if run.arch.name != arch:
            raise UserError(f"{resume} is a {run.arch.name} run, not {arch}")
        rundir.refuse_resuming_import(run)
        fileio.require_writable(run.path, "a run continues in its own folder: make it writable or resume a copy")
        return str(run.path), run.path
    run_dir = out or Path("runs") / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / rundir.CONFIG).exists():
        raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another --out")
    from ..outputs import refuse_inside_run

    refuse_inside_run(run_dir)  # RUN/checkpoints/x would be taken for part of RUN by every command on it
    fileio.require_writable(run_dir, "pick another --out")
    return None, run_dir


def _unclaimed(settled):
    """``settled`` (from _settled), unless another process trains its run directory now.

    Refused here, before the data loads and before --nproc-per-node starts any process; the writer
    still takes the run's lock before its first write (_sole_writer).
    """
    from .. import run_lock

    run_lock.refuse_if_held(settled[1])
    return settled


def _launch(nproc: int, arch, resolved, run_dir: Path, entry, resume: str | None, checks: dict) -> None:
    """Run this same command under torchrun with ``nproc`` processes, then exit with their status.

    Everything refusable is refused first, once, here: the arguments above,
    then every check a run makes before touching its folder (_prepare: data,
    its fingerprint, the run's place), so a refusal is one ``Error:`` line
    before any process starts, not a rank's failure in torchrun's report. The children get the run
    directory settled here (--out, or --resume with the run's path). A stop
    signal to this process goes to torchrun, which passes it to every rank:
    they stop at the same step, rank 0 checkpoints, and this says so in one
    line and exits 128 + N. torchrun and the ranks die with this process
    (ganzoo.lifeline), however it dies.
    """
    from ..train.distributed import World
    from ..train.torchrun import run_job

    device = World(size=nproc).device(resolved.train.device)  # a device several processes cannot share is refused now
    _prepare(arch, resolved, run_dir, entry, world=World(), **checks)  # the data is loaded again by the ranks
    if device.type == "cpu":
        _warn_beyond_cores(nproc)
    status, stop = run_job(nproc, _arguments_without_nproc(run_dir, resume))
    if stop is None:
        sys.exit(status)
    if (run_dir / "config.json").is_file():  # the run exists (a step completed, or it was resumed)
        click.echo(f"stopped by {stop}; continue with: ganzoo train {arch.name} --resume {run_dir}")
    else:  # stopped before a first step: as one process, nothing was kept
        click.echo(f"stopped by {stop}", err=True)
    sys.exit(exit_status(stop))


def _warn_beyond_cores(nproc: int) -> None:
    """One line when CPU ranks outnumber the cores this process may use: they would share them, slowly."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores and nproc > cores:
        click.echo(f"warning: --nproc-per-node {nproc} is more than the {cores} CPU core{'s' * (cores > 1)} "
                   f"here: the processes share them, so training is slower than with {cores}", err=True)


def _arguments_without_nproc(run_dir: Path, resume: str | None) -> list[str]:
    """This invocation's own options (as given), less --nproc-per-node, with the settled run directory."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    args = [ctx.params["arch"]]
    for param in ctx.command.params:
        name = param.name
        if name in ("arch", "nproc_per_node", "out", "resume"):
            continue
        if ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[name]
        if param.is_flag and param.secondary_opts:
            args.append(param.opts[0] if value else param.secondary_opts[0])
        elif param.is_flag:
            if value:
                args.append(param.opts[0])
        elif param.multiple:
            for item in value:
                args += [param.opts[0], str(item)]
        else:
            args += [param.opts[0], str(value)]
    return args + (["--resume", str(resume)] if resume else ["--out", str(run_dir)])


def _init_config(instance, source_dir: Path, start: list, preset, data, set_values, flags):
    """--init: the source's checkpoint (into ``start``) and the new run's config built on the source's."""
    from .. import rundir
    from ..train.initial_weights import find_source, init_config

    try:
        source_run = rundir.open_run(source_dir)
    except UserError as error:
        raise UserError(f"--init: {error}") from None
    if source_run.arch.name != instance.name:
        raise UserError(f"--init {source_dir} is a {source_run.arch.name} run, not {instance.name}")
    start[0], start[1] = find_source(source_dir)
    start[2] = rundir.run_classes(source_run)
    return init_config(instance, source_run, preset=preset, data=data, sets=set_values, flags=flags)


def _restart_source(run):
    """An --init run resumed before its first checkpoint starts again from the same weights (checked unchanged)."""
    from ..rundir import CONFIG
    from ..train import checkpoint as ckpt
    from ..train.initial_weights import INIT_KEY, recorded_source

    if INIT_KEY not in run.record:
        return None
    try:
        if ckpt.newest_intact(run.path)[0] is not None:
            return None
    except UserError:  # every checkpoint damaged: the trainer's restore says so
        return None
    return recorded_source(run.record, run.path / CONFIG)


def _resumed_config(run, data, preset, set_values, flags):
    """The run's own config; only trainer options (steps, device, cadence...) may change on resume."""
    from dataclasses import replace

    from ..config import TrainOptions, apply_overrides, field_types, validate

    if data is not None and data != run.resolved.data:
        raise UserError(f"cannot change --data when resuming (the run uses {run.resolved.data or DEFAULT_DATASET})")
    if preset is not None and preset != run.resolved.preset:
        raise UserError(f"cannot change --preset when resuming (the run uses {run.resolved.preset})")
    changes = {**set_values, **{k: v for k, v in flags.items() if v is not None}}
    train_keys = set(field_types(TrainOptions))
    for key, value in changes.items():
        if key not in train_keys and str(value) != str(getattr(run.resolved.config, key, object())):
            raise UserError(f"cannot change {key!r} when resuming; start a new run to change the architecture's config")
    train_changes = {k: v for k, v in changes.items() if k in train_keys}
    _, opts = apply_overrides(run.arch, run.resolved.config, run.resolved.train, train_changes)
    validate(run.arch, run.resolved.config, lambda key: f"--{key.replace('_', '-')}" if flags.get(key) is not None else "--set", opts)
    overrides = {**run.resolved.overrides, **{k: getattr(opts, k) for k in train_changes}}
    if "steps" in train_changes and "epochs" not in train_changes:  # an explicit step count wins over --epochs
        opts = replace(opts, epochs=0.0)
        overrides.pop("epochs", None)
    return replace(run.resolved, train=opts, overrides=overrides)


def _train(arch, resolved, run_dir: Path, entry, skip_bad_files: bool = False, allow_data_change: bool = False,
           world=None, init=None, init_warnings=(), cond: bool = False, init_classes=NO_INIT):
    """Load the data, build the trainer, record config.json and run; ``entry`` is a Run when resuming.

    Everything that can be refused is checked before the run directory is
    touched; if this invocation fails before its first step completes, what it
    created there is removed, so the same command can simply be run again.
    """
    from .. import rundir
    from ..train.distributed import World
    from ..train.trainer import Trainer

    world = world if world is not None else World()
    dataset, fingerprint, resolved = _prepare(arch, resolved, run_dir, entry, skip_bad_files, allow_data_change,
                                              world, cond, init_classes)
    spec = arch.data_spec(resolved.config)
    resuming = isinstance(entry, rundir.Run)
    trainer = None
    with _sole_writer(run_dir, world, lambda: trainer is not None and trainer.step > trainer.first_step):
        trainer = Trainer(arch, resolved, dataset, run_dir, resume=resuming, world=world, init=init,
                          skip_bad_files=skip_bad_files)
        if not world.is_writer:  # other ranks train and say nothing; rank 0 writes and reports
            result = trainer.run()
            if result.stopped_by:
                sys.exit(exit_status(result.stopped_by))
            return
        resolved = _record(arch, resolved, trainer, run_dir, entry, fingerprint, None if resuming else init,
                           classes=_classes_of(arch, resolved, dataset))
        _describe(arch, resolved, trainer, dataset, spec, run_dir, resuming)
        _describe_init(init, init_warnings, trainer, resuming)
        result = trainer.run()
        click.echo(f"sample grid:   {result.sample}")
        click.echo(f"checkpoint:    {result.checkpoint}")
        click.echo(f"run directory: {result.run_dir} (step {result.step})")
    if result.stopped_by:
        if reports_stops():  # under --nproc-per-node the launcher says it (it knows when nothing had started)
            click.echo(f"stopped by {result.stopped_by}; continue with: ganzoo train {arch.name} --resume {run_dir}")
        sys.exit(exit_status(result.stopped_by))


def _prepare(arch, resolved, run_dir: Path, entry, skip_bad_files: bool = False, allow_data_change: bool = False,
             world=None, cond: bool = False, init_classes=NO_INIT):
    """Every check a run passes before its folder is touched; (the dataset, its fingerprint for config.json, and
    ``resolved`` with a conditional run's class count fitted to the data).

    The run must not live inside its data, the data must not have changed
    since the run started (on resume), it must load and hold one global batch.
    `ganzoo train` runs this, each rank of a torchrun job runs it, and the
    --nproc-per-node launcher runs it before starting any process. Several
    ranks agree on the outcome (World.agree): a refusal is one ``Error:`` line
    from rank 0 and exit 1 on every rank, wherever it was found.
    """
    import torch

    from .. import rundir
    from ..data import load_data
    from ..data.fingerprint import fingerprint_for_run
    from ..conditioning import fit_class_count, labelled_spec, refuse_other_classes
    from ..data.run_location import refuse_run_inside_data
    from ..train.distributed import World
    from ..train.feed import make_feed

    world = world if world is not None else World()
    spec = labelled_spec(arch, resolved.config, cond)
    record = entry.record if isinstance(entry, rundir.Run) else None

    def own_checks():  # rank 0's: it alone reads and writes the run directory
        refuse_run_inside_data(run_dir, resolved.data)
        if record is not None:
            rundir.refuse_odd_run_files(run_dir)
        return fingerprint_for_run(resolved.data, spec, record, allow_data_change, run_dir / rundir.CONFIG)

    fingerprint, refusal = _attempt(own_checks) if world.is_writer else (None, None)
    world.agree(refusal)
    skipped = []

    def report(error: UserError) -> None:
        skipped.append(error)
        click.echo(f"skipped: {error}", err=True)

    def loaded():
        dataset = load_data(resolved.data, spec, on_bad=report if skip_bad_files and world.is_writer else
                            (skipped.append if skip_bad_files else None), max_pixels=resolved.train.max_image_pixels)
        if init_classes is not NO_INIT:  # --init: the source's classes are the new run's
            refuse_other_classes(init_classes, dataset.classes if spec.labels else None, "the --init source")
        fitted = resolved
        if spec.labels:  # a conditional run: its class count and class list agree with the data's
            if record is not None:
                refuse_other_classes(rundir.run_classes(entry), dataset.classes, f"the run in {run_dir}")
            fitted = fit_class_count(arch, resolved, dataset.classes, dataset.source, cond)
        make_feed(dataset, fitted.config.batch_size, fitted.train.seed, torch.device("cpu"), spec,
                  resident=False)  # the data holds one global batch
        return dataset, fitted

    if world.local_rank != 0:  # one process per machine loads first (a catalog download happens once)
        world.barrier()
    loaded_and_fitted, refusal = _attempt(loaded)
    if world.local_rank == 0:
        world.barrier()
    world.agree(refusal)
    dataset, resolved = loaded_and_fitted
    if skipped and world.is_writer:
        click.echo(f"{len(skipped)} unreadable file(s) skipped", err=True)
    return dataset, fingerprint, resolved


def _classes_of(arch, resolved, dataset):
    """The class names config.json records: the data's, for a conditional run; None otherwise."""
    return list(dataset.classes) if arch.num_classes(resolved.config) > 0 else None


def _record(arch, resolved, trainer, run_dir: Path, entry, fingerprint, init=None, classes=None):
    """config.json with what the trainer settled: --epochs as a step count, fit_to_data's choices."""
    from dataclasses import replace

    from .. import rundir

    fitted = _changed_fields(resolved.config, trainer.cfg)
    if fitted:
        click.echo(f"fitted to the data: {fitted}")
    resolved = replace(resolved, train=trainer.opts, config=trainer.cfg)
    if isinstance(entry, rundir.Run):
        rundir.record_train_options(entry, resolved)
    else:
        rundir.write_config(run_dir, resolved, entry, data_fingerprint=fingerprint, classes=classes)
        if init is not None:
            from ..fileio import write_json
            from ..train.initial_weights import INIT_KEY

            record = rundir.read_config(run_dir)
            write_json(run_dir / rundir.CONFIG, {**record, INIT_KEY: init.record()})
    return resolved


def _describe_init(init, warnings, trainer, resuming: bool) -> None:
    """Where the weights came from, newer damaged checkpoints skipped, and roles left freshly initialised."""
    if init is None or (resuming and trainer.resumed_from is not None):
        return
    for line in warnings:
        click.echo(line, err=True)
    click.echo(f"initial weights: {init.weights} (sha256 {init.sha256[:12]}...); fresh optimizers from step 0")
    for line in trainer.init_notes:
        click.echo(line)


def _describe(arch, resolved, trainer, dataset, spec, run_dir: Path, resuming: bool) -> None:
    """What is about to happen: data, device, the planned length (steps and epochs) and where it goes."""
    opts = resolved.train
    unpaired = spec.kind == UNPAIRED
    counts = f"{len(dataset.A)} + {len(dataset.B)}" if unpaired else f"{len(dataset.images)}"
    click.echo(printable(f"{arch.name}: {counts} images from {dataset.name} at "
                         f"{spec.resolution}x{spec.resolution}x{spec.channels}; preset {resolved.preset or 'none'}; "
                         f"{trainer.device} {opts.precision}{' compiled' if opts.compile else ''}; "
                         f"batch {resolved.config.batch_size}"))  # a folder's name need not be UTF-8
    click.echo(f"speed settings: {trainer.engine.speed.describe()}")
    if unpaired:
        click.echo(printable(f"domains: {dataset.describe()}"))
    epochs = opts.steps / trainer.feed.steps_per_epoch
    if resuming and trainer.resumed_from is None:
        click.echo(f"no checkpoint in {run_dir} yet: starting it again from step 0 with its recorded config")
    if trainer.damaged_metrics:
        click.echo(f"{run_dir / 'metrics.jsonl'}: dropped {trainer.damaged_metrics} damaged line(s)", err=True)
    click.echo(f"plan: steps {trainer.step} -> {opts.steps} ({epochs:.3g} epochs); a time estimate follows "
               f"the first {min(opts.log_every, max(opts.steps - trainer.step, 1))} steps")
    click.echo(f"run directory: {run_dir}")


@contextlib.contextmanager
def _sole_writer(run_dir: Path, world, started):
    """Rank 0 holds ``run_dir``'s lock (ganzoo.run_lock) inside the block, and undoes an early failure.

    The lock comes before anything is written there (a resume's cleanup, config.json) and goes after the
    last write; a second writer is refused by every rank alike (one ``Error:`` line, from rank 0). What
    this invocation made in the folder is removed if it fails before ``started()``, while the lock is
    still held, so no other writer can be midway in it.
    """
    from .. import run_lock, signals

    if not world.is_writer:
        world.agree(None)
        yield
        return
    if world.distributed:
        signals.interrupt_on_stops()  # a stop from here unwinds, so what rank 0 made goes (ganzoo.signals)
    before = _contents(run_dir)  # taken before the lock makes the folder or its lock file
    held, refusal = _attempt(lambda: run_lock.acquire(run_dir))
    world.agree(refusal)
    with held, _removed_on_early_failure(run_dir, started, before):
        yield


def _contents(run_dir: Path) -> set | None:
    """What ``run_dir`` holds now (None: no such folder), for _removed_on_early_failure."""
    return set(run_dir.iterdir()) if run_dir.is_dir() else None


@contextlib.contextmanager
def _removed_on_early_failure(run_dir: Path, started, before: set | None):
    """Remove what this invocation created in ``run_dir`` if it fails before ``started()``.

    A pre-existing folder keeps everything it held ``before``; a folder made here (``before`` None) goes
    entirely. Nothing is removed once a step has completed (the run can be resumed), nor when the run
    stopped on a signal (it checkpointed).
    """
    from ..signals import deferred

    try:
        yield
    except BaseException:
        if not started():
            with deferred():  # a stop signal now (a second Ctrl-C) comes once the folder is as it was
                if before is None:
                    shutil.rmtree(run_dir, ignore_errors=True)
                elif run_dir.is_dir():
                    for path in set(run_dir.iterdir()) - before:
                        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise


def _changed_fields(before, after) -> str:
    """'key=value, ...' for the config fields that differ (what fit_to_data decided)."""
    import dataclasses

    changed = [f"{f.name}={getattr(after, f.name)}" for f in dataclasses.fields(after)
               if getattr(before, f.name) != getattr(after, f.name)]
    return ", ".join(changed)
