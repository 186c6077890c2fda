"""Training-step speed of one architecture: the reference setting against ganzoo's fast path.

Reference = what the original implementations run: eager, fp32, NCHW.
Each variant trains on synthetic device-resident data; the first steps
(warm-up and compilation) are excluded and the median of the rest is reported.
Ratios are taken within one run, since machines are noisy.

    python benchmarks/train_speed.py dcgan --set resolution=64 --set channels=3 --batch-size 128
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time

import torch

from ganzoo import __version__, config, registry
from ganzoo.testing import synthetic_data
from ganzoo.train.trainer import Trainer

VARIANTS = {  # "reference" is fp32, NCHW, eager: what the original implementations run
    "reference": {"precision": "fp32", "channels_last": "off", "compile": False},
    "channels_last": {"precision": "fp32", "channels_last": "on", "compile": False},
    "compile": {"precision": "fp32", "channels_last": "off", "compile": True},
    "bf16": {"precision": "bf16", "channels_last": "off", "compile": False},
    "bf16+channels_last": {"precision": "bf16", "channels_last": "on", "compile": False},
    "bf16+channels_last+compile": {"precision": "bf16", "channels_last": "on", "compile": True},
}


def time_variant(arch, sets, batch_size, device, warmup, steps, options) -> dict:
    flags = {"device": device, "batch_size": batch_size, "steps": warmup + steps, "ema_kimg": 10.0, **options}
    resolved = config.resolve(arch, sets=sets, flags=flags)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(arch, resolved, synthetic_data(arch, resolved.config, n=max(1024, batch_size)), run_dir)
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        started = time.perf_counter()
        for _ in range(warmup):
            trainer.train_step()
        sync()
        warmup_s = time.perf_counter() - started
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            trainer.train_step()
            sync()
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"median_step_s": median, "p10_step_s": sorted(times)[len(times) // 10],
            "p90_step_s": sorted(times)[(9 * len(times)) // 10], "images_per_s": batch_size / median,
            "warmup_s": warmup_s}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("arch")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json")
    args = parser.parse_args()
    arch = registry.get(args.arch)
    sets = config.split_assignments(args.sets)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    results = {}
    for name in args.variants.split(","):
        results[name] = time_variant(arch, sets, args.batch_size, str(device), args.warmup, args.steps, VARIANTS[name])
        print(f"{name:34s} {results[name]['median_step_s'] * 1e3:8.2f} ms/step "
              f"{results[name]['images_per_s']:9.0f} img/s  (warm-up {results[name]['warmup_s']:.1f} s)", flush=True)
    reference = results[next(iter(results))]["median_step_s"]
    for name, r in results.items():
        r["speedup_vs_reference"] = reference / r["median_step_s"]
        print(f"{name:34s} x{r['speedup_vs_reference']:.2f}")
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    probe = config.resolve(arch, sets=sets)  # which preset the defaults pick (fashion-mnist without --set)
    spec = arch.data_spec(probe.config)
    record = {"arch": args.arch, "preset": probe.preset, "sets": sets,
              "data": f"{spec.resolution}x{spec.resolution}x{spec.channels}", "batch_size": args.batch_size,
              "device": machine,
              "torch": torch.__version__, "ganzoo": __version__, "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
