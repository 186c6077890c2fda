"""`ganzoo info`: what a run directory holds, read without building any network."""

from __future__ import annotations

from pathlib import Path

import click

from ..data import DEFAULT_DATASET
from ..errors import printable


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
def info(run_dir):
    """What a run directory holds: architecture, plugin, config, checkpoints, last metrics."""
    from .. import registry, rundir
    from ..train import checkpoint as ckpt
    from ..train.loggers import read_records

    record = rundir.read_config(run_dir)
    known = {entry.name for entry in registry.discover()}
    classes = None
    if record["architecture"] in known:  # values checked as resume would; a run of a missing plugin still shows
        classes = rundir.run_classes(rundir.open_run(run_dir))
    plugin = record.get("plugin") if isinstance(record.get("plugin"), dict) else {}
    click.echo(printable(f"run:          {run_dir}"))
    click.echo(f"architecture: {record['architecture']} ({plugin.get('distribution')} {plugin.get('version')})")
    click.echo(f"ganzoo:       {record.get('ganzoo_version')}")
    click.echo(printable(f"data:         {record.get('data') or DEFAULT_DATASET}"))  # names need not be UTF-8
    click.echo(f"preset:       {record.get('preset') or 'none'}")
    overrides = record.get("overrides") or {}
    click.echo(f"overrides:    {', '.join(f'{k}={v}' for k, v in overrides.items()) or 'none'}")
    click.echo("config:       " + ", ".join(f"{k}={v}" for k, v in record["config"].items()))
    if classes is not None:  # a conditional run: label i means classes[i]
        click.echo(printable("classes:      " + ", ".join(f"{i} {name}" for i, name in enumerate(classes))))
    dirs = ckpt.checkpoint_dirs(run_dir)
    click.echo(f"checkpoints:  {', '.join(d.name for d in dirs) or 'none'}")
    nonfinite = [f"{d.name} ({name})" for d in dirs if (name := ckpt.recorded_nonfinite(d))]
    if nonfinite:
        click.echo(f"not finite:   {', '.join(nonfinite)}: NaN or inf when saved; a run cannot continue from them")
    chosen, damaged = ckpt.newest_intact(run_dir)
    ckpt.report(ckpt.fallback_warnings(chosen, damaged))
    if chosen is not None:
        counts = _parameter_counts(chosen / ckpt.NETWORKS)
        click.echo(f"parameters:   {', '.join(f'{role} {count:,}' for role, count in counts.items())}"
                   + (f" ({chosen.name})" if damaged else ""))
    metrics = Path(run_dir) / "metrics.jsonl"
    damaged_lines = 0
    if metrics.exists():
        records, damaged_lines = read_records(metrics)
        losses = [r for r in records if not _is_eval(r)]
        evals = [r for r in records if _is_eval(r)]
        if losses:
            click.echo(f"last metrics: {_pairs(losses[-1])}")
        if evals:
            click.echo(f"last eval:    {_pairs(evals[-1])}")
    best = ckpt.best_checkpoint(run_dir)
    if best is not None:
        click.echo(f"best:         {best}")
    if damaged_lines:
        click.echo(f"metrics:      {damaged_lines} damaged line(s) in {metrics} (a resume drops them)")


def _is_eval(record: dict) -> bool:
    """A line written by evaluation during training (its keys start with eval/) rather than by the loss log."""
    return any(key.startswith("eval/") for key in record)


def _pairs(record: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())


def _parameter_counts(path: Path) -> dict[str, int]:
    """Element counts per network, from the safetensors header alone (no tensor is read)."""
    import math

    from ..train.checkpoint import read_header

    counts: dict[str, int] = {}
    for name, entry in read_header(path).items():
        if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked"):
            continue
        role = name.split("/", 1)[0]
        counts[role] = counts.get(role, 0) + math.prod(entry["shape"])
    return counts
