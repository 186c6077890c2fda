"""Generator inference: ONNX Runtime (as `ganzoo export` writes it) against eager PyTorch, in one run.

For each architecture and size, every generator is built from a fixed seed,
exported through ``ganzoo.export.export_generator`` (verified as the CLI does)
and timed at each batch size:

- ``eager``: PyTorch eval mode under no_grad, fp32 (the reference);
- ``ort``: the exported file in ONNX Runtime with ganzoo's session options
  (ORT_ENABLE_ALL), the way ``ganzoo.runtime`` runs it;
- ``ort-plain``: the same graph with batch norms left unfolded and basic
  graph optimisation only (which folds them again), to show what the
  optimisation level buys.

Warm-up runs are excluded; the median of repeats is reported, and the ratios
are eager time over ONNX Runtime time (above 1: ONNX Runtime is faster).

    python benchmarks/onnx_speed.py --sizes embedded,full --batches 1,16 --json benchmarks/results/cpu-onnx.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from ganzoo import __version__, config, registry
from ganzoo.bench.timing import time_calls
from ganzoo.export import check_inputs, export_generator

CPU = torch.device("cpu")


def median_seconds(run, min_repeats: int, min_seconds: float) -> tuple[float, float]:
    """(median, p90) of ``run()`` after two warm-up calls, over at least min_repeats and min_seconds,
    timed by the suite's own loop."""
    timed = time_calls(run, CPU, repeats=min_repeats, min_seconds=min_seconds)
    return timed["median_s"], timed["p90_s"]


def ort_session(path: Path, level: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def bench_generator(arch, cfg, name, spec, net, batches, threads, min_repeats, min_seconds, folder: Path) -> list[dict]:
    exported = export_generator(arch, cfg, name, spec, net, folder / f"{name}.onnx", plugin={}, seed=0)
    plain = export_generator(arch, cfg, name, spec, net, folder / f"{name}-plain.onnx", plugin={}, seed=0,
                             fold_norms=False)
    sessions = {"ort": ort_session(exported.path, "ORT_ENABLE_ALL", threads),
                "ort-plain": ort_session(plain.path, "ORT_ENABLE_BASIC", threads)}
    resolution = arch.data_spec(cfg).resolution
    rows = []
    for batch in batches:
        inputs = check_inputs(spec, batch, 1, resolution)
        tensors = [torch.from_numpy(inputs[k]) for k in spec.inputs]
        row = {"generator": name, "batch": batch}
        with torch.no_grad():
            expected = net(*tensors).numpy()
            row["eager_s"], row["eager_p90_s"] = median_seconds(lambda: net(*tensors), min_repeats, min_seconds)
        for label, session in sessions.items():
            row[f"{label}_max_abs_error"] = float(np.abs(session.run(None, inputs)[0] - expected).max())
            row[f"{label}_s"], row[f"{label}_p90_s"] = median_seconds(lambda: session.run(None, inputs),
                                                                      min_repeats, min_seconds)
            row[f"{label}_speedup"] = row["eager_s"] / row[f"{label}_s"]
        print(f"  {name:4s} batch {batch:3d}: eager {row['eager_s'] * 1e3:9.2f} ms   ort {row['ort_s'] * 1e3:9.2f} ms "
              f"(x{row['ort_speedup']:.2f})   ort-plain {row['ort-plain_s'] * 1e3:9.2f} ms (x{row['ort-plain_speedup']:.2f})"
              f"   max err {row['ort_max_abs_error']:.1e}", flush=True)
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("archs", nargs="*", help="architectures (default: every registered one)")
    parser.add_argument("--sizes", default="embedded,full", help="embedded (the 32x32 preset) and/or full (Config defaults)")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--min-repeats", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    names = args.archs or [e.name for e in registry.discover()]
    results = []
    for arch_name in names:
        arch = registry.get(arch_name)
        for size in args.sizes.split(","):
            # the embedded data picks the architecture's preset for it; any other data name keeps the defaults
            resolved = config.resolve(arch, data=None if size == "embedded" else "any-folder", flags={"device": "cpu"})
            cfg = resolved.config
            spec_data = arch.data_spec(cfg)
            print(f"{arch_name} ({size}: {spec_data.resolution}x{spec_data.resolution}x{spec_data.channels}, "
                  f"preset {resolved.preset or 'none'})", flush=True)
            torch.manual_seed(0)
            nets = arch.build(cfg)
            with tempfile.TemporaryDirectory() as folder:
                for name, spec in arch.generators(cfg).items():
                    rows = bench_generator(arch, cfg, name, spec, nets[spec.role].eval(), batches, args.threads,
                                           args.min_repeats, args.min_seconds, Path(folder))
                    results += [{"arch": arch_name, "size": size, "preset": resolved.preset,
                                 "data": f"{spec_data.resolution}x{spec_data.resolution}x{spec_data.channels}", **row}
                                for row in rows]
    record = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
              "torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__,
              "ganzoo": __version__, "results": results}
    print("\n| architecture | size | generator | batch | eager ms | ONNX Runtime ms | eager / ORT | plain export, basic opt |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['arch']} | {r['data']} | {r['generator']} | {r['batch']} | {r['eager_s'] * 1e3:.2f} | "
              f"{r['ort_s'] * 1e3:.2f} | x{r['ort_speedup']:.2f} | x{r['ort-plain_speedup']:.2f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
