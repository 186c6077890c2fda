"""Benchmark results as markdown tables and a speed-up plot (PNG, matplotlib).

A record is written after every case, so the markdown of a run still going
(or stopped) says how many of its planned cases it holds; measurements too
spread to trust are marked in their row and named under their case. The
markdown's first line and the plot's PNG text carry ganzoo's mark
(``ganzoo.marks``), so a later bench may replace them and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from .overhead import overhead_table
from .timing import BUSY, NOISY_SPREAD


def _mib(n: float | None) -> str:
    return "" if n is None else f"{n / 2**20:,.0f} MiB"


def _opt(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _spread(timed: dict) -> str:
    if timed.get("spread") is None:
        return ""
    return f"{timed['spread']:.2f}" + (" **noisy**" if timed.get("noisy") else "")


def noisy_measurements(case: dict) -> list[str]:
    """The measurements of a case whose like calls spread more than NOISY_SPREAD."""
    found = [f"training {name}" for name, r in (case.get("training") or {}).get("variants", {}).items()
             if r.get("noisy")]
    found += [f"host overhead {name}" for name, r in (case.get("host_overhead") or {}).get("loops", {}).items()
              if r.get("noisy")]
    for generator, backends in (case.get("inference") or {}).items():
        for backend, r in backends.items():
            found += [f"inference {generator} {backend} batch {b}" for b, row in r["batches"].items()
                      if row.get("noisy")]
    return found


def _share(value) -> str:
    """A fraction as a percentage ("" when not measured)."""
    return "" if value is None else f"{value * 100:.1f}%"


def _times(value) -> str:
    return "" if value is None else f"x{value:.2f}"


def training_table(case: dict) -> str:
    variants = case["training"]["variants"]
    unit = next(iter(variants.values()))["throughput_unit"]
    lines = [f"| variant | ms/step (median) | p10–p90 ms | p90/p10 | {unit} | s/kimg | vs reference | "
             "vs reference loop | data wait | peak memory | TFLOP/s | MFU | warm-up s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in variants.items():
        mfu = f"{r['mfu'] * 100:.1f}%" if r.get("mfu") else ""
        lines.append(f"| {name} | {r['median_s'] * 1e3:.2f} | {r['p10_s'] * 1e3:.2f}–{r['p90_s'] * 1e3:.2f} | "
                     f"{_spread(r)} | {r['throughput']:,.1f} | {r['s_per_kimg']:.3g} | "
                     f"x{r['speedup_vs_reference']:.2f} | {_times(r.get('speedup_vs_reference_loop'))} | "
                     f"{_share(r.get('data_wait'))} | {_mib(r['peak_memory_bytes'])} | "
                     f"{_opt(r.get('tflops_per_s'), '.3g')} | {mfu} | "
                     f"{r['warmup_s']:.1f} |")
    parts = sorted({p for r in variants.values() for p in r["parts_ms"]},
                   key=lambda p: (p != "data", p == "ema", p))
    lines += ["", "Time per step by part (ms, synchronised around each part):", "",
              "| variant | " + " | ".join(parts) + " |", "| --- |" + " --- |" * len(parts)]
    for name, r in variants.items():
        if not r["parts_ms"]:  # the reference loop is timed whole
            continue
        lines.append(f"| {name} | " + " | ".join(_opt(r["parts_ms"].get(p), ".2f") for p in parts) + " |")
    return "\n".join(lines)


def default_vs_reference_loop(variants: dict) -> list[str]:
    """The case's headline: ganzoo's defaults against the code users would otherwise run (none without both)."""
    loop, default = variants.get("reference-loop"), variants.get("default")
    if not loop or not default:
        return []
    return [f"**ganzoo's defaults: x{default['speedup_vs_reference_loop']:.2f} the speed of the reference loop** "
            f"({loop['source']}, eager fp32, as written there).", ""]


def inference_table(case: dict) -> str:
    lines = []
    for generator, backends in case["inference"].items():
        batches = list(next(iter(backends.values()))["batches"])
        first = batches[0]
        lines += [f"Generator `{generator}`:", "",
                  f"| backend | p50 ms (batch {first}) | p99 ms | vs eager | " +
                  " | ".join(f"img/s at {b}" for b in batches) + " | max abs diff vs eager | first call s | "
                  "p90/p10 (widest batch) |",
                  "| --- | --- | --- | --- |" + " --- |" * len(batches) + " --- | --- | --- |"]
        for backend, r in backends.items():
            row = r["batches"][first]
            widest = max(r["batches"].values(), key=lambda timed: timed.get("spread") or 0.0)
            lines.append(f"| {backend} | {row['median_s'] * 1e3:.2f} | {row['p99_s'] * 1e3:.2f} | "
                         f"x{row.get('speedup_vs_eager', 1.0):.2f} | " +
                         " | ".join(f"{r['batches'][b]['images_per_s']:,.0f}" for b in batches) +
                         f" | {r['max_abs_error_vs_eager']:.1e} | {r['first_call_s']:.2f} | {_spread(widest)} |")
        lines.append("")
    return "\n".join(lines)


def header(record: dict, status: bool = True) -> str:
    """The machine a record was measured on, and (``status``) whether it holds every case it planned."""
    m = record["machine"]
    out = [f"## {m['device']}", "",
           f"torch {m['torch']}, onnxruntime {m['onnxruntime']}, ganzoo {m['ganzoo']}, commit "
           f"{(m['commit'] or 'unknown')[:10]}, {m['date']}"]
    if status and record.get("complete") is False:
        stopped = f" (stopped by {record['stopped_by']})" if record.get("stopped_by") else ""
        out += ["", f"**Incomplete**{stopped}: {len(record['cases'])} of {len(record.get('planned', []))} "
                    "planned cases measured."]
    return "\n".join(out) + "\n"


def case_section(case: dict) -> str:
    """One case's tables, printed as soon as it is measured and written with the others."""
    out = [f"### {case['arch']}: {case['data']}, batch {case['batch_size']} ({case['label']})", ""]
    if case.get("training"):
        flops = case["training"]["flops_per_step"]
        out += [f"Training, {case['steps']} timed steps after {case['warmup']} warm-up; "
                f"{flops / 1e9:,.2f} GFLOP per step (torch.utils.flop_counter)." if flops else "Training.", "",
                *default_vs_reference_loop(case["training"]["variants"]), training_table(case), ""]
    if case.get("host_overhead"):
        out += [overhead_table(case["host_overhead"]), ""]
    if case.get("inference"):
        out += ["Inference:", "", inference_table(case)]
    noisy = noisy_measurements(case)
    if noisy:
        out += [f"**Noisy** (p90/p10 of like calls above {NOISY_SPREAD}, {BUSY}; rerun on an idle machine before "
                f"trusting them): {', '.join(noisy)}.", ""]
    return "\n".join(out).rstrip() + "\n"


def eval_noisy(section: dict) -> list[str]:
    """The throughput measurements of the feature-extraction section too spread to trust."""
    return [f"{e['extractor']} {e['precision']} {label}" for e in section.get("measured", [])
            for label, row in e["throughput"].items() if row.get("noisy")]


def eval_section(section: dict) -> str:
    """The feature-extraction section: images/s per extractor, precision and resolution, then the FD effect."""
    settings, measured = section["settings"], section["measured"]
    labels = settings["resolutions"]
    out = [f"### Feature extraction: `Extractor.features`, {settings['warmup']} warm-up + {settings['repeats']} "
           f"timed calls of {settings['batch']} uint8 images", ""]
    if section.get("complete") is False:
        out += [f"**Incomplete**: {len(measured)} of {len(section['planned'])} planned measurements.", ""]
    out += ["| extractor | precision | weights | " + " | ".join(f"img/s at {label}" for label in labels) +
            " | vs fp32 | p90/p10 (widest) |",
            "| --- | --- | --- |" + " --- |" * len(labels) + " --- | --- |"]
    for e in measured:
        widest = max(e["throughput"].values(), key=lambda timed: timed.get("spread") or 0.0)
        vs = e.get("vs_fp32")
        speed = "/".join(f"x{vs['speedup'][label]:.2f}" for label in labels) if vs else ""
        out.append(f"| {e['extractor']} | {e['precision']} | {_weights(e['weights'])} | " +
                   " | ".join(f"{e['throughput'][label]['images_per_s']:,.1f}" for label in labels) +
                   f" | {speed} | {_spread(widest)} |")
    out += ["", f"Frechet distance on each extractor's features, {settings['n']} images a set: `halves` two disjoint "
            f"sets of embedded test images, `blurred` the first against the second box-blurred "
            f"({settings['blur']}x{settings['blur']}); reduced precision against fp32:", "",
            "| extractor | precision | FD halves | FD blurred | abs diff halves | rel diff halves | abs diff blurred | "
            "rel diff blurred | feature rel. error (median) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in measured:
        vs = e.get("vs_fp32")
        diffs = (f"{vs['fd']['halves']['abs_diff']:.3g} | {percent(vs['fd']['halves']['rel_diff'])} | "
                 f"{vs['fd']['blurred']['abs_diff']:.3g} | {percent(vs['fd']['blurred']['rel_diff'])} | "
                 f"{vs['feature_rel_error_median']:.2e}") if vs else " | | | | "
        out.append(f"| {e['extractor']} | {e['precision']} | {e['fd']['halves']:.5g} | {e['fd']['blurred']:.5g} | "
                   f"{diffs} |")
    if any(e["weights"]["kind"] == "random" for e in measured):
        random = sorted({e["extractor"] for e in measured if e["weights"]["kind"] == "random"})
        out += ["", f"{', '.join(random)}: random weights (throughput only; the FD effect is for random weights): "
                "no weights file was in the caches `ganzoo eval` reads, and the bench never downloads."]
    noisy = eval_noisy(section)
    if noisy:
        out += ["", f"**Noisy** (p90/p10 of like calls above {NOISY_SPREAD}, {BUSY}; rerun on an idle machine before "
                f"trusting them): {', '.join(noisy)}."]
    return "\n".join(out).rstrip() + "\n"


def percent(fraction: float) -> str:
    """A relative difference with three significant digits, however small (0.0123%, 1.23%)."""
    return f"{fraction * 100:.3g}%"


def _weights(weights: dict) -> str:
    if weights["kind"] == "random":
        return "random"
    return f"{weights['kind']} ({(weights['sha256'] or '')[:8]})"


def markdown(record: dict) -> str:
    from ..marks import markdown_line
    from ..outputs import BENCH_TABLES

    parts = [markdown_line(BENCH_TABLES), header(record), *(case_section(case) for case in record["cases"])]
    if record.get("eval"):
        parts.append(eval_section(record["eval"]))
    if record.get("feed"):
        from .feed_speed import feed_section

        parts.append(feed_section(record["feed"]))
    return "\n".join(parts).rstrip() + "\n"


def speedup_plot(records: list[dict], path: Path) -> Path:
    """Bars of each variant's training speed-up over the reference, grouped by architecture and size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [(f"{c['arch']}\n{c['data']}", c["training"]["variants"]) for r in records for c in r["cases"]
             if c.get("training")]
    names = []
    for _, variants in cases:
        names += [n for n in variants if n not in names]
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cases) + 2), 4))
    for i, name in enumerate(names):
        xs = [k + (i - (len(names) - 1) / 2) * width for k in range(len(cases))]
        ys = [v[name]["speedup_vs_reference"] if name in v else 0 for _, v in cases]
        ax.bar(xs, ys, width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(cases)), [label for label, _ in cases])
    ax.set_ylabel("training speed-up over the reference")
    ax.set_title(records[0]["machine"]["device"] if records else "")
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1.0), loc="upper left")
    fig.tight_layout()
    from ..fileio import atomic_write
    from ..marks import KEY
    from ..outputs import BENCH_PLOT

    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120, metadata={KEY: BENCH_PLOT}))
    finally:
        plt.close(fig)
    return path
