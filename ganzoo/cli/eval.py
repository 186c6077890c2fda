"""`ganzoo eval`: sample quality of a run's checkpoint or an exported model, in the field's units.

Registered on the main group in ganzoo.cli, which turns a UserError into one
"Error: ..." line.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..errors import UserError
from .checkpoint_step import refuse_for_model, step_option
from ..metrics.evaluate import DEFAULT_N



@click.command("eval")
@click.argument("source", type=click.Path(path_type=Path), metavar="RUN_DIR|MODEL.onnx")
@click.option("--data", help="Real images to compare with (default: the run's own data; the embedded "
              "Fashion-MNIST for a model).")
@click.option("--metrics", "metric_names", help="Comma-separated: fid, kid, pr, fd-dinov2, fd-fmnist; for a "
              "class-conditional generator also intra-fid, intra-fd-dinov2, intra-fd-fmnist (per-class FD and their "
              "mean) and class-accuracy (Fashion-MNIST's classes). Default: fd-fmnist,kid,pr on the embedded data "
              "(a conditional generator adds intra-fd-fmnist,class-accuracy), fid,kid,pr otherwise.")
@click.option("--features", help="The extractor kid and pr use: fmnist, inception or dinov2 (default: fmnist on "
              "the embedded data, inception otherwise).")
@click.option("--n", "n", type=int, help=f"Images generated, and real images compared (default {DEFAULT_N:,} or "
              "all the real images when fewer).")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@step_option
@click.option("--weights", multiple=True, metavar="EXTRACTOR=PATH", help="A local weights file for an extractor "
              "(repeatable), e.g. inception=pt_inception-2015-12-05.pth.")
@click.option("--precision", default="fp32", show_default=True, help="The extractors' network arithmetic: fp32, "
              "or bf16/fp16 autocast (faster on GPUs; recorded with the results, which then compare only with "
              "results of the same precision).")
@click.option("--out", type=click.Path(path_type=Path), help="Results JSON (default RUN_DIR/eval/step-N.json, or "
              "MODEL-eval.json beside a model). An existing file is replaced only if it is an earlier result of "
              "ganzoo eval.")
@click.option("--skip-bad-files", is_flag=True, help="Skip unreadable real images (each is reported) instead of "
              "stopping, as ganzoo train does.")
def eval_cmd(source, data, metric_names, features, n, batch_size, device, seed, step, weights, precision, out,
             skip_bad_files):
    """Evaluate RUN_DIR's generators (EMA weights) or MODEL.onnx against real images: FID, KID, precision/recall."""
    from .. import __version__
    from ..data import DEFAULT_DATASET
    from ..fileio import require_writable, write_json
    from ..marks import json_record
    from ..metrics.evaluate import check_classes, evaluate_task, sample_count
    from ..metrics.extractors import EXTRACTORS, check_precision
    from ..metrics.suite import (default_features, default_metrics, extractors_needed, parse_metrics,
                                 refuse_inapplicable, refuse_too_few)
    from ..outputs import EVAL, claim

    embedded = (data or _recorded_data(source) or DEFAULT_DATASET) == DEFAULT_DATASET
    metrics = parse_metrics(metric_names) if metric_names else None  # the default waits for the generator
    features = features or default_features(embedded)
    if features not in EXTRACTORS:
        raise UserError(f"unknown --features {features!r}; extractors: {', '.join(EXTRACTORS)}")
    weight_files = _weights(weights)
    check_precision(precision)
    for option, value in (("--n", n), ("--batch-size", batch_size)):
        if value is not None and value < 1:
            raise UserError(f"{option} must be at least 1, got {value}")
    if seed < 0:
        raise UserError(f"--seed must not be negative, got {seed}")
    if n is not None:
        refuse_too_few(n, metrics or parse_metrics(default_metrics(embedded)), "--n")
    if out is not None:
        claim(out, EVAL)  # before anything is loaded: a new path, or an earlier result of ganzoo eval
    onnx_model = source.suffix.lower() == ".onnx"
    started = time.perf_counter()
    made = _open(source, onnx_model, data, step, device, batch_size, seed, _skipped() if skip_bad_files else None)
    if out is None:  # the default names the checkpoint's step, known now
        out = (source.with_name(f"{source.stem}-eval.json") if onnx_model
               else source / "eval" / f"step-{made.step:07d}.json")
        claim(out, EVAL)
    require_writable(out.parent, "pass --out with a .json path in a folder you can write")
    conditional = any(task.labels is not None for task in made.tasks)
    metrics = metrics or parse_metrics(default_metrics(embedded, conditional))
    for task in made.tasks:
        refuse_inapplicable(metrics, task, made.label)
    counts = [sample_count(task, n, "--n", metrics=metrics) for task in made.tasks]
    for task, count in zip(made.tasks, counts):
        check_classes(task, metrics, count, seed, "--n")
    needed = extractors_needed(metrics, features)
    extractors = {name: _load_extractor(name, device, weight_files.get(name), batch_size, precision)
                  for name in needed}
    results = {}
    for task, count in zip(made.tasks, counts):
        results[task.label or "samples"] = evaluate_task(task, metrics, features, extractors, count, seed, _progress)
    record = {"ganzoo_version": __version__, "source": str(source), "step": made.step, "kind": made.kind,
              "data": made.data or DEFAULT_DATASET, "seed": seed, "metrics": metrics, "features": features,
              "precision": precision,
              "extractors": {name: e.describe() for name, e in extractors.items()}, "results": results,
              "seconds": round(time.perf_counter() - started, 1)}
    write_json(out, json_record(EVAL, record))  # marked: a re-run may replace it, nothing else is ever replaced
    _print_table(made.label, results)
    click.echo(f"results: {out}")


def _recorded_data(source: Path) -> str | None:
    """The run's data, when SOURCE is a run directory with a readable config.json (for the defaults)."""
    try:
        from .. import rundir

        return rundir.read_config(source).get("data") if source.suffix.lower() != ".onnx" else None
    except UserError:
        return None


def _weights(pairs) -> dict[str, Path]:
    from ..metrics.extractors import EXTRACTORS

    out = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or name not in EXTRACTORS:
            raise UserError(f"--weights expects EXTRACTOR=PATH with EXTRACTOR one of {', '.join(EXTRACTORS)}, "
                            f"got {pair!r}")
        out[name] = Path(path).expanduser()
        if out[name].is_dir():
            raise UserError(f"--weights {pair}: {out[name]} is a folder; give the {name} weights file itself")
        if not out[name].exists():
            raise UserError(f"--weights {pair}: no such file {out[name]}")
        if not out[name].is_file():
            raise UserError(f"--weights {pair}: {out[name]} is not a regular file (a FIFO or device); give the "
                            f"{name} weights file itself")
    return out


def _open(source: Path, onnx_model: bool, data, step, device, batch_size, seed, on_bad):
    from ..metrics.sources import from_onnx, from_run

    if onnx_model:
        refuse_for_model(step)
        return from_onnx(source, data, device, batch_size, seed, on_bad=on_bad)
    from ..train.engine import pick_device

    return from_run(source, data, step, pick_device(device), batch_size, seed, on_bad=on_bad)


def _skipped():
    """--skip-bad-files: each unreadable real image is named on stderr and left out, as `ganzoo train` does."""

    def report(error: UserError) -> None:
        click.echo(f"skipped: {error}", err=True)

    return report


def _load_extractor(name, device, weights, batch_size, precision):
    from ..metrics.extractors import load_extractor
    from ..train.engine import pick_device

    return load_extractor(name, pick_device(device), weights=weights, batch_size=batch_size, precision=precision)


class _progress:
    """A tqdm bar on a terminal, nothing otherwise; called with the count of images just done."""

    def __init__(self, label: str, total: int):
        import sys

        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=label, unit="img", disable=not sys.stderr.isatty(), leave=False)

    def __enter__(self):
        return self.bar.update

    def __exit__(self, *exc):
        self.bar.close()


def _print_table(label: str, results: dict) -> None:
    click.echo(f"{label}")
    for task, result in results.items():
        title = f"{task}: " if task != "samples" else ""
        click.echo(f"  {title}n = {result['n']:,}")
        for key, value in result["values"].items():
            click.echo(f"    {key:<22} {value:.6g}")
        if result.get("per_class"):
            _print_per_class(result)


def _print_per_class(result: dict) -> None:
    """One row per class: its real and generated images and each per-class metric ("-": none of that class)."""
    classes, per_class = result["classes"], result["per_class"]
    rows = [f"{index} {name}" for index, name in enumerate(classes["names"])]
    width = max(len("per class"), *map(len, rows))
    click.echo(f"    {'per class':<{width}} {'real':>7} {'generated':>9}" + "".join(f" {m:>16}" for m in per_class))
    for index, (row, name) in enumerate(zip(rows, classes["names"])):
        cells = "".join(f" {per_class[m][name]:>16.6g}" if name in per_class[m] else f" {'-':>16}"
                        for m in per_class)
        click.echo(f"    {row:<{width}} {classes['real'][index]:>7,} {classes['generated'][index]:>9,}{cells}")
