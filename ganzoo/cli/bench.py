"""`ganzoo bench`: the benchmark suite from the command line.

Registered on the main group in ganzoo.cli, which turns a UserError into one
"Error: ..." line. Every option is checked before anything is measured; the
results file is rewritten after every case (``--json``, else a new file under
bench-results/), so Ctrl-C, SIGTERM or a hang-up keeps what was measured and
says where, in one line.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from ..errors import UserError
from ..signals import exit_status


def _ints(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UserError(f"{option} takes positive integers separated by commas, got {text!r}")
    return values


@click.command("bench")
@click.argument("archs", nargs=-1)
@click.option("--device", default="auto", show_default=True)
@click.option("--size", "sizes", default="embedded", show_default=True,
              help="embedded (the 32x32 preset), full (Config defaults) or smoke (tiny, for CI); comma-separated.")
@click.option("--resolution", type=int, help="Override the resolution of every case.")
@click.option("--batch-size", type=int, help="Training batch size (default: the config's).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any config key (repeatable).")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed training steps (compilation).")
@click.option("--steps", type=int, default=30, show_default=True, help="Timed training steps.")
@click.option("--variants", help="Training variants (default: reference-loop, reference, default, each "
              "optimisation alone, fast).")
@click.option("--inference-batches", help="Batch sizes for inference throughput (default 1,4,16 on the CPU, "
              "1,8,32,128 on CUDA).")
@click.option("--repeats", type=int, default=30, show_default=True, help="Timed inference calls at the first batch.")
@click.option("--backends", help="Inference backends: eager, compiled, onnxruntime-cpu, onnxruntime-cuda.")
@click.option("--training/--no-training", default=True)
@click.option("--inference/--no-inference", default=True)
@click.option("--eval", "eval_", is_flag=True, help="Also measure feature extraction (`ganzoo eval`'s extractors): "
              "images/s per extractor and precision, and the effect of bf16/fp16 on FD. Alone with --no-training "
              "--no-inference.")
@click.option("--extractors", help="Extractors for --eval (default fmnist,inception,dinov2; fmnist with --smoke).")
@click.option("--eval-precisions", help="Precisions for --eval (default fp32 on the CPU, fp32,bf16,fp16 on CUDA).")
@click.option("--eval-batch", type=int, help="Images per features() call for --eval (default 16 on the CPU, 64 on "
              "CUDA).")
@click.option("--eval-repeats", type=int, default=5, show_default=True, help="Timed calls per extractor, precision "
              "and resolution for --eval.")
@click.option("--eval-n", type=int, help="Images in each set of the FD pairs for --eval (default 200 on the CPU, "
              "2000 on CUDA; at most 5000).")
@click.option("--host-overhead", is_flag=True, help="Also time the Trainer (EMA on, and off) against a bare loop of "
              "the same networks, phases and losses: the trainer's own per-step cost. Interleaved blocks of at "
              "least --steps steps each, after --warmup. On with --smoke.")
@click.option("--feed", "feed", is_flag=True, help="Also measure the training feed: images/s from synthetic prepared "
              "datasets at 64, 256 and 1024 px (written to a temporary folder), on the CPU and on CUDA when the bench "
              "runs there, against what the GPU targets need. Alone with --no-training --no-inference.")
@click.option("--smoke", is_flag=True, help="Tiny configs, few steps, no compilation: checks the suite end to end.")
@click.option("--peak-tflops", type=float, help="The device's peak TFLOP/s for model-FLOPs utilisation.")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Write the results as JSON, after every case (default: bench-results/DEVICE-TIME.json). An "
              "existing file is replaced only if an earlier ganzoo bench wrote it (likewise --markdown, --plot).")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path),
              help="Write the tables as markdown, after every case.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), help="Write the speed-up plot (a .png file).")
def bench(archs, device, sizes, resolution, batch_size, sets, warmup, steps, variants, inference_batches, repeats,
          backends, training, inference, eval_, extractors, eval_precisions, eval_batch, eval_repeats, eval_n,
          host_overhead, feed, smoke, peak_tflops, json_path, markdown_path, plot_path):
    """Training and inference speed of ARCHS (default: every registered architecture) on this machine."""
    from .. import config as config_mod
    from .. import registry
    from ..bench import SIZES, new_record, plan_suite, run_suite
    from ..bench.machine import slug
    from ..bench import feed_speed
    from ..bench.extraction import new_section, run_eval
    from ..bench.report import eval_noisy, eval_section, header, markdown, noisy_measurements, speedup_plot
    from ..bench.stop import Stopped, stop_on_signals
    from ..bench.timing import BUSY, NOISY_SPREAD
    from ..fileio import atomic_write, write_json
    from ..marks import json_record
    from ..outputs import BENCH
    from ..train.engine import pick_device

    _claim_outputs(json_path, markdown_path, plot_path)  # before anything is measured
    for name in archs:
        registry.get(name)  # a UserError naming the unknown architecture
    size_list = ["smoke"] if smoke else [s.strip() for s in sizes.split(",") if s.strip()]
    bad = [s for s in size_list if s not in SIZES]
    if bad:
        raise UserError(f"unknown --size {', '.join(bad)}; sizes: {', '.join(SIZES)}")
    if smoke:
        warmup, steps, repeats = min(warmup, 2), min(steps, 3), min(repeats, 3)
        variants = variants or "reference-loop,reference,default,fused-adam,channels_last"
        backends = backends or "eager,onnxruntime-cpu"
        inference_batches = inference_batches or "1,2"
        host_overhead = training  # part of the training section: --no-training leaves it out too
    torch_device = pick_device(device)
    eval_plan = _eval_plan(torch_device, eval_, smoke, extractors, eval_precisions, eval_batch, eval_repeats, eval_n)
    options = dict(resolution=resolution, batch_size=batch_size, sets=config_mod.split_assignments(list(sets)),
                   warmup=warmup, steps=steps, training=training, inference=inference,
                   variants=variants.split(",") if variants else None,
                   inference_batches=_ints(inference_batches, "--inference-batches"), repeats=repeats,
                   backends=backends.split(",") if backends else None, peak_tflops=peak_tflops,
                   host_overhead=host_overhead)
    feed_plan = feed_speed.plan_feed(torch_device, smoke) if feed else None
    # --eval or --feed alone (with --no-training --no-inference): those sections only
    architectures = training or inference or host_overhead or (eval_plan is None and feed_plan is None)
    try:
        cases = plan_suite(list(archs) or None, size_list, torch_device, **options) if architectures else []
    except ValueError as exc:  # an unknown variant or backend
        raise UserError(str(exc)) from None
    if architectures and not cases:
        raise UserError("no architecture to benchmark: none is registered and loadable (see `ganzoo list`)")
    record = new_record(torch_device, cases)
    if eval_plan is not None:
        record["eval"] = new_section(eval_plan)
    if feed_plan is not None:
        record["feed"] = feed_speed.new_section(feed_plan)
    json_path = json_path or _default_results(slug(record["machine"]["device"]))

    def save(record):  # atomic: a failed write is one UserError, and the file keeps the earlier cases
        write_json(json_path, json_record(BENCH, record))  # marked: a later bench may replace it
        if markdown_path:
            atomic_write(markdown_path, lambda f: f.write(markdown(record)), mode="w")

    click.echo(header(record, status=False))
    save(record)  # an unwritable path is found now, not after the first case
    click.echo(f"results: {json_path}" + (f" and {markdown_path}" if markdown_path else "") +
               " (rewritten after every case; marked complete at the end)")
    try:
        with stop_on_signals():
            if cases:
                run_suite(cases, torch_device, record, echo=click.echo, save=save,
                          last=eval_plan is None and feed_plan is None)
            if eval_plan is not None:
                run_eval(eval_plan, torch_device, record, echo=click.echo, save=save)
                record["complete"] = feed_plan is None
                save(record)
                click.echo("\n" + eval_section(record["eval"]))
            if feed_plan is not None:
                feed_speed.run_feed(feed_plan, record, echo=click.echo, save=save)
                record["complete"] = True
                save(record)
                click.echo("\n" + feed_speed.feed_section(record["feed"]))
    except Stopped as stop:
        _stopped(stop, record, save, json_path)
    noisy = (sum(len(noisy_measurements(case)) for case in record["cases"]) + len(eval_noisy(record.get("eval", {})))
             + len(feed_speed.feed_noisy(record.get("feed", {}))))
    if noisy:
        click.echo(f"{noisy} measurements spread more than p90/p10 {NOISY_SPREAD} ({BUSY}): marked noisy in the "
                   "tables; rerun them on an idle machine before trusting them")
    click.echo(f"results: {json_path}" + (f"\ntables:  {markdown_path}" if markdown_path else ""))
    if plot_path and training and cases:
        click.echo(f"plot:    {speedup_plot([record], plot_path)}")


def _claim_outputs(json_path: Path | None, markdown_path: Path | None, plot_path: Path | None) -> None:
    """Each output path is new or an earlier output of the same kind from ganzoo bench (ganzoo.outputs), and
    no two are the same file: refused before anything is measured."""
    from ..outputs import BENCH, BENCH_PLOT, BENCH_TABLES, claim

    given = [(option, path, kind) for option, path, kind in (("--json", json_path, BENCH),
                                                             ("--markdown", markdown_path, BENCH_TABLES),
                                                             ("--plot", plot_path, BENCH_PLOT)) if path is not None]
    if plot_path is not None and plot_path.suffix.lower() != ".png":
        raise UserError(f"--plot must name a .png file, got {plot_path}")
    for index, (option, path, kind) in enumerate(given):
        for other, other_path, _ in given[:index]:
            if Path(os.path.abspath(path)) == Path(os.path.abspath(other_path)):
                raise UserError(f"{other} and {option} both name {path}: give each its own file")
        claim(path, kind, option)


def _eval_plan(device, eval_, smoke, extractors, precisions, batch, repeats, n):
    """The --eval section's plan, every option checked; None without --eval (its options then refused)."""
    from ..bench.plan import plan_eval

    if not eval_:
        given = [option for option, value in (("--extractors", extractors), ("--eval-precisions", precisions),
                                              ("--eval-batch", batch), ("--eval-n", n)) if value is not None]
        if given:
            raise UserError(f"{', '.join(given)} set the feature-extraction section: add --eval")
        return None
    if smoke:  # fmnist only, tiny counts, bf16 beside fp32 so the FD comparison runs too
        extractors, precisions = extractors or "fmnist", precisions or "fp32,bf16"
        batch, repeats, n = batch or 4, min(repeats, 2), n or 64
    try:
        return plan_eval(device, extractors, precisions, batch, repeats, n)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _default_results(device_slug: str) -> Path:
    """bench-results/DEVICE-TIME.json in the current folder (as `ganzoo train` makes runs/ARCH-TIME),
    never an existing file."""
    stem = Path("bench-results") / f"{device_slug}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = stem.with_suffix(".json"), 1
    while path.exists():
        n += 1
        path = stem.with_name(f"{stem.name}-{n}.json")
    return path


def _stopped(stop, record: dict, save, json_path: Path) -> None:
    """One line on what a signal left behind, and the exit status a shell expects (128 + signal)."""
    record["stopped_by"] = stop.name
    save(record)
    done = record["cases"]
    parts = []
    if record["planned"] or not (record.get("eval") or record.get("feed")):
        named = f" ({', '.join(c['arch'] + ' ' + c['label'] for c in done)})" if done else ""
        parts.append(f"{len(done)} of {len(record['planned'])} cases{named}")
    if record.get("eval"):
        measured = [f"{e['extractor']} {e['precision']}" for e in record["eval"]["measured"]]
        named = f" ({', '.join(measured)})" if measured else ""
        parts.append(f"{len(measured)} of {len(record['eval']['planned'])} feature-extraction measurements{named}")
    if record.get("feed"):
        measured = [f"{row['resolution']} px {row['device_type']}" for row in record["feed"]["measured"]]
        named = f" ({', '.join(measured)})" if measured else ""
        parts.append(f"{len(measured)} of {len(record['feed']['planned'])} feed measurements{named}")
    click.echo(f"stopped by {stop.name}: kept {' and '.join(parts)} in {json_path}, marked incomplete", err=True)
    sys.exit(exit_status(stop.name))
