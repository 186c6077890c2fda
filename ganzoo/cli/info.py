"""`ganzoo info`: what a run directory holds, read without building any network."""

from __future__ import annotations

from pathlib import Path

import click

from ..data import DEFAULT_DATASET


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
def info(run_dir):
    """What a run directory holds: architecture, plugin, config, checkpoints, last metrics."""
    from .. import rundir
    from ..train.loggers import read_records
    from ..train.checkpoint import NETWORKS, checkpoint_dirs

    record = rundir.read_config(run_dir)
    plugin = record.get("plugin", {})
    click.echo(f"run:          {run_dir}")
    click.echo(f"architecture: {record['architecture']} ({plugin.get('distribution')} {plugin.get('version')})")
    click.echo(f"ganzoo:       {record.get('ganzoo_version')}")
    click.echo(f"data:         {record.get('data') or DEFAULT_DATASET}")
    click.echo(f"preset:       {record.get('preset') or 'none'}")
    overrides = record.get("overrides") or {}
    click.echo(f"overrides:    {', '.join(f'{k}={v}' for k, v in overrides.items()) or 'none'}")
    click.echo("config:       " + ", ".join(f"{k}={v}" for k, v in record["config"].items()))
    dirs = checkpoint_dirs(run_dir)
    click.echo(f"checkpoints:  {', '.join(d.name for d in dirs) or 'none'}")
    if dirs:
        click.echo("parameters:   " + ", ".join(f"{role} {count:,}" for role, count in _parameter_counts(dirs[-1] / NETWORKS).items()))
    metrics = Path(run_dir) / "metrics.jsonl"
    if metrics.exists():
        records, damaged = read_records(metrics)
        if records:
            click.echo("last metrics: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                    for k, v in records[-1].items()))
        if damaged:
            click.echo(f"metrics:      {damaged} damaged line(s) in {metrics} (a resume drops them)")


def _parameter_counts(path: Path) -> dict[str, int]:
    """Element counts per network, from the safetensors header alone (no tensor is read)."""
    import math

    from safetensors import SafetensorError, safe_open

    from ..errors import UserError

    counts: dict[str, int] = {}
    try:
        with safe_open(path, framework="numpy") as f:
            for name in f.keys():
                if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked"):
                    continue
                role = name.split("/", 1)[0]
                counts[role] = counts.get(role, 0) + math.prod(f.get_slice(name).get_shape())
    except (OSError, SafetensorError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    return counts
